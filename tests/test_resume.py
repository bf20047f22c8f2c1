"""Nothing lost: kills, Ctrl-C and a second process on the same suite. These tests do the damage
(SIGKILL mid-run, SIGTERM, two concurrent runners) and check the store afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bioclf.engine import train
from recording import RecordingLogger
from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import contract as C
from conftest import TINY, write_spec

REPO = Path(__file__).resolve().parents[1]
FINAL = ("best_val_acc", "best_val_loss", "val_f1_macro", "best_epoch", "epochs_run")


class InterruptAt(RecordingLogger):
    """Raises KeyboardInterrupt when asked to log epoch ``n`` (after its checkpoint is written)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def log_epoch(self, epoch, metrics):
        if epoch == self.n:
            raise KeyboardInterrupt
        super().log_epoch(epoch, metrics)


def _spec(folder: Path, epochs: int = 3, **extra) -> Path:
    spec = dict(TINY, train={"epochs": epochs}, variants={"full": {}}, baseline="full")
    spec.update(extra)
    return write_spec(folder, spec)


def uninterrupted_and_resumed(cfg, folder: Path, at: int = 2) -> tuple[RecordingLogger, RecordingLogger]:
    """The loggers of ``cfg`` trained straight through, and of ``cfg`` interrupted when epoch
    ``at`` is logged (its checkpoint written) and then resumed in the same work folder."""
    reference = RecordingLogger()
    train(cfg, reference, folder / "ref", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, InterruptAt(at), folder / "run", quiet=True)
    resumed = RecordingLogger()
    train(cfg, resumed, folder / "run", quiet=True, resume=True)
    return reference, resumed


def test_resume_in_process_equals_uninterrupted(tmp_path):
    cfg = load_suite(_spec(tmp_path)).runs[0].config
    reference, resumed = uninterrupted_and_resumed(cfg, tmp_path)
    assert [e for e, _ in resumed.epochs] == [1, 2, 3]  # replayed 1-2, trained 3
    for name in FINAL:
        assert resumed.summary[name] == pytest.approx(reference.summary[name]), name
    assert resumed.epochs[-1][1]["train_loss"] == pytest.approx(reference.epochs[-1][1]["train_loss"])


def _cli(spec: Path, uri: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "bioclf.cli", "run", str(spec), "--quiet", *extra],
                            cwd=spec.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_epoch(uri: str, epoch: int, proc: subprocess.Popen, timeout: float = 400) -> str:
    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        exp = client.get_experiment_by_name("tiny") if Path(uri[len("sqlite:///"):]).exists() else None
        if exp is not None:
            for r in client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'"):
                if any(m.step >= epoch for m in client.get_metric_history(r.info.run_id, "val_acc")):
                    return r.info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no epoch {epoch} within {timeout}s")


def _final_metrics(uri: str, run_id: str) -> dict[str, float]:
    return {k: v for k, v in MlflowClient(uri).get_run(run_id).data.metrics.items() if k in FINAL}


@pytest.fixture(scope="module")
def reference_metrics(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_suite(load_suite(_spec(folder, epochs=4)), tracking_uri=uri, quiet=True, echo=lambda s: None)
    return _final_metrics(uri, result.outcomes[0].run_id)


def test_sigkill_then_rerun_resumes_the_same_run(tmp_path, reference_metrics):
    spec = _spec(tmp_path, epochs=4)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _cli(spec, uri)
    run_id = _wait_for_epoch(uri, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody could mark it
    lines: list[str] = []
    result = run_suite(load_suite(spec), tracking_uri=uri, quiet=True, echo=lines.append)
    assert result.outcomes[0].run_id == run_id and result.outcomes[0].status == "finished"
    assert any("resuming" in line for line in lines)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for name in ("val_acc", "train_loss", "lr"):
        steps = [m.step for m in client.get_metric_history(run_id, name)]
        assert sorted(steps) == [1, 2, 3, 4], (name, steps)  # no gap, no duplicate
    assert _final_metrics(uri, run_id) == pytest.approx(reference_metrics)
    exp = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'")) == 1
    assert not (tmp_path / ".work" / run_id).exists()  # resume state removed once finished


def test_sigterm_marks_killed_and_exits_nonzero(tmp_path):
    spec = _spec(tmp_path, epochs=30)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _cli(spec, uri)
    run_id = _wait_for_epoch(uri, 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None), out
    assert "KILLED" in out and "resume" in out
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"
    parent = client.get_run(client.get_run(run_id).data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"


def test_two_processes_never_train_the_same_variant_twice(tmp_path):
    spec = _spec(tmp_path, epochs=2, variants={"a": {}, "b": {"optimizer.lr": 0.002}}, baseline="a")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_suite(load_suite(spec), tracking_uri=uri, quiet=True, echo=lambda s: None, dry_run=True)
    first, second = _cli(spec, uri), _cli(spec, uri)
    out1, _ = first.communicate(timeout=600)
    out2, _ = second.communicate(timeout=600)
    # 3: this process left a config to the other one, which was still training it (busy)
    for proc, out in ((first, out1), (second, out2)):
        assert proc.returncode in (0, 3), out1 + out2
        assert (proc.returncode == 3) == ("not trained: another process is training it" in out), out
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'")
    hashes = [r.data.tags[C.CONFIG_HASH] for r in runs]
    assert sorted(hashes) == sorted(set(hashes)) and len(hashes) == 2, out1 + out2
    assert all(r.info.status == "FINISHED" for r in runs)
