"""The report reads a local SQLite store without MLflow (bioclf.tracking.sqlite_view), and what it
reads is exactly what it reads through MLflow: the same runs, histories, predictions, classes,
notes and softmax, on stores with failed, unfinished, missing and unnamed runs, runs without
history.csv (metric histories), an older suite without suite.json, and a deleted run. Anything
the view is not sure of goes to MLflow. Generated data, CPU, seconds."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_report_fakestore import fresh_store, write_fake_suite

from analysis.store import StoreReader
from bioclf.tracking import sqlite_view

pytestmark = pytest.mark.usefixtures("known_schema")  # the view steps aside for other revisions

SUITES = {  # name -> write_fake_suite options: between them, every case the reader handles
    "mixed": dict(variants=4, seeds=(0, 1), epochs=6, status={("v01", 1): "FAILED", ("v02", 0): "RUNNING"},
                  no_predictions=(("v03", 1),), not_run=(("v03", 0),), early_stop={"v02": 4}),
    "old": dict(variants=3, epochs=5, suite_json=False, history_csv=False, class_names=False, seed=3),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("view-store")
    uri = fresh_store(folder)
    infos = {name: write_fake_suite(uri, name=name, **options) for name, options in SUITES.items()}
    client = MlflowClient(tracking_uri=uri)
    # a deleted duplicate of a finished run: neither reader may pick it
    kept = infos["mixed"]["runs"][("v00", 0)]["run_id"]
    clone = client.create_run(client.get_run(kept).info.experiment_id, tags=client.get_run(kept).data.tags)
    client.delete_run(clone.info.run_id)
    return uri, infos


def _through_mlflow(monkeypatch) -> None:
    monkeypatch.setattr(sqlite_view.StoreView, "open", classmethod(lambda cls, uri: None))


def _load(uri: str, name: str):
    reader = StoreReader(uri)
    try:
        data = reader.load(name, reader.latest_suite(name), all_predictions=True, val_probs=True)
        return reader.read_through, reader.suite_experiments(), data
    finally:
        reader.close()


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.runs, b.runs)
    pd.testing.assert_frame_equal(a.histories, b.histories)
    assert a.predictions.keys() == b.predictions.keys()
    for run_id in a.predictions:
        pd.testing.assert_frame_equal(a.predictions[run_id], b.predictions[run_id])
    if a.classes is None or b.classes is None:
        assert a.classes is None and b.classes is None
    else:
        pd.testing.assert_frame_equal(a.classes, b.classes)
    assert a.val_probs.keys() == b.val_probs.keys()
    assert all(np.array_equal(a.val_probs[k], b.val_probs[k]) for k in a.val_probs)
    for field in ("experiment", "suite_run_id", "baseline", "variants", "description", "diffs", "suite_status",
                  "notes", "logged_taxonomy"):
        assert getattr(a, field) == getattr(b, field), field


@pytest.mark.parametrize("name", sorted(SUITES))
def test_the_view_reads_what_mlflow_reads(store, name, monkeypatch):
    uri, infos = store
    how, suites, viewed = _load(uri, name)
    assert how == "sqlite"
    _through_mlflow(monkeypatch)
    how_b, suites_b, read = _load(uri, name)
    assert how_b == "mlflow"
    assert suites == suites_b == sorted(SUITES)
    _assert_same(viewed, read)
    # and what was read is the suite that was written, not two equal mistakes
    assert viewed.suite_run_id == infos[name]["suite_id"]
    assert set(viewed.runs["run_id"].dropna()) == {r["run_id"] for r in infos[name]["runs"].values()
                                                   if r.get("run_id")}


def test_the_report_reads_draws_and_logs_without_importing_mlflow(store, tmp_path):
    """The whole CLI on a local store: read, drawn and logged back (bioclf.tracking.sqlite_log)
    with nothing of MLflow imported; MLflow then finds the report and the table on the suite run."""
    uri, infos = store
    code = ("import sys; from analysis.cli import main; "
            f"rc = main(['--tracking-uri', {uri!r}, '--out', {str(tmp_path)!r}, '--experiment', 'mixed', "
            "'--workers', '1']); print(rc, 'mlflow' in sys.modules, 'sqlalchemy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1].split() == ["0", "False", "False"], done.stderr
    assert "logged to suite run" in done.stdout
    client, suite_id = MlflowClient(tracking_uri=uri), infos["mixed"]["suite_id"]
    logged = {f.path for f in client.list_artifacts(suite_id, "report")}
    assert {"report/index.html", "report/index.md", "report/tables", "report/figures"} <= logged
    table = pd.read_csv(tmp_path / "mixed" / "tables" / "ablation.csv")
    run = client.get_run(suite_id).data
    for _, row in table.iterrows():
        assert run.tags[f"bioclf.verdict.{row['variant']}"] == row["verdict"]
        assert run.metrics[f"{row['variant']}/val_acc_mean"] == pytest.approx(row["val_acc_mean"], abs=0, rel=0)


def test_artifacts_outside_a_local_folder_are_read_through_mlflow(store, tmp_path):
    """A run whose artifact URI the view cannot open (a server's proxy) goes to MLflow, which
    cannot download it either here: the report says what is missing instead of failing."""
    uri, infos = store
    db = tmp_path / "mlflow.db"
    shutil.copy(uri[len("sqlite:///"):], db)
    run_id = infos["mixed"]["runs"][("v01", 0)]["run_id"]
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", ("file:///nonexistent/x?part=1", run_id))
    reader = StoreReader(f"sqlite:///{db}")
    data = reader.load("mixed", reader.latest_suite("mixed"), all_predictions=True)
    reader.close()
    assert run_id not in data.predictions and run_id in set(data.runs["run_id"])
    assert any(run_id in note and "predictions/val.csv missing" in note for note in data.notes)


@pytest.mark.parametrize("edit", ["ALTER TABLE params RENAME TO params_moved",
                                  "UPDATE alembic_version SET version_num = 'f00dfeedbeef'"])
def test_an_unknown_schema_is_read_through_mlflow(store, tmp_path, edit):
    uri, _ = store
    db = tmp_path / "mlflow.db"
    shutil.copy(uri[len("sqlite:///"):], db)
    with sqlite3.connect(db) as con:
        con.execute(edit)
    assert sqlite_view.StoreView.open(f"sqlite:///{db}") is None
    assert StoreReader(f"sqlite:///{db}").read_through == "mlflow"


def test_mlflow_workspaces_are_mlflow_s_to_read(store, monkeypatch):
    """With workspaces on, MLflow scopes experiments and runs by workspace: the view steps aside."""
    uri, _ = store
    assert sqlite_view.StoreView.open(uri) is not None
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert sqlite_view.StoreView.open(uri) is None


def test_run_names_follow_mlflow_s_rule(store, tmp_path):
    """The name column, else (empty) the mlflow.runName tag when it is not empty, as MLflow's Run."""
    uri, infos = store
    db = tmp_path / "mlflow.db"
    shutil.copy(uri[len("sqlite:///"):], db)
    a, b = (infos["old"]["runs"][(v, 0)]["run_id"] for v in ("v00", "v01"))
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET name = NULL WHERE run_uuid = ?", (a,))
        con.execute("UPDATE runs SET name = '' WHERE run_uuid = ?", (b,))
        con.execute("DELETE FROM tags WHERE run_uuid = ? AND key = 'mlflow.runName'", (b,))
    view = sqlite_view.StoreView.open(f"sqlite:///{db}")
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    try:
        for run_id in (a, b):
            assert view.run(run_id).run_name == client.get_run(run_id).info.run_name
        assert view.run(a).run_name  # from the tag
    finally:
        view.close()
