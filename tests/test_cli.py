"""bioclf-exp as a user meets it: exit codes, one-line errors, --dry-run, list, a failing variant."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bioclf.cli import main
from bioclf.tracking import contract as C
from conftest import EXPERIMENTS, REPO, TINY, write_spec


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "run a suite" in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out


def test_validate_every_experiment(capsys):
    specs = sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    code, out, _ = run_cli(capsys, "validate", *specs)
    assert code == 0 and out.count("ok: ") == len(specs)


def test_typo_is_one_line_exit_2(capsys, tmp_path):
    path = write_spec(tmp_path, {"extends": str(EXPERIMENTS / "smoke.yaml"), "model": {"bakbone": "resnet18"}})
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "model.bakbone" in lines[0] and str(path) in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys, tmp_path):
    path = write_spec(tmp_path, {"model": {"bakbone": "resnet18"}})
    with pytest.raises(Exception, match="bakbone"):
        main(["validate", str(path), "--debug"])


@pytest.mark.parametrize("argv, needle", [
    (["run", "experiments/smoke.yaml", "--variant", "nope", "--dry-run"], "--variant 'nope'"),
    (["run", "experiments/smoke.yaml", "--set", "train.epochs", "--dry-run"], "KEY=VALUE"),
    (["run", "experiments/smoke.yaml", "--set", "train.epochs=zero", "--dry-run"], "train.epochs"),
    (["run", "missing.yaml"], "spec file not found"),
    (["run", "experiments/smoke.yaml", "--seeds", "1,x"], "--seeds"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2(capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(EXPERIMENTS.parent)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_dry_run_prints_diffs_and_counts_and_trains_nothing(capsys, tracking_uri, tmp_path):
    code, out, _ = run_cli(capsys, "run", str(EXPERIMENTS / "loss_ablation.yaml"), "--dry-run")
    assert code == 0
    assert "cross_entropy" in out and "loss.label_smoothing: 0.1 -> 0.0" in out
    assert "87,843,748" in out
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_list_arch_ablation_has_exact_counts(capsys, tracking_uri):
    code, out, _ = run_cli(capsys, "list", str(EXPERIMENTS / "arch_ablation.yaml"))
    assert code == 0
    rows = [line for line in out.splitlines() if line.split() and line.split()[0] in {
        "baseline_linear_head", "custom_fc_512", "dual_dropout", "batchnorm", "no_initial_dropout",
        "wider_fc_1024", "resnet50", "resnet152"}]
    assert len(rows) == 8
    counts = {row.split()[0]: row.split()[3] for row in rows}
    # 88,791,336 (torchvision, 1000-class fc) - 2,049,000 + the head
    assert counts["baseline_linear_head"] == "86,947,236"
    assert counts["batchnorm"] == "87,843,748"
    assert counts["wider_fc_1024"] == "88,945,060"
    assert counts["resnet50"] == "24,609,444"


def test_a_failing_variant_does_not_sink_the_suite(capsys, tracking_uri, tmp_path):
    spec = dict(TINY, train={"epochs": 1}, variants={
        "diverges": {"optimizer": {"name": "sgd", "lr": 1.0e30, "momentum": 0.0}},
        "fine": {},
    })
    path = write_spec(tmp_path, spec)
    code, out, _ = run_cli(capsys, "run", str(path), "--quiet")
    assert code == 1
    assert "diverges" in out and "FAILED" in out and "1 failed" in out
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = {r.data.tags[C.VARIANT]: r for r in client.search_runs(
        [exp.experiment_id], "tags.`bioclf.role` = 'variant'")}
    assert runs["diverges"].info.status == "FAILED" and "NaN" in runs["diverges"].data.tags[C.ERROR]
    assert runs["fine"].info.status == "FINISHED"
    error_txt = client.download_artifacts(runs["diverges"].info.run_id, "error.txt", str(tmp_path))
    assert "Traceback" in open(error_txt).read()
    # The parent says the suite had a failure.
    parent = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'suite'")[0]
    assert parent.info.status == "FAILED"


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "bioclf.cli", "validate", str(EXPERIMENTS / "smoke.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "3 run(s)" in out.stdout


def test_unreachable_tracking_server_fails_before_training(capsys, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_spec(tmp_path, dict(TINY, variants={"a": {}}, baseline="a"))
    code, out, err = run_cli(capsys, "run", str(path), "--quiet", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert code == 2 and "unreachable" in err and "training" not in out


def test_read_only_store_is_a_clear_error(capsys, tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    store = tmp_path / "ro"
    store.mkdir()
    store.chmod(0o555)
    path = write_spec(tmp_path, dict(TINY, variants={"a": {}}, baseline="a"))
    code, _, err = run_cli(capsys, "run", str(path), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}")
    assert code == 2 and "read-only" in err


def test_fail_fast_stops_at_the_first_failure(capsys, tracking_uri, tmp_path):
    spec = dict(TINY, train={"epochs": 1}, variants={
        "diverges": {"optimizer": {"name": "sgd", "lr": 1.0e30, "momentum": 0.0}}, "never_run": {}})
    path = write_spec(tmp_path, spec)
    code, out, _ = run_cli(capsys, "run", str(path), "--quiet", "--fail-fast")
    assert code == 1 and "--fail-fast" in out and "never_run seed" not in out


@pytest.mark.parametrize("argv, mlflow", [
    (["--help"], False),
    (["validate", "experiments/aug_ablation.yaml"], False),
    (["run", "experiments/aug_ablation.yaml", "--dry-run"], False),
    (["list", "experiments/aug_ablation.yaml"], True),
])
def test_everyday_commands_do_not_import_torch(argv, mlflow, tmp_path):
    """Imports decide how long these take (torch alone is seconds): --help, validate and a dry
    run import neither torch nor MLflow; list imports MLflow to read the store, never torch."""
    code = ("import sys\nfrom bioclf.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('MODULES', 'torch' in sys.modules, 'mlflow' in sys.modules)")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"MODULES False {mlflow}", done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists() or not hasattr(os, "killpg"), reason="Linux /proc")
def test_ui_stops_every_server_process_when_terminated(tmp_path):
    """``mlflow ui`` starts uvicorn and job consumers: SIGTERM to ``bioclf-exp ui`` (what a
    supervisor or a script sends) must leave none of them serving."""
    from servers import free_port

    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "bioclf.cli", "ui", "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert ui.poll() is None, "bioclf-exp ui exited before serving"
                time.sleep(0.5)
        else:
            pytest.fail("bioclf-exp ui did not answer /health within 120 s")
        serving = _descendants(ui.pid)
        assert len(serving) >= 3  # mlflow ui, uvicorn and MLflow's job consumers
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while _alive(serving) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(serving) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ...


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if (stat := _stat(pid)) and stat[0] != "Z"]


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`bioclf-exp list SPEC | head -1`: the reader leaves early; no traceback, exit 0."""
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "bioclf.cli", "validate", *[str(EXPERIMENTS / "smoke.yaml")] * 400],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err


