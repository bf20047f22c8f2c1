"""Long suites in one process leave nothing behind: worker processes, file descriptors, disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bioclf.runner import run_suite
from bioclf.spec import load_suite
from conftest import TINY, write_spec

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")


def child_pids() -> set[int]:
    me, kids = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                kids.add(int(entry))
    return kids


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _suite(folder: Path, name: str, n: int, keep: str, workers: int) -> Path:
    variants = {f"v{i}": {"optimizer.lr": 0.001 * (i + 1)} for i in range(n)}
    spec = dict(TINY, name=name, variants=variants, baseline="v0", train={"epochs": 1},
                checkpoint={"keep": keep})
    spec["data"] = dict(TINY["data"], num_workers=workers)
    return write_spec(folder, spec, f"{name}.yaml")


def _model_files(client: MlflowClient, run_id: str) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, "checkpoints")]


def test_six_variants_leave_no_workers_fds_or_resume_state(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    quiet = dict(tracking_uri=uri, quiet=True, echo=lambda s: None)
    run_suite(load_suite(_suite(tmp_path, "warmup", 1, "best", 1)), **quiet)  # imports, store, pools
    kids, fds = child_pids(), open_fds()

    result = run_suite(load_suite(_suite(tmp_path, "long", 6, "best", 1)), **quiet)
    assert [o.status for o in result.outcomes] == ["finished"] * 6
    assert child_pids() == kids, "a DataLoader worker outlived its run"
    assert open_fds() == fds, "file descriptors leaked"

    client = MlflowClient(uri)
    for outcome in result.outcomes:
        assert _model_files(client, outcome.run_id) == ["checkpoints/best.pt"]
        metrics = client.get_run(outcome.run_id).data.metrics
        assert metrics["peak_rss_mb"] > 0 and metrics["checkpoint_mb"] > 0 and metrics["inference_ms_per_image"] > 0
        assert not (tmp_path / ".work" / outcome.run_id).exists()  # resume state removed


def test_keep_none_stores_metrics_and_predictions_but_no_model(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_suite(load_suite(_suite(tmp_path, "nomodel", 1, "none", 0)), tracking_uri=uri, quiet=True,
                       echo=lambda s: None)
    client = MlflowClient(uri)
    run_id = result.outcomes[0].run_id
    assert _model_files(client, run_id) == []
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"predictions", "history.csv", "config.yaml"} <= names
    assert "best_val_acc" in client.get_run(run_id).data.metrics


def test_keep_all_in_fp16_halves_the_archive(tmp_path):
    import torch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = _suite(tmp_path, "all16", 1, "all", 0)
    spec = load_suite(path)
    result = run_suite(load_suite(path, overrides={"checkpoint.dtype": "fp16", "train.epochs": 2}), tracking_uri=uri,
                       quiet=True, echo=lambda s: None)
    assert spec.runs[0].config_hash == load_suite(path, overrides={"checkpoint.dtype": "fp16"}).runs[0].config_hash
    client = MlflowClient(uri)
    run_id = result.outcomes[0].run_id
    assert sorted(_model_files(client, run_id)) == ["checkpoints/best.pt", "checkpoints/epoch_001.pt",
                                                    "checkpoints/epoch_002.pt", "checkpoints/last.pt"]
    local = client.download_artifacts(run_id, "checkpoints", str(tmp_path / "dl"))
    best = torch.load(f"{local}/best.pt", weights_only=True)
    last = torch.load(f"{local}/last.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in best["model"].values() if v.is_floating_point())
    assert all(v.dtype == torch.float32 for v in last["model"].values() if v.is_floating_point())
