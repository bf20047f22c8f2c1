"""predict: a tiny trained run predicts a flat folder into the leaderboard CSV; its labels are the
run's own val predictions on the same images; the dataset input every run logs (CPU, tmp store)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bioclf.cli import main
from bioclf.data.synthetic import SyntheticDataset
from bioclf.datacheck import data_fingerprint
from bioclf.errors import BioclfError
from bioclf.predict import predict
from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import DATA_FINGERPRINT_TAG, Tracker, other_fingerprints
from conftest import TINY, write_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run (one epoch of two batches), and its 32 val images as a flat folder of PNGs
    named by their index in the val split."""
    folder = tmp_path_factory.mktemp("predict")
    data = dict(TINY["data"], synthetic=dict(TINY["data"]["synthetic"], train_per_class=8))
    spec = dict(TINY, data=data, train={"epochs": 1}, variants={"full": {}}, baseline="full")
    path = write_spec(folder, spec)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_suite(load_suite(path), tracking_uri=uri, quiet=True, echo=lambda line: None)
    assert not result.failed
    run_id = result.outcomes[0].run_id
    cfg = load_suite(path).runs[0].config
    val = SyntheticDataset(cfg.data.synthetic, "val")
    images = folder / "val_flat"
    images.mkdir()
    for index in range(len(val)):
        val.image(index).save(images / f"{index}.png")  # lossless: the same pixels the run evaluated
    client = MlflowClient(uri)
    val_csv = pd.read_csv(client.download_artifacts(run_id, "predictions/val.csv", str(folder / "val_csv")))
    return {"uri": uri, "run_id": run_id, "images": images, "folder": folder, "val": val_csv, "client": client,
            "config": cfg}


def test_predict_writes_one_row_per_image_matching_the_runs_val_predictions(trained, tmp_path):
    out = tmp_path / "prediction.csv"
    lines: list[str] = []
    result = predict(trained["images"], out, experiment="tiny", tracking_uri=trained["uri"], progress=False,
                     echo=lines.append)
    assert result.run_id == trained["run_id"] and result.n_images == 32 and result.skipped == []
    assert lines and f"best finished run {trained['run_id']}" in lines[0]
    text = out.read_text().splitlines()
    assert text[0] == "image_name,pred_label" and len(text) == 33
    frame = pd.read_csv(out)
    assert list(frame["image_name"]) == list(range(32))  # natural order of the names, not 0, 1, 10, 11 ...
    assert frame["pred_label"].dtype.kind == "i"  # integer class folders -> integer labels
    assert list(frame["pred_label"]) == list(trained["val"]["pred"])  # the run's own val predictions
    artifacts = [a.path for a in trained["client"].list_artifacts(trained["run_id"], "predictions")]
    assert "predictions/prediction.csv" in artifacts and result.artifacts == ["predictions/prediction.csv"]


def test_cli_by_run_id_with_top5_probs_and_flip_tta(trained, tmp_path, capsys):
    out, top5, probs = tmp_path / "p.csv", tmp_path / "top5.csv", tmp_path / "probs.csv"
    code = main(["predict", str(trained["images"]), "--run", trained["run_id"], "-o", str(out), "--top5", str(top5),
                 "--probs", str(probs), "--tta", "flip", "--batch-size", "5", "--device", "cpu", "--quiet",
                 "--tracking-uri", trained["uri"]])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out}: 32 image(s) predicted by run {trained['run_id']} on cpu, tta flip" in capsys.readouterr().out
    pred, top, prob = pd.read_csv(out), pd.read_csv(top5), pd.read_csv(probs)
    assert list(top.columns) == ["image_name", "top5", "p_pred"] and len(top) == 32
    assert list(prob.columns) == ["image_name", "0", "1", "2", "3"]
    matrix = prob[["0", "1", "2", "3"]].to_numpy()
    assert np.allclose(matrix.sum(axis=1), 1.0, atol=1e-4)
    assert list(matrix.argmax(axis=1)) == list(pred["pred_label"])
    assert [int(t.split()[0]) for t in top["top5"]] == list(pred["pred_label"])
    assert all(sorted(map(int, t.split())) == [0, 1, 2, 3] for t in top["top5"])


