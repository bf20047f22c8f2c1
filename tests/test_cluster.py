"""Beyond one process: a shared ``mlflow server`` (SQLite backend + artifact root, on
127.0.0.1) with several writers, and variants as Ray tasks on a local 2-CPU Ray cluster
against it: concurrent runs, the report from the server, a killed worker retried or marked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, write_spec
from mlflow.tracking import MlflowClient
from servers import start_mlflow_server, stop_mlflow_server, wait_healthy

from bioclf.runner import run_suite
from bioclf.spec import load_suite

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
from bioclf.executors.ray import RayOptions  # noqa: E402
from bioclf.tracking import contract as C

pytestmark = pytest.mark.slow
TWO = {"full": {}, "linear": {"model.head": {"hidden_dim": None, "dropout_in": 0.0, "dropout_hidden": 0.0,
                                             "batchnorm": False}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    srv = start_mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}")
    try:
        wait_healthy(srv)
        yield srv
    finally:
        stop_mlflow_server(srv)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster of 2 CPUs; its workers inherit this environment (the scratch cache)."""
    work = tmp_path_factory.mktemp("work")
    os.environ["BIOCLF_WORK_DIR"] = str(work)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True, logging_level="WARNING",
             runtime_env={"env_vars": {"BIOCLF_WORK_DIR": str(work), "OMP_NUM_THREADS": "1",
                                       "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]}})
    try:
        yield work
    finally:
        ray.shutdown()
        os.environ.pop("BIOCLF_WORK_DIR", None)


def _suite(folder: Path, name: str, variants: dict, epochs: int, **train):
    spec = dict(TINY, name=name, variants=variants, baseline=next(iter(variants)),
                train={"epochs": epochs, "device": "cpu", **train})
    spec["early_stopping"] = {"enabled": False}
    return load_suite(write_spec(folder, spec, f"{name}.yaml"))


def _variant_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'")


def test_ray_runs_variants_concurrently_and_the_report_builds(server, cluster, tmp_path):
    lines: list[str] = []
    suite = _suite(tmp_path, "ray-two", TWO, epochs=4)
    result = run_suite(suite, tracking_uri=server.uri, ray=RayOptions(cpus_per_run=1), quiet=True,
                       echo=lines.append)
    assert [o.status for o in result.outcomes] == ["finished", "finished"], lines
    assert any("ray: 2 run(s) submitted" in line for line in lines)

    client = MlflowClient(server.uri)
    runs = _variant_runs(client, "ray-two")
    assert sorted(r.data.tags[C.VARIANT] for r in runs) == ["full", "linear"]
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = client.get_run(result.suite_run_id)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {result.suite_run_id}
    # Concurrent: with 2 CPUs and 1 per run, each run started before the other ended.
    a, b = runs
    assert a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 4

    # The same suite again: every run is found finished and skipped by the workers.
    again = run_suite(suite, tracking_uri=server.uri, ray=RayOptions(cpus_per_run=1), quiet=True,
                      echo=lines.append)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert len(_variant_runs(client, "ray-two")) == 2

    from analysis.cli import main as report

    out = tmp_path / "reports"
    assert report(["--tracking-uri", server.uri, "--out", str(out), "--no-log", "--figure-formats", "png",
                   "--experiment", "ray-two"]) == 0
    table = pd.read_csv(out / "ray-two" / "tables" / "ablation.csv")
    assert len(table) == 2


def _kill_worker_after_epoch(client: MlflowClient, name: str, claims: Path, epoch: int, killed: list) -> None:
    """Wait until the run has logged ``epoch`` epochs, then SIGKILL the Ray worker training it
    (its pid is in the claim file it holds)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(name)
        runs = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'") if exp else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val_acc")) >= epoch:
            lock = next(claims.glob(f"*-{runs[0].data.tags[C.CONFIG_HASH]}.lock"))  # <store>-<config hash>
            pid = int(lock.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            killed.append((runs[0].info.run_id, pid))
            return
        time.sleep(0.2)


@pytest.mark.parametrize("retries", [1, 0])
def test_killed_ray_worker_is_retried_or_marked(server, cluster, tmp_path, retries):
    name = f"ray-kill-{retries}"
    suite = _suite(tmp_path, name, {"full": {}}, epochs=12)
    client = MlflowClient(server.uri)
    killed: list = []
    killer = threading.Thread(target=_kill_worker_after_epoch, args=(client, name, cluster / "claims", 2, killed))
    killer.start()
    lines: list[str] = []
    result = run_suite(suite, tracking_uri=server.uri, ray=RayOptions(cpus_per_run=1, max_retries=retries),
                       quiet=True, echo=lines.append)
    killer.join()
    assert killed, "the run finished before it could be killed"
    run_id, _ = killed[0]
    runs = _variant_runs(client, name)
    assert [r.info.run_id for r in runs] == [run_id]  # never lost, never duplicated
    if retries:  # the retry resumed the same run from its last checkpoint
        assert [o.status for o in result.outcomes] == ["finished"], lines
        assert runs[0].info.status == "FINISHED"
        epochs = [m.step for m in client.get_metric_history(run_id, "val_acc")]
        assert sorted(epochs) == list(range(1, 13))
    else:
        assert [o.status for o in result.outcomes] == ["killed"], lines
        assert runs[0].info.status == "KILLED"
        assert "Ray worker running it died" in runs[0].data.tags[C.ERROR]
        assert client.get_run(result.suite_run_id).info.status == "FAILED"


def test_several_writers_on_one_server_lose_nothing_and_duplicate_nothing(server, tmp_path):
    """Three ``bioclf-exp run`` processes on the same spec against one server, at once: each
    variant is trained exactly once (claims), every run ends FINISHED, the parent is one run."""
    spec = dict(TINY, name="writers", variants=dict(TWO, third={"loss.label_smoothing": 0.0}), baseline="full",
                train={"epochs": 2, "device": "cpu"})
    path = write_spec(tmp_path, spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", BIOCLF_WORK_DIR=str(tmp_path / "work"))
    procs = [subprocess.Popen([sys.executable, "-m", "bioclf.cli", "run", str(path), "--quiet",
                               "--tracking-uri", server.uri], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env) for _ in range(3)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    # 3: a process left a config to another one that was still training it (busy), and says so
    assert all(p.returncode in (0, 3) for p in procs), outputs
    assert all((p.returncode == 3) == ("not trained: another process" in out) for p, out in zip(procs, outputs))
    client = MlflowClient(server.uri)
    runs = _variant_runs(client, "writers")
    assert sorted(r.data.tags[C.VARIANT] for r in runs) == ["full", "linear", "third"]
    assert all(r.info.status == "FINISHED" for r in runs)
    exp = client.get_experiment_by_name("writers")
    assert len(client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'suite'")) == 1
    trained = sum(out.count(": finished, best val acc") for out in outputs)
    assert trained == 3


def test_a_run_larger_than_the_cluster_is_refused_before_the_suite_opens(server, cluster, tmp_path):
    from bioclf.errors import BioclfError

    suite = _suite(tmp_path, "ray-too-big", {"full": {}}, epochs=1)
    with pytest.raises(BioclfError, match=r"--gpus-per-run 1: the Ray cluster has 0 GPU"):
        run_suite(suite, tracking_uri=server.uri, ray=RayOptions(gpus_per_run=1), echo=lambda _: None)
    assert MlflowClient(server.uri).get_experiment_by_name("ray-too-big") is None


def test_every_command_works_against_the_server(server, tmp_path, capsys):
    """run, list, predict and ui with --tracking-uri http://... (the report: above)."""
    from bioclf.cli import main

    path = write_spec(tmp_path, dict(TINY, name="via-server", variants={"full": {}}, baseline="full",
                                     train={"epochs": 1, "device": "cpu"}))
    assert main(["run", str(path), "--quiet", "--tracking-uri", server.uri]) == 0
    assert main(["list", str(path), "--tracking-uri", server.uri]) == 0
    assert "FINISHED" in capsys.readouterr().out
    images = tmp_path / "test"
    images.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (24, 24), (40 * i, 90, 200)).save(images / f"{i}.png")
    out = tmp_path / "prediction.csv"
    assert main(["predict", str(images), "--experiment", "via-server", "-o", str(out), "--tracking-uri",
                 server.uri, "--quiet"]) == 0
    assert len(pd.read_csv(out)) == 3
    assert main(["ui", "--tracking-uri", server.uri]) == 0
    assert f"open {server.uri}" in capsys.readouterr().out


def test_fail_fast_cancels_the_others_and_leaves_nothing_running(server, cluster, tmp_path):
    variants = {"diverges": {"optimizer": {"name": "sgd", "lr": 1e30, "momentum": 0.0}}, "long": {}}
    suite = _suite(tmp_path, "ray-fail-fast", variants, epochs=40)
    lines: list[str] = []
    result = run_suite(suite, tracking_uri=server.uri, ray=RayOptions(cpus_per_run=1), quiet=True, fail_fast=True,
                       echo=lines.append)
    assert [o.status for o in result.outcomes] == ["failed", "cancelled"], lines
    assert "NaN" in result.outcomes[0].error
    statuses = {r.data.tags[C.VARIANT]: r.info.status for r in _variant_runs(MlflowClient(server.uri),
                                                                                    "ray-fail-fast")}
    assert statuses["diverges"] == "FAILED"
    assert statuses.get("long", "KILLED") == "KILLED"  # cancelled mid-run: resumable, never RUNNING
