"""bioclf.tracking.sqlite_log writes what MLflow writes: the same calls made through MlflowClient
on one run and through StoreLog on another read back the same, and it refuses (None / Unsure,
nothing written) where it cannot be sure."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from bioclf.tracking import contract as C
from bioclf.tracking.sqlite_log import StoreLog
from bioclf.tracking.sqlite_view import Unsure, local_folder
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from test_report_fakestore import fresh_store

pytestmark = pytest.mark.usefixtures("known_schema")  # the writer steps aside for other revisions

T = 1_700_000_000_000
NAN, INF = math.nan, math.inf

# Two batches, so that the second meets rows already stored. Comments: what MLflow does with them.
BATCHES = [
    ([("a/nan", NAN, T, 0), ("a/pinf", INF, T, 0), ("a/ninf", -INF, T, 0),
      ("loss", 0.5, T + 10, 5), ("loss", 0.9, T + 20, 3),  # an older step logged later: not the latest
      ("acc", 0.1, T, 1), ("acc", 0.2, T + 1, 1),  # same step, later timestamp: the latest
      ("val", 0.3, T, 2), ("val", 0.7, T, 2),  # same step and timestamp, larger value: the latest
      ("dup", 1.0, T, 0), ("dup", 1.0, T, 0), ("nan2", NAN, T, 0), ("nan2", NAN, T, 0),  # stored once
      ("tie", 0.0, T, 0), ("tie", NAN, T, 0)],  # NaN is stored as 0: a tie, the first logged stays latest
     {C.VERDICT_PREFIX + "v01": "better", "note": "first"}),
    ([("dup", 1.0, T, 0),  # already stored: kept once
      ("loss", 0.1, T + 30, 4), ("val", 0.6, T, 2), ("acc", 0.05, T + 1, 1), ("acc", 0.3, T + 1, 1),
      ("a/nan", 2.0, T, 0),  # beats the stored NaN (stored as 0) on value
      ("a/pinf", 5.0, T, 0)],  # does not beat +inf (stored as the largest double)
     {"note": "second"}),  # overwrites
]


@pytest.fixture
def store(tmp_path):
    uri = fresh_store(tmp_path / "store")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client, experiment


def _report(folder: Path, version: int) -> Path:
    """A report folder: nested folders, files whose bytes change between versions."""
    for name, text in {"figures/a.txt": "a", "tables/deep/b.csv": "b", "index.html": "i"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{text}{version}")
    if version == 1:
        (folder / "figures/only_first.txt").write_text("stays")
    return folder


def _log_through_mlflow(client, run_id, reports):
    for metrics, tags in BATCHES:
        client.log_batch(run_id, metrics=[Metric(*m) for m in metrics], tags=[RunTag(*t) for t in tags.items()])
    for folder in reports:  # the second over the first: files overwritten
        for sub in ("figures", "tables"):
            client.log_artifacts(run_id, str(folder / sub), f"report/{sub}")
        client.log_artifact(run_id, str(folder / "index.html"), "report")


def _log_through_storelog(uri, run_id, reports):
    log = StoreLog.open(uri)
    assert log is not None, "StoreLog refused a store the installed MLflow made (see the revision test)"
    with log:
        for metrics, tags in BATCHES:
            log.log_batch(run_id, metrics, tags)
        for folder in reports:
            for sub in ("figures", "tables"):
                log.log_artifacts(run_id, folder / sub, f"report/{sub}")
            log.log_artifact(run_id, folder / "index.html", "report")


def _nan_aware(value: float):
    return "nan" if math.isnan(value) else value


def _read_back(client, run_id, download_to: Path) -> dict:
    data = client.get_run(run_id).data
    history = {key: sorted([(m.step, m.timestamp, _nan_aware(m.value)) for m in client.get_metric_history(run_id, key)],
                           key=repr) for key in data.metrics}

    def listing(path=None):
        found = []
        for info in client.list_artifacts(run_id, path):
            found.append((info.path, info.is_dir, info.file_size))
            found += listing(info.path) if info.is_dir else []
        return found

    folder = Path(client.download_artifacts(run_id, "report", str(download_to)))
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    root = local_folder(client.get_run(run_id).info.artifact_uri)  # the copies' modes and times too
    stats = {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns) for p in root.rglob("*")
             if p.is_file()}
    return {"metrics": {k: _nan_aware(v) for k, v in data.metrics.items()},
            "tags": {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
            "history": history, "artifacts": listing(), "files": files, "stats": stats}


def _rows(uri: str, table: str, run_id: str) -> list[tuple]:
    """The run's rows of ``table`` as stored, its id spelled RUN (so two runs compare)."""
    with sqlite3.connect(uri[len("sqlite:///"):]) as con:
        rows = con.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", (run_id,)).fetchall()
    return sorted(tuple("RUN" if value == run_id else value for value in row) for row in rows)


