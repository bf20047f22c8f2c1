"""A tiny suite trains end to end into a temporary SQLite store, which then holds exactly what
docs/tracking.md promises: parent, children, tags, params, per-epoch metrics, artifacts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from bioclf.engine.metrics import macro_scores
from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import CONTRACT_VERSION
from bioclf.tracking import contract as C
from conftest import TINY, write_spec

EPOCH_METRICS = set(C.EPOCH_METRICS)
FINAL_METRICS = set(C.FINAL_METRICS) - {"peak_gpu_mem_mb"}  # CUDA only


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    spec = dict(TINY, description="Tiny suite.", variants={"full": {}, "linear": {"model.head": {
        "hidden_dim": None, "dropout_in": 0.0, "dropout_hidden": 0.0, "batchnorm": False}}}, baseline="full")
    path = write_spec(folder, spec)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    lines: list[str] = []
    result = run_suite(load_suite(path), tracking_uri=uri, quiet=True, echo=lines.append)
    return {"path": path, "uri": uri, "result": result, "lines": lines, "client": MlflowClient(uri)}


def _children(trained):
    client = trained["client"]
    exp = client.get_experiment_by_name("tiny")
    return exp, client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'",
                                   order_by=["attributes.start_time ASC"])


def test_parent_and_children(trained):
    assert not trained["result"].failed
    client = trained["client"]
    exp, children = _children(trained)
    parents = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'suite'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert json.loads(parent.data.tags[C.VARIANTS]) == ["full", "linear"]
    assert parent.data.tags[C.BASELINE] == "full"
    assert [c.data.tags[C.VARIANT] for c in children] == ["full", "linear"]
    # the UI opens the experiment on its runs, with the spec's description; rows say what they change
    assert exp.tags[C.EXPERIMENT_KIND] == C.KIND_MODEL_TRAINING and exp.tags[C.NOTE] == "Tiny suite."
    assert [c.info.run_name for c in children] == ["full/seed0", "linear/seed0"]
    assert children[0].data.tags[C.DIFF] == "baseline"
    assert children[1].data.tags[C.DIFF] == ("model.head.hidden_dim 16→None; model.head.dropout_in 0.3→0.0; "
                                             "model.head.dropout_hidden 0.5→0.0; model.head.batchnorm True→False")
    suite = load_suite(trained["path"])
    for child, run in zip(children, suite.runs):
        tags = child.data.tags
        assert child.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags[C.SEED] == str(run.seed) and tags[C.CONFIG_HASH] == run.config_hash
        assert tags[C.SUITE_HASH] == suite.suite_hash and tags[C.CONTRACT] == CONTRACT_VERSION
        # data.pipeline auto on a CPU: the reference pipeline, every component in the workers
        assert tags[C.DATA_PIPELINE] == "reference"
        assert tags[C.TRAIN_STAGES] == ("workers: decode, random_resized_crop, horizontal_flip, normalize "
                                                    "| device: -")
        assert tags[C.EVAL_STAGES] == "workers: decode, resize, normalize | device: -"
    manifest = json.loads(open(client.download_artifacts(parent.info.run_id, "suite.json")).read())
    assert [r["config_hash"] for r in manifest["runs"]] == [r.config_hash for r in suite.runs]


def test_params_are_the_flat_config_and_exact_counts(trained):
    from bioclf.models import count_params, build_model

    _, children = _children(trained)
    suite = load_suite(trained["path"])
    for child, run in zip(children, suite.runs):
        params = child.data.params
        assert params["model.backbone"] == "resnet18"
        assert float(params["loss.label_smoothing"]) == run.config.loss.label_smoothing
        assert json.loads(params["data.train_transforms"]) == run.config.data.train_transforms
        exact = count_params(build_model(run.config.model, 4)).total
        assert int(params["model.num_params"]) == exact == int(params["model.num_trainable_params"])
        assert params["train.world_size"] == "1"


def test_metrics_one_value_per_epoch(trained):
    client = trained["client"]
    _, children = _children(trained)
    for child in children:
        run_id = child.info.run_id
        epochs = int(child.data.metrics["epochs_run"])
        assert epochs == 2
        for name in EPOCH_METRICS:
            history = client.get_metric_history(run_id, name)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), name
        # every metric the contract promises, and none it does not name
        assert FINAL_METRICS <= set(child.data.metrics)
        assert set(child.data.metrics) <= EPOCH_METRICS | FINAL_METRICS | set(C.CONDITIONAL_METRICS)
        ours = {k for k in child.data.tags if k.startswith("bioclf.")}
        assert ours <= set(C.VARIANT_TAGS) and {C.ROLE, C.VARIANT, C.SEED, C.CONFIG_HASH} <= ours
        # 4 classes x 24 train images, batch 16, the incomplete last batch dropped: 6 steps.
        assert [m.value for m in client.get_metric_history(run_id, "train_steps")] == [6.0] * epochs
        for name in ("best_val_acc", "best_val_top5_acc", "val_f1_macro"):
            assert 0.0 <= child.data.metrics[name] <= 1.0


def test_artifacts_match_the_metrics(trained, tmp_path):
    client = trained["client"]
    _, children = _children(trained)
    child = children[0]
    run_id = child.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "classes.csv", "history.csv", "predictions", "checkpoints"} <= names
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {"checkpoints/best.pt"}
    local = client.download_artifacts(run_id, "", str(tmp_path))
    config = yaml.safe_load(open(f"{local}/config.yaml"))
    assert config["model"]["backbone"] == "resnet18" and config["train"]["epochs"] == 2
    history = pd.read_csv(f"{local}/history.csv")
    assert list(history["epoch"]) == [1, 2]
    val_acc = {m.step: m.value for m in client.get_metric_history(run_id, "val_acc")}
    assert history["val_acc"].tolist() == pytest.approx([val_acc[1], val_acc[2]])

    preds = pd.read_csv(f"{local}/predictions/val.csv")
    assert list(preds.columns) == ["path", "label", "pred", "top5", "p_label", "p_pred"]
    assert len(preds) == 4 * 8  # 4 classes x 8 val images
    metrics = child.data.metrics
    assert (preds["label"] == preds["pred"]).mean() == pytest.approx(metrics["best_val_acc"])
    recomputed = macro_scores(preds["label"].to_numpy(), preds["pred"].to_numpy())
    for name, value in recomputed.items():
        assert value == pytest.approx(metrics[name])
    top5_hit = [str(lab) in t.split() for lab, t in zip(preds["label"], preds["top5"])]
    assert sum(top5_hit) / len(preds) == pytest.approx(metrics["best_val_top5_acc"])
    best_epoch = int(metrics["best_epoch"])
    assert history.loc[history["epoch"] == best_epoch, "val_acc"].item() == pytest.approx(metrics["best_val_acc"])

    import torch

    ckpt = torch.load(f"{local}/checkpoints/best.pt", weights_only=True)
    assert ckpt["epoch"] == best_epoch and ckpt["classes"] == ["0", "1", "2", "3"]


def test_rerun_skips_finished_variants(trained):
    lines: list[str] = []
    result = run_suite(load_suite(trained["path"]), tracking_uri=trained["uri"], quiet=True, echo=lines.append)
    assert [o.status for o in result.outcomes] == ["skipped", "skipped"]
    assert sum("skipped" in line for line in lines) >= 2
    _, children = _children(trained)
    assert len(children) == 2  # nothing new was trained


def test_learns_above_chance(trained):
    # 4 classes: chance is 25%. Two epochs of a from-scratch ResNet18 on 16 px generated images.
    _, children = _children(trained)
    assert max(c.data.metrics["best_val_acc"] for c in children) >= 0.6


def test_the_suite_says_what_to_do_next_and_ui_prints_its_runs_url(trained, monkeypatch, capsys):
    from bioclf import cli
    from bioclf.cli import main

    exp, _ = _children(trained)
    runs_url = f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs"
    tail = "\n".join(trained["lines"][-2:])
    assert "next: bioclf-report --experiment tiny" in tail and runs_url in tail
    launched = []
    monkeypatch.setattr(cli, "serve", lambda command: launched.append(command) or 0)
    assert main(["ui", "--tracking-uri", trained["uri"], "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"  tiny: {runs_url}" in out
    assert launched and launched[0][-2:] == ["--workers", "2"]
    assert main(["ui", "--tracking-uri", trained["uri"], "--workers", "0"]) == 2
