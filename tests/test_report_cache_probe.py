"""``analysis.probe``: the fingerprint of what a report reads, straight from a SQLite store. It
must change with anything the report reads, not with the report logging itself back, and say
"don't know" (None) whenever it cannot be sure. Generated stores, CPU, seconds."""

from __future__ import annotations

import contextlib
import io
import time
from types import SimpleNamespace

import pytest
from bioclf.tracking import contract as C
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from test_report_fakestore import fresh_store, write_fake_suite

from analysis import probe


@pytest.fixture
def suite(tmp_path):
    uri = fresh_store(tmp_path / "store")
    info = write_fake_suite(uri, name="probe", variants=2, epochs=4, num_classes=4, seed=2)
    return SimpleNamespace(uri=uri, info=info, client=MlflowClient(tracking_uri=uri),
                           run_id=info["runs"][("v01", 0)]["run_id"])


def _now_ms() -> int:
    time.sleep(0.002)  # a later timestamp than anything logged before
    return int(time.time() * 1000)


CHANGES = {
    "metric logged": lambda s: s.client.log_metric(s.run_id, "val_acc", 0.5, step=4),
    "metric logged again, same value and step": lambda s: s.client.log_batch(
        s.run_id, metrics=[Metric("val_acc", float(s.info["runs"][("v01", 0)]["history"]["val_acc"].iloc[-1]),
                                  _now_ms(), 4)]),
    "tag set": lambda s: s.client.set_tag(s.run_id, C.DATA_FINGERPRINT, "abc"),
    "param logged": lambda s: s.client.log_param(s.run_id, "train.extra", "1"),
    "history.csv rewritten": lambda s: s.client.log_text(
        s.run_id, s.info["runs"][("v01", 0)]["history"].assign(val_loss=0.0).to_csv(index=False), "history.csv"),
    "predictions rewritten": lambda s: s.client.log_text(
        s.run_id, s.info["runs"][("v01", 0)]["predictions"].assign(pred=0).to_csv(index=False),
        "predictions/val.csv"),
    "run deleted": lambda s: s.client.delete_run(s.run_id),
    "run status": lambda s: s.client.set_terminated(s.run_id, status="FAILED"),
    "new run in the experiment": lambda s: s.client.create_run(
        s.client.get_experiment_by_name("probe").experiment_id, tags={C.ROLE: "variant"}),
    "new suite": lambda s: write_fake_suite(s.uri, name="probe", variants=2, epochs=3, num_classes=4, seed=9),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_fingerprint_changes_with_what_the_report_reads(suite, change):
    before = probe.fingerprints(suite.uri, None)
    assert before is not None and list(before) == ["probe"]
    assert probe.fingerprints(suite.uri, None) == before  # the same store: the same fingerprint
    CHANGES[change](suite)
    assert probe.fingerprints(suite.uri, None) != before


def test_fingerprint_survives_building_and_logging_the_report(suite, tmp_path):
    from analysis.cli import main

    before = probe.fingerprints(suite.uri, ["probe"])
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        assert main(["--tracking-uri", suite.uri, "--out", str(tmp_path / "r"), "--workers", "1"]) == 0
    assert "logged to suite run" in out.getvalue()
    assert suite.client.list_artifacts(suite.info["suite_id"], "report")  # it did write into the store
    logged = suite.client.get_run(suite.info["suite_id"]).data  # ... and the ablation table onto the suite run
    assert any(k.startswith(C.VERDICT_PREFIX) for k in logged.tags) and any("/delta" in k for k in logged.metrics)
    assert probe.fingerprints(suite.uri, ["probe"]) == before


def test_only_the_experiments_asked_for(suite):
    write_fake_suite(suite.uri, name="other", variants=2, epochs=3, num_classes=4, seed=5)
    both = probe.fingerprints(suite.uri, None)
    assert list(both) == ["other", "probe"]  # sorted, as the CLI reports them
    assert probe.fingerprints(suite.uri, ["probe"]) == {"probe": both["probe"]}
    suite.client.log_metric(suite.run_id, "val_acc", 0.5, step=9)
    after = probe.fingerprints(suite.uri, None)
    assert after["other"] == both["other"] and after["probe"] != both["probe"]


def test_answers_none_when_it_cannot_tell(suite, tmp_path):
    assert probe.fingerprints("http://127.0.0.1:5000", None) is None
    assert probe.fingerprints(f"sqlite:///{tmp_path}/none.db", None) is None
    assert probe.fingerprints(suite.uri + "?timeout=5", None) is None
    assert probe.fingerprints(suite.uri, ["nope"]) is None  # the CLI says why, through MLflow
    exp = suite.client.create_experiment("no-suite")
    suite.client.create_run(exp, tags={C.ROLE: "variant"})
    assert probe.fingerprints(suite.uri, ["no-suite"]) is None
    remote = suite.client.create_experiment("remote", artifact_location="mlflow-artifacts:/remote")
    suite.client.create_run(remote, tags={C.ROLE: "suite"})
    assert probe.fingerprints(suite.uri, ["remote"]) is None
    assert probe.fingerprints(suite.uri, ["probe"]) is not None


def test_the_store_is_found_from_a_subfolder_without_mlflow(tmp_path, monkeypatch):
    """The report's fast path resolves the store with bioclf.tracking.uri (no MLflow import):
    --tracking-uri > $MLFLOW_TRACKING_URI > the nearest mlruns/ at or above the working folder."""
    from bioclf.tracking.uri import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "project"
    (project / "mlruns").mkdir(parents=True)
    (project / "sub" / "deeper").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (project, project / "sub" / "deeper"):
        monkeypatch.chdir(cwd)
        assert resolve_tracking_uri(None) == f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
        assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.chdir(elsewhere)
    assert resolve_tracking_uri(None) == f"sqlite:///{elsewhere / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:1")
    assert resolve_tracking_uri(None) == "http://h:1"


def test_history_only_in_metrics_is_fingerprinted(tmp_path):
    """Runs without history.csv are read from their metric histories: a metric logged at an old
    step (a resumed run's replay) still changes the fingerprint."""
    uri = fresh_store(tmp_path / "store")
    info = write_fake_suite(uri, name="nohist", variants=2, epochs=4, num_classes=4, history_csv=False, seed=3)
    before = probe.fingerprints(uri, None)
    run_id = info["runs"][("v00", 0)]["run_id"]
    MlflowClient(tracking_uri=uri).log_batch(run_id, metrics=[Metric("train_loss", 9.0, _now_ms(), 2)])
    assert probe.fingerprints(uri, None) != before