def test_list_reads_a_local_store_without_mlflow_and_says_the_same(capsys, tracking_uri, tmp_path, monkeypatch,
                                                                   known_schema):
    """`list` on an existing SQLite store reads it directly (bioclf.tracking.sqlite_view): the same
    lines as through MLflow (runs, accuracy, disk, scratch leftovers), and MLflow never imported."""
    from bioclf.tracking import sqlite_view

    path = write_spec(tmp_path, dict(TINY, train={"epochs": 1}, variants={"a": {}, "b": {"loss.label_smoothing": 0}},
                                     baseline="a"))
    assert run_cli(capsys, "run", str(path), "--quiet", "--variant", "a")[0] == 0
    (tmp_path / "mlruns" / ".work" / ("f" * 32)).mkdir(parents=True)  # a scratch folder of no run
    code, direct, _ = run_cli(capsys, "list", str(path))
    monkeypatch.setattr(sqlite_view.StoreView, "open", classmethod(lambda cls, uri: None))
    code2, through_mlflow, _ = run_cli(capsys, "list", str(path))
    assert code == code2 == 0 and direct == through_mlflow
    assert "FINISHED" in direct and "left over: 1 scratch folder(s)" in direct
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom bioclf.cli import main\nmain(sys.argv[1:])\n"
                           "print('MLFLOW', 'mlflow' in sys.modules)", "list", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
    assert done.stdout.strip().splitlines()[-1] == "MLFLOW False", done.stdout + done.stderr