def test_unreadable_images_fail_unless_skipped(trained, tmp_path, capsys):
    folder = tmp_path / "imgs"
    shutil.copytree(trained["images"], folder)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "empty.png").write_bytes(b"")
    args = ["predict", str(folder), "--experiment", "tiny", "--variant", "full", "-o", str(tmp_path / "p.csv"),
            "--quiet", "--no-log", "--tracking-uri", trained["uri"]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 unreadable image(s) of 34" in err and "empty.png (zero bytes)" in err and "--skip-bad" in err
    assert not (tmp_path / "p.csv").exists()

    assert main(args + ["--skip-bad"]) == 0
    assert "2 unreadable image(s) left out (--skip-bad)" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "p.csv")
    assert len(frame) == 32 and list(frame["pred_label"]) == list(trained["val"]["pred"])


def test_errors_are_one_line(trained, tmp_path, capsys):
    base = ["--tracking-uri", trained["uri"], "--quiet", "-o", str(tmp_path / "p.csv")]
    cases = [
        (["predict", str(trained["images"]), "--experiment", "nope"], "no such experiment"),
        (["predict", str(trained["images"]), "--run", "0" * 32], "no such run"),
        (["predict", str(trained["images"]), "--experiment", "tiny", "--variant", "nope"],
         "no finished run of variant"),
        (["predict", str(tmp_path / "missing"), "--experiment", "tiny"], "image folder not found"),
        (["predict", str(trained["folder"]), "--experiment", "tiny"], "predict reads a flat folder"),
        (["predict", str(trained["images"]), "--experiment", "tiny", "--device", "cuda:7"], "no CUDA device"),
    ]
    if __import__("torch").cuda.is_available():
        cases.pop()
    for args, message in cases:
        assert main(args + base) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    with pytest.raises(BioclfError, match="exactly one of --run"):
        predict(trained["images"], tmp_path / "p.csv", tracking_uri=trained["uri"])


def test_an_output_named_val_csv_does_not_replace_the_runs_val_predictions(trained, tmp_path):
    result = predict(trained["images"], tmp_path / "val.csv", run_id=trained["run_id"], tracking_uri=trained["uri"],
                     progress=False, echo=lambda line: None)
    assert result.artifacts == ["predictions/predict-val.csv"]
    client = trained["client"]
    again = pd.read_csv(client.download_artifacts(trained["run_id"], "predictions/val.csv", str(tmp_path / "dl")))
    assert again.equals(trained["val"])


def test_fp16_archived_weights_are_cast_back(trained):
    import torch

    from bioclf.engine.checkpoint import load_checkpoint
    from bioclf.predict import load_model

    client, cfg = trained["client"], trained["config"]
    path = client.download_artifacts(trained["run_id"], "checkpoints/best.pt", str(trained["folder"] / "ckpt"))
    state = load_checkpoint(path)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    full = load_model(cfg, 4, state, torch.device("cpu"), "r")
    cast = load_model(cfg, 4, {"model": half}, torch.device("cpu"), "r")
    assert all(p.dtype == torch.float32 for p in cast.parameters())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(full(x), 1), torch.softmax(cast(x), 1), atol=2e-3)
    with pytest.raises(BioclfError, match="does not fit the model"):
        load_model(cfg, 5, state, torch.device("cpu"), "r")


def test_dataset_input_and_fingerprint_tag_round_trip(trained):
    client, run_id = trained["client"], trained["run_id"]
    fingerprint = data_fingerprint(trained["config"].data)
    tracker = Tracker(trained["uri"])
    for _ in range(2):  # logging it again adds nothing
        tracker.log_dataset_input(run_id, fingerprint)
    run = client.get_run(run_id)
    assert run.data.tags[DATA_FINGERPRINT_TAG] == fingerprint.digest
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert (dataset.name, dataset.digest, dataset.source_type) == ("synthetic", fingerprint.digest, "code")
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "training")]
    record = tracker.find_run(run_id)
    assert record.data_fingerprint == fingerprint.digest
    assert other_fingerprints([record], fingerprint.digest) == {}
    assert other_fingerprints([record], "0" * 32) == {fingerprint.digest: [run_id]}
