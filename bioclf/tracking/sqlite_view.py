"""A read-only look at a local SQLite tracking store, without MLflow.

Importing MLflow and opening its store cost 3-4 s on a small machine before the first row is
read; a command that only reads a few rows need not pay that. ``bioclf-exp list`` reads its
runs here (``StoreView``), ``bioclf-report`` reads its suites here (analysis.store) and checks
whether its reports are current (analysis.probe). They read the tables MLflow's own SQLAlchemy
store keeps (``experiments``, ``runs``, ``tags``, ``params``, ``latest_metrics``, ``metrics``),
opened with ``mode=ro`` so nothing is ever written, and give up (``Unsure``: the caller then asks
MLflow as before) on anything they are not sure of: not a plain ``sqlite:///`` URI, a database
that does not exist yet, a table or column they do not know, artifacts that are not in a local
folder, a deleted experiment (MLflow's path restores it). Each answer is MLflow's own, order
included: tests/test_cli.py checks that ``list`` prints the same either way, and
tests/test_report_view.py that a report reads the same suite either way.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from functools import partial
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from bioclf.tracking import contract as C
from bioclf.tracking.records import RunRecord, StoredRun, scratch, work_root


class Unsure(Exception):
    """The view cannot answer this exactly: ask MLflow."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a plain ``sqlite:///`` URI that exists; None for anything else."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = Path(unquote(uri[len("sqlite:///"):]))
    return path if path.is_file() else None


def connect_read_only(db: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=check_same_thread)


def local_folder(artifact_uri: str | None) -> Path | None:
    """The folder of a run's artifacts when it is a local one (``file://`` or an absolute path)."""
    if not artifact_uri:
        return None
    if artifact_uri.startswith("/"):
        return Path(artifact_uri)
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and not parsed.query:
        return Path(unquote(parsed.path))
    return None


# The alembic revisions of the stores these modules were checked against (MLflow 3.17; the reader
# by tests/test_report_view.py and tests/test_cli.py, the writer sqlite_log by
# tests/test_sqlite_log.py, which fails when an installed MLflow creates another one). A store of
# any other schema may keep other tables, columns or meanings: it goes through MLflow, which also
# refuses a store older than itself until `mlflow db upgrade`.
KNOWN_REVISIONS = frozenset({"dc11669786a5"})


def schema_known(con: sqlite3.Connection, columns: dict[str, set[str]]) -> bool:
    """The store is at a known revision and has ``columns`` (table -> names)."""
    revisions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
    if len(revisions) != 1 or revisions[0] not in KNOWN_REVISIONS:
        return False
    return all(names <= {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
               for table, names in columns.items())


def open_known_store(uri: str, columns: dict[str, set[str]],
                     connect: Callable[[Path], sqlite3.Connection]) -> sqlite3.Connection | None:
    """``connect(db)`` to the database of ``uri`` when it is a local SQLite store these modules
    know (``schema_known`` with ``columns``, MLflow's plain settings); None when MLflow has to do it."""
    db = sqlite_path(uri)
    if db is None or mlflow_settings_reroute():
        return None
    try:
        con = connect(db)
    except sqlite3.Error:
        return None
    try:
        known = schema_known(con, columns)
    except sqlite3.Error:
        known = False
    if not known:
        con.close()
        return None
    return con


def mlflow_settings_reroute() -> bool:
    """MLflow settings under which it reads or writes a SQLite store differently: workspaces
    scope experiments and runs (another store class), and an active logged model also gets a
    run's metrics."""
    workspaces = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower()
    model = os.environ.get("MLFLOW_ACTIVE_MODEL_ID") or os.environ.get("_MLFLOW_ACTIVE_MODEL_ID")
    return workspaces not in ("", "false", "0") or bool(model)


# The columns read below, per table: a store without them is one this module does not know.
_COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "name", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage",
             "artifact_uri"},
    "tags": {"run_uuid", "key", "value"},
    "params": {"run_uuid", "key", "value"},
    "latest_metrics": {"run_uuid", "key", "value", "is_nan"},
    "metrics": {"run_uuid", "key", "value", "timestamp", "step", "is_nan"},
}
_IN_CHUNK = 500  # run ids per "IN (...)": below any SQLite's limit on bound variables
_RUN_NAME_TAG = "mlflow.runName"  # where MLflow finds a run's name when its column is empty


