"""Kill it anywhere: SIGKILL at each named point of a suite (bioclf.faults), then the same command
again. Afterwards the store must hold exactly what an uninterrupted suite holds: one child run
per variant x seed, FINISHED, contiguous steps with one value each, every final metric logged
once and equal to the uninterrupted run's, no run left RUNNING, no scratch folder left behind.

One subprocess per kill point (SIGKILL needs a process to kill); the rerun is in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import contract as C
from conftest import TINY, write_spec

# 4 classes x 24 images, batch 16: 6 optimizer steps per epoch, 2 epochs, two variants.
SPEC = dict(TINY, variants={"a": {}, "b": {"optimizer.lr": 0.002}}, baseline="a")
KILLS = {
    "during start-up": "startup",
    "just after the child run was created": "run_created",
    "mid-epoch (epoch 2, step 2)": "batch@8",
    "right after an epoch's console line": "epoch_logged",
    "during the second variant": "run_created@2",
    "during the final logging": "summary_logged",
}
COMPARED = ("best_val_acc", "best_val_loss", "best_val_top5_acc", "val_f1_macro", "best_epoch", "epochs_run")


def _suite(folder: Path):
    return load_suite(write_spec(folder, SPEC))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final metrics of the uninterrupted suite, per variant."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_suite(_suite(folder), tracking_uri=uri, quiet=True, echo=lambda line: None)
    client = MlflowClient(uri)
    return {o.variant: client.get_run(o.run_id).data.metrics for o in result.outcomes}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(KILLS))
def test_a_kill_anywhere_then_the_same_command_finishes_the_suite_as_if_uninterrupted(where, tmp_path, reference):
    suite = _suite(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, BIOCLF_KILL_AT=KILLS[where])
    killed = subprocess.run([sys.executable, "-m", "bioclf.cli", "run", str(suite.path), "--quiet",
                             "--tracking-uri", uri], env=env, cwd=tmp_path, capture_output=True, text=True,
                            start_new_session=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    lines: list[str] = []
    result = run_suite(suite, tracking_uri=uri, quiet=True, echo=lines.append)
    assert not result.failed and not result.not_trained, lines

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    children = client.search_runs([exp.experiment_id], f"tags.`{C.ROLE}` = '{C.ROLE_VARIANT}'")
    assert sorted(r.data.tags[C.VARIANT] for r in children) == ["a", "b"], lines  # one child per variant
    assert all(r.info.status == "FINISHED" for r in client.search_runs([exp.experiment_id]))
    for child in children:
        run_id = child.info.run_id
        for name in C.EPOCH_METRICS:
            assert [m.step for m in client.get_metric_history(run_id, name)] == [1, 2], (where, name)
        for name in C.FINAL_METRICS:
            if name in child.data.metrics:
                assert len(client.get_metric_history(run_id, name)) == 1, (where, name)  # logged once
        want = reference[child.data.tags[C.VARIANT]]
        for name in COMPARED:
            assert child.data.metrics[name] == pytest.approx(want[name]), (where, name)
    work = tmp_path / ".work"
    leftovers = [p.name for p in work.iterdir() if len(p.name) == 32] if work.exists() else []
    assert not leftovers, leftovers  # no scratch of a run that will never resume