def test_storelog_writes_what_mlflow_writes(store, tmp_path):
    uri, client, experiment = store
    by_mlflow, by_storelog = (client.create_run(experiment, run_name="r").info.run_id for _ in range(2))
    reports = [_report(tmp_path / f"report{version}", version) for version in (1, 2)]
    _log_through_mlflow(client, by_mlflow, reports)
    _log_through_storelog(uri, by_storelog, reports)

    expected, got = _read_back(client, by_mlflow, tmp_path / "d1"), _read_back(client, by_storelog, tmp_path / "d2")
    assert got == expected
    # the cases above did what their comments say (so the comparison covered them)
    assert expected["metrics"] == {"a/nan": 2.0, "a/pinf": 1.7976931348623157e308, "a/ninf": -1.7976931348623157e308,
                                   "loss": 0.5, "acc": 0.3, "val": 0.7, "dup": 1.0, "nan2": "nan", "tie": 0.0}
    assert expected["history"]["dup"] == [(0, T, 1.0)] and expected["history"]["nan2"] == [(0, T, "nan")]
    assert expected["tags"][C.VERDICT_PREFIX + "v01"] == "better" and expected["tags"]["note"] == "second"
    assert expected["files"]["index.html"] == b"i2" and expected["files"]["figures/only_first.txt"] == b"stays"
    assert ("report/tables/deep/b.csv", False, 2) in expected["artifacts"]
    for table in ("metrics", "latest_metrics", "tags"):  # and the rows themselves
        assert _rows(uri, table, by_storelog) == _rows(uri, table, by_mlflow), table


def test_open_refuses_what_it_does_not_know(store, tmp_path):
    uri, _, _ = store
    assert StoreLog.open("http://localhost:5000") is None
    assert StoreLog.open(f"sqlite:///{tmp_path / 'missing.db'}") is None
    with sqlite3.connect(uri[len("sqlite:///"):]) as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    assert StoreLog.open(uri) is None


def test_log_batch_refuses_deleted_and_unknown_runs_and_writes_nothing(store):
    uri, client, experiment = store
    deleted = client.create_run(experiment).info.run_id
    client.delete_run(deleted)
    with StoreLog.open(uri) as log:
        for run_id in (deleted, uuid.uuid4().hex):
            with pytest.raises(Unsure):
                log.log_batch(run_id, [("m", 1.0, T, 0)], {"t": "v"})
            assert _rows(uri, "metrics", run_id) == [] and _rows(uri, "latest_metrics", run_id) == []
            assert [row for row in _rows(uri, "tags", run_id) if row[0] == "t"] == []


@pytest.mark.parametrize("metrics, tags", [([("bad key!", 1.0, T, 0)], {}), ([("../up", 1.0, T, 0)], {}),
                                           ([], {"long": "x" * 8001}), ([("m", 1.0, -1, 0)], {})])
def test_log_batch_refuses_what_mlflow_rejects_and_writes_nothing(store, metrics, tags, monkeypatch):
    uri, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    with pytest.raises(MlflowException):
        client.log_batch(run_id, metrics=[Metric(*m) for m in metrics], tags=[RunTag(*t) for t in tags.items()])
    with StoreLog.open(uri) as log, pytest.raises(Unsure):
        log.log_batch(run_id, [*metrics, ("fine", 1.0, T, 0)], {**tags, "fine": "v"})
    assert _rows(uri, "metrics", run_id) == [] and "fine" not in client.get_run(run_id).data.tags


def test_artifacts_refused_when_not_in_a_local_folder(store, tmp_path):
    uri, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    with sqlite3.connect(uri[len("sqlite:///"):]) as con:
        con.execute("UPDATE runs SET artifact_uri = 's3://bucket/x' WHERE run_uuid = ?", (run_id,))
    folder = _report(tmp_path / "report", 1)
    with StoreLog.open(uri) as log:
        with pytest.raises(Unsure):
            log.log_artifacts(run_id, folder / "figures", "report/figures")
        with pytest.raises(Unsure):
            log.log_artifact(run_id, folder / "index.html", "report")


def test_importing_the_writer_loads_neither_mlflow_nor_sqlalchemy():
    code = ("import sys, bioclf.tracking.sqlite_log; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'sqlalchemy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
