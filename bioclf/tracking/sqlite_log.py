"""Log to a run of a local SQLite tracking store as MLflow would, without importing MLflow.

``bioclf-report`` logs its report back to the suite run: its folders and files as artifacts under
``report/``, the ablation table as metrics and verdict tags. Importing MLflow and opening its
SQLAlchemy store cost about 3.5 CPU-s on a small machine, most of a small report's time, for a
few rows and a few file copies. ``StoreLog`` does that narrow job itself: it writes the rows
MLflow's ``SqlAlchemyStore.log_batch`` writes (``metrics``, ``latest_metrics``, ``tags``) in one
transaction, and copies files the way ``LocalArtifactRepository.log_artifacts`` /
``log_artifact`` do.

It gives up — ``open`` returns None or a call raises ``Unsure``, and the caller then goes through
MLflow as before — on anything it is not sure of: not a plain ``sqlite:///`` URI of an existing
file, a schema revision it was not checked against, MLflow settings that change where rows go
(workspaces, an active logged model), a run that does not exist or is deleted, a name or value
MLflow would reject or rewrite, artifacts that are not in a local folder. A refused call writes
nothing. tests/test_sqlite_log.py proves it writes what MLflow writes.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

from bioclf.tracking.sqlite_view import Unsure, artifact_folder, open_known_store

# The columns written or read, per table: a store without them is not one this module knows.
_COLUMNS = {
    "runs": {"run_uuid", "lifecycle_stage", "artifact_uri"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
}

# MLflow's limits (mlflow/utils/validation.py, mlflow/store/artifact/local_artifact_repo.py).
_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")
_NAME = re.compile(r"[/\w.\- ]*" if os.name == "nt" else r"[/\w.\- :]*")
_MAX_KEY_LENGTH = 250
_MAX_TAG_VALUE_LENGTH = 8000  # longer values: MLflow raises or truncates (MLFLOW_TRUNCATE_LONG_VALUES)
_RUN_NAME_TAG = "mlflow.runName"  # MLflow writes it to runs.name as well
_STAGING_PREFIX = ".artifact.uploading."  # names MLflow reserves for its own staging files
_BUSY_TIMEOUT_S = 20.0  # as MLflow's sessions: a training run may be writing the store meanwhile
_INT64 = 2 ** 63
_MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +inf (SQL has no infinities)


class StoreLog:
    """Log to a run of a local SQLite store as MLflow's SQLAlchemy store would, without MLflow."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    @classmethod
    def open(cls, uri: str) -> "StoreLog | None":
        """A writer for the store at ``uri``; None when MLflow has to do it."""
        # mode=rw: never create a database (MLflow would create and migrate one).
        con = open_known_store(uri, _COLUMNS, lambda db: sqlite3.connect(
            f"{db.resolve().as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None))
        if con is None:
            return None
        con.execute("PRAGMA foreign_keys = ON")  # as MLflow's sessions
        return cls(con)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "StoreLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ metrics and tags

    def log_batch(self, run_id: str, metrics: list[tuple[str, float, int, int]], tags: dict[str, str]) -> None:
        """``(key, value, timestamp_ms, step)`` metrics and tags on an active run, in one transaction."""
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise Unsure(f"run id {run_id!r} is not one MLflow accepts")
        rows = [_metric_row(*metric) for metric in metrics]
        for key, value in tags.items():
            _check_tag(key, value)
        try:
            self.con.execute("BEGIN IMMEDIATE")  # the write lock now, not halfway through
        except sqlite3.Error as exc:  # locked past the timeout, a read-only file: MLflow may say more
            raise Unsure(f"{type(exc).__name__}: {exc}") from None
        try:
            _check_active(self.con, run_id)
            _insert_metrics(self.con, run_id, rows)
            _update_latest_metrics(self.con, run_id, rows)
            _set_tags(self.con, run_id, tags)
        except BaseException as exc:
            self.con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise Unsure(f"{type(exc).__name__}: {exc}") from None
            raise
        self.con.execute("COMMIT")

    # ------------------------------------------------------------ artifacts

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """The files under ``local_dir`` into ``artifact_path`` of the run, overwriting."""
        folder = _folder_in(self._artifact_root(run_id), artifact_path)
        folder.mkdir(parents=True, exist_ok=True)
        _copy_tree(Path(local_dir), folder)

    def log_artifact(self, run_id: str, local_file: Path, artifact_path: str) -> None:
        """One file into ``artifact_path`` of the run, under its own name, overwriting."""
        local_file = Path(local_file)
        if not local_file.is_file():
            raise Unsure(f"{local_file} is not a file")  # MLflow's error, or its directory case
        if local_file.name.startswith(_STAGING_PREFIX):
            raise Unsure(f"MLflow reserves artifact names starting {_STAGING_PREFIX!r}")
        root = self._artifact_root(run_id)
        folder = _folder_in(root, artifact_path)
        folder.mkdir(parents=True, exist_ok=True)
        target = _inside(root, folder / local_file.name)
        if target.exists() and os.path.samefile(local_file, target):
            return  # MLflow leaves a file logged onto itself alone
        _copy_file_atomically(local_file, target)

    def _artifact_root(self, run_id: str) -> Path:
        row = self.con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return artifact_folder(row[0] if row else None, run_id)  # Unsure: no such run, or not local


# ---------------------------------------------------------------- the store


def _check_active(con: sqlite3.Connection, run_id: str) -> None:
    row = con.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    if row is None or row[0] != "active":
        raise Unsure(f"run {run_id} does not exist or is not active")


# ---------------------------------------------------------------- metrics


def _check_name(kind: str, name) -> None:
    """MLflow's rule for metric and tag names: a few characters, a path that is itself normalised."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or _not_unique(name) or len(name) > _MAX_KEY_LENGTH:
        raise Unsure(f"{kind} name {name!r} is not one MLflow accepts")


def _not_unique(name: str) -> bool:
    """MLflow's ``path_not_unique``: names may become file paths, so none may resolve to another."""
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def _metric_row(key, value, timestamp, step) -> tuple[str, float, int, int, int]:
    """The row MLflow stores: ``(key, value, timestamp, step, is_nan)``. NaN is kept as 0 with
    is_nan set, +-inf as +-the largest double (SQL has neither)."""
    _check_name("metric", key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unsure(f"metric {key!r}: value {value!r} is not a number")
    for name, number, low in (("timestamp", timestamp, 0), ("step", step, -_INT64)):
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number < _INT64:
            raise Unsure(f"metric {key!r}: {name} {number!r} is not one MLflow stores as it is")
    try:
        value = float(value)
    except OverflowError:
        raise Unsure(f"metric {key!r}: value {value!r} is not a double") from None
    if math.isnan(value):
        return key, 0.0, timestamp, step, 1
    if math.isinf(value):
        return key, math.copysign(_MAX_FLOAT, value), timestamp, step, 0
    return key, value, timestamp, step, 0


def _insert_metrics(con: sqlite3.Connection, run_id: str, rows: list[tuple]) -> None:
    """Every row into the history; one already there (the whole row is the key) is kept once,
    as MLflow drops duplicates in a batch and those already stored."""
    con.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING", [(*row, run_id) for row in rows])


def _update_latest_metrics(con: sqlite3.Connection, run_id: str, rows: list[tuple]) -> None:
    """MLflow's latest value of a key: the row with the largest (step, timestamp, stored value),
    the first one logged on a tie. Rows are taken in the order given, against what is stored."""
    keys = sorted({row[0] for row in rows})
    latest = {}
    for key in keys:
        stored = con.execute("SELECT value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = ? AND key = ?",
                             (run_id, key)).fetchone()
        if stored is not None:
            latest[key] = (key, *stored)
    changed = {}
    for row in rows:
        key, value, timestamp, step, _ = row
        now = latest.get(key)
        if now is None or (step, timestamp, value) > (now[3], now[2], now[1]):
            latest[key] = changed[key] = row
    con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, "
                    "timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan",
                    [(*row, run_id) for row in changed.values()])


# ---------------------------------------------------------------- tags


def _check_tag(key, value) -> None:
    _check_name("tag", key)
    if key == _RUN_NAME_TAG:
        raise Unsure(f"{_RUN_NAME_TAG} is the run's name: MLflow updates the run with it")
    if not isinstance(value, str) or len(value) > _MAX_TAG_VALUE_LENGTH:
        raise Unsure(f"tag {key!r}: value is not a string of at most {_MAX_TAG_VALUE_LENGTH} characters")


def _set_tags(con: sqlite3.Connection, run_id: str, tags: dict[str, str]) -> None:
    con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                    [(key, value, run_id) for key, value in tags.items()])


# ---------------------------------------------------------------- artifacts


def _folder_in(root: Path, artifact_path: str) -> Path:
    """The folder of ``artifact_path`` in the run's ``root``; refused where MLflow would refuse the
    path (one that normalises to another or leaves the folder, or a link out of it)."""
    if not artifact_path:
        return root
    if not isinstance(artifact_path, str) or _not_unique(artifact_path) or "\\" in artifact_path:
        raise Unsure(f"artifact path {artifact_path!r} is not one MLflow accepts as it is")
    return _inside(root, root / artifact_path)


def _inside(root: Path, path: Path) -> Path:
    """``path``, once links are followed, is in ``root`` (MLflow's validate_path_within_directory)."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise Unsure(f"{path} leads out of the run's artifact folder {root}")
    return path


def _copy_tree(source: Path, destination: Path) -> None:
    """MLflow's ``shutil_copytree_without_file_permissions``: the folders created, each file copied
    with ``copy2`` (bytes, mode and times) over what is there; files already there stay."""
    for top, folders, files in os.walk(source):
        for name in folders:
            folder = destination / os.path.relpath(os.path.join(top, name), source)
            if not folder.exists():
                folder.mkdir()
        for name in files:
            file = os.path.join(top, name)
            shutil.copy2(file, destination / os.path.relpath(file, source))


def _copy_file_atomically(source: Path, target: Path) -> None:
    """MLflow's ``log_artifact``: into a staging file beside the target, its mode and times from
    the source, then renamed over the target, so a reader never sees half a file."""
    handle, staging = tempfile.mkstemp(dir=target.parent, prefix=_STAGING_PREFIX)
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        shutil.copystat(source, staging)
        os.replace(staging, target)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
