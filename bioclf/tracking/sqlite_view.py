"""A read-only look at a local SQLite tracking store, without MLflow.

Importing MLflow and opening its store cost 3-4 s on a small machine before the first row is
read; a command that only reads a few rows need not pay that. ``bioclf-exp list`` reads its
runs here (``StoreView``) and ``bioclf-report`` checks whether its reports are current
(analysis.probe). Both read the tables MLflow's own SQLAlchemy store keeps (``experiments``,
``runs``, ``tags``, ``latest_metrics``), opened with ``mode=ro`` so nothing is ever written, and
both give up — the caller then asks MLflow as before — on anything they are not sure of: not a
plain ``sqlite:///`` URI, a database that does not exist yet, a table or column they do not know,
artifacts that are not in a local folder, a deleted experiment (MLflow's path restores it).
tests/test_cli.py checks that ``list`` prints the same either way.
"""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from bioclf.tracking import contract as C
from bioclf.tracking.records import RunRecord, scratch, work_root


class Unsure(Exception):
    """The view cannot answer this exactly: ask MLflow."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a plain ``sqlite:///`` URI that exists; None for anything else."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = Path(unquote(uri[len("sqlite:///"):]))
    return path if path.is_file() else None


def connect_read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)


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


# The columns read below, per table: a store without them is one this module does not know.
_COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "experiment_id", "status", "start_time", "lifecycle_stage", "artifact_uri"},
    "tags": {"run_uuid", "key", "value"},
    "latest_metrics": {"run_uuid", "key", "value", "is_nan"},
}


class StoreView:
    """What ``bioclf-exp list`` reads of a store: an experiment's variant runs (as Tracker's
    ``variant_runs`` returns them), their artifact sizes and the status of a run."""

    def __init__(self, con: sqlite3.Connection, uri: str):
        self.con, self.uri = con, uri

    @classmethod
    def open(cls, uri: str) -> "StoreView | None":
        db = sqlite_path(uri)
        if db is None:
            return None
        try:
            con = connect_read_only(db)
        except sqlite3.Error:
            return None
        try:
            known = all(columns <= {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                        for table, columns in _COLUMNS.items())
        except sqlite3.Error:
            known = False
        if not known:
            con.close()
            return None
        return cls(con, uri)

    def close(self) -> None:
        self.con.close()

    def experiment_id(self, name: str, create: bool = False) -> str | None:
        if create:
            raise ValueError("a read-only view creates nothing")
        rows = self.con.execute("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?",
                                (name,)).fetchall()
        if len(rows) > 1 or any(stage != "active" for _, stage in rows):
            raise Unsure(f"experiment {name!r} is deleted or held twice")
        return str(rows[0][0]) if rows else None

    def variant_runs(self, experiment_id: str) -> list[RunRecord]:
        """Every active variant run of the experiment, newest first (MLflow's order: start time
        descending, then run id)."""
        runs = self.con.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' AND t.key = ? AND t.value = ? "
            "ORDER BY r.start_time DESC, r.run_uuid", (int(experiment_id), C.ROLE, C.ROLE_VARIANT)).fetchall()
        records = []
        for run_id, status in runs:
            tags = dict(self.con.execute("SELECT key, value FROM tags WHERE run_uuid = ? AND key IN (?, ?, ?, ?)",
                                         (run_id, C.VARIANT, C.SEED, C.CONFIG_HASH, C.DATA_FINGERPRINT)))
            metric = self.con.execute("SELECT value, is_nan FROM latest_metrics WHERE run_uuid = ? AND key = ?",
                                      (run_id, "best_val_acc")).fetchone()
            acc = None if metric is None else (math.nan if metric[1] else float(metric[0]))
            records.append(RunRecord(run_id, str(experiment_id), status, tags.get(C.VARIANT), tags.get(C.SEED),
                                     tags.get(C.CONFIG_HASH), tags.get(C.DATA_FINGERPRINT), acc))
        return records

    def artifact_bytes(self, run_id: str) -> int:
        row = self.con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        folder = local_folder(row[0]) if row else None
        if folder is None:
            raise Unsure(f"run {run_id}: artifacts are not in a local folder")
        return sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(folder) for f in files)

    def work_root(self) -> Path:
        return work_root(self.uri)

    def scratch(self) -> list[tuple[Path, int, str | None]]:
        return scratch(self.work_root(), self.run_status)

    def run_status(self, run_id: str) -> str | None:
        """The run's status, None when the store has no such run or it was deleted."""
        row = self.con.execute("SELECT status, lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return row[0] if row and row[1] == "active" else None