class StoreView:
    """What ``bioclf-exp list`` reads of a store (an experiment's variant runs, as Tracker's
    ``variant_runs`` returns them, their artifact sizes, the status of a run) and what
    ``bioclf-report`` reads (experiments, runs by tag as ``StoredRun``, metric histories, artifact
    files). The report reads from a thread pool: one lock serialises the queries."""

    def __init__(self, con: sqlite3.Connection, uri: str):
        self.con, self.uri = con, uri
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: str) -> "StoreView | None":
        con = open_known_store(uri, _COLUMNS, partial(connect_read_only, check_same_thread=False))
        return cls(con, uri) if con is not None else None

    def close(self) -> None:
        self.con.close()

    def experiment_id(self, name: str, create: bool = False) -> str | None:
        if create:
            raise ValueError("a read-only view creates nothing")
        found = self.experiment_by_name(name)
        if found is not None and found[1] != "active":
            raise Unsure(f"experiment {name!r} is deleted")  # MLflow's path restores it
        return found[0] if found else None

    def variant_runs(self, experiment_id: str) -> list[RunRecord]:
        """Every active variant run of the experiment, newest first, as Tracker's ``variant_runs``."""
        return [RunRecord(r.run_id, r.experiment_id, r.status, r.tags.get(C.VARIANT), r.tags.get(C.SEED),
                          r.tags.get(C.CONFIG_HASH), r.tags.get(C.DATA_FINGERPRINT), r.metrics.get("best_val_acc"))
                for r in self.runs_with_tag([experiment_id], C.ROLE, C.ROLE_VARIANT)]

    def artifact_bytes(self, run_id: str) -> int:
        rows = self._query("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
        folder = artifact_folder(rows[0][0] if rows else None, run_id)
        return sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(folder) for f in files)

    def work_root(self) -> Path:
        return work_root(self.uri)

    def scratch(self) -> list[tuple[Path, int, str | None]]:
        return scratch(self.work_root(), self.run_status)

    def run_status(self, run_id: str) -> str | None:
        """The run's status, None when the store has no such run or it was deleted."""
        rows = self._query("SELECT status, lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,))
        return rows[0][0] if rows and rows[0][1] == "active" else None

    # ------------------------------------------------------------ what the report reads

    def experiments(self) -> dict[str, str]:
        """``{id: name}`` of the active experiments."""
        rows = self._query("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'")
        return {str(i): name for i, name in rows}

    def experiment_by_name(self, name: str) -> tuple[str, str] | None:
        """(id, lifecycle stage) of the experiment called ``name``, deleted or not."""
        rows = self._query("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,))
        if len(rows) > 1:
            raise Unsure(f"experiment {name!r} is held twice")
        return (str(rows[0][0]), rows[0][1]) if rows else None

    def experiment_name(self, experiment_id: str) -> str | None:
        rows = self._query("SELECT name FROM experiments WHERE experiment_id = ?", (_as_id(experiment_id),))
        return rows[0][0] if rows else None

    def runs_with_tag(self, experiment_ids: list[str], key: str, value: str) -> list[StoredRun]:
        """The active runs of the experiments whose tag ``key`` is ``value``, in MLflow's order of
        ``search_runs(order_by=["attributes.start_time DESC"])``: start time descending, runs
        without one last, then run id."""
        marks = ",".join("?" * len(experiment_ids))
        ids = [row[0] for row in self._query(
            f"SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE r.experiment_id IN ({marks}) "
            "AND r.lifecycle_stage = 'active' AND t.key = ? AND t.value = ? "
            "ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid",
            (*map(_as_id, experiment_ids), key, value))]
        return self._stored_runs(ids)

    def run(self, run_id: str) -> StoredRun | None:
        """The run, deleted or not (as ``MlflowClient.get_run``); None when there is none."""
        runs = self._stored_runs([run_id])
        return runs[0] if runs else None

    def metric_history(self, run_id: str, key: str) -> list[tuple[str, int, int, float]]:
        """Every value of the metric as (key, step, timestamp, value), in MLflow's order
        (timestamp, step, value)."""
        rows = self._query("SELECT step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
                           "ORDER BY timestamp, step, value", (run_id, key))
        return [(key, step, ts, math.nan if nan else float(value)) for step, ts, value, nan in rows]

    def artifact(self, run: StoredRun, path: str) -> Path | None:
        """The local file of the run's artifact ``path``; None when there is no such file."""
        file = artifact_folder(run.artifact_uri, run.run_id) / path
        return file if file.is_file() else None

    def _stored_runs(self, ids: list[str]) -> list[StoredRun]:
        """``StoredRun`` of each id that the store holds, in the order given; a handful of
        queries per 500 runs, not one per run."""
        rows, tags, params, metrics = {}, {}, {}, {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._query("SELECT run_uuid, experiment_id, status, name, start_time, end_time, artifact_uri "
                                   f"FROM runs WHERE run_uuid IN ({marks})", chunk):
                rows[row[0]] = row
            for table, into in (("tags", tags), ("params", params)):
                for run_id, key, value in self._query(f"SELECT run_uuid, key, value FROM {table} "
                                                      f"WHERE run_uuid IN ({marks})", chunk):
                    into.setdefault(run_id, {})[key] = value
            for run_id, key, value, nan in self._query("SELECT run_uuid, key, value, is_nan FROM latest_metrics "
                                                       f"WHERE run_uuid IN ({marks})", chunk):
                metrics.setdefault(run_id, {})[key] = math.nan if nan else float(value)
        runs = []
        for run_id in ids:
            if run_id not in rows:
                continue
            _, experiment_id, status, name, start, end, artifact_uri = rows[run_id]
            if start is None:  # MLflow 3.17 refuses to return such a run (RunInfo needs a start time)
                raise Unsure(f"run {run_id} has no start time")
            run_tags = tags.get(run_id, {})
            name = name or run_tags.get(_RUN_NAME_TAG) or name  # MLflow: the tag when the column is empty
            runs.append(StoredRun(run_id, str(experiment_id), status, name, start, end, artifact_uri, run_tags,
                                  params.get(run_id, {}), metrics.get(run_id, {})))
        return runs

    def _query(self, sql: str, args=()) -> list[tuple]:
        try:
            with self._lock:
                return self.con.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:  # locked, damaged, a schema moved under us: MLflow will say
            raise Unsure(f"{type(exc).__name__}: {exc}") from None


def artifact_folder(artifact_uri: str | None, run_id: str) -> Path:
    """The local folder of a run's artifacts; ``Unsure`` for any other (or no) artifact URI."""
    try:
        folder = local_folder(artifact_uri)
    except ValueError:  # a URI urllib cannot parse: MLflow's to judge
        folder = None
    if folder is None:
        raise Unsure(f"run {run_id}: artifacts are not in a local folder")
    return folder


def _as_id(experiment_id: str) -> int:
    try:
        return int(experiment_id)
    except (TypeError, ValueError):
        raise Unsure(f"experiment id {experiment_id!r} is not one this store keeps") from None
