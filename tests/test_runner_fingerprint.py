"""Every run logs its data: an MLflow dataset input and the tag bioclf.data_fingerprint; a rerun
on changed data warns that the finished rows it skips were trained on other data."""

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import contract as C
from conftest import TINY, write_spec


def test_runs_log_the_data_fingerprint_and_a_changed_dataset_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in range(2):
            (root / split / str(c)).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / split / str(c) / f"{k}.png")
    data = dict(TINY["data"], source="folder", root=str(root), synthetic=None)
    data.pop("synthetic")
    spec = dict(TINY, data=data, train={"epochs": 1}, variants={"full": {}}, baseline="full")
    path = write_spec(tmp_path, spec)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines = []
    result = run_suite(load_suite(path), tracking_uri=uri, quiet=True, echo=lines.append)
    assert not result.failed, lines
    client = MlflowClient(uri)
    run = client.get_run(result.outcomes[0].run_id)
    digest = run.data.tags[C.DATA_FINGERPRINT]
    dataset = run.inputs.dataset_inputs[0].dataset
    assert (dataset.name, dataset.digest, dataset.source_type) == ("data", digest, "local")
    assert client.get_run(result.suite_run_id).data.tags[C.DATA_FINGERPRINT] == digest

    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / "val/1/0.png")
    lines.clear()
    again = run_suite(load_suite(path), tracking_uri=uri, quiet=True, echo=lines.append)
    assert again.outcomes[0].status == "skipped"
    assert any("was trained on other data" in line for line in lines), lines
