"""Plain values about the store that the rest of bioclf gets back (no MLflow objects), and the
scratch space of running runs. No MLflow import: the read-only view (sqlite_view) shares them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bioclf.tracking.uri import local_store_dir


@dataclass(frozen=True)
class RunRecord:
    """What the rest of bioclf needs to know about a run in the store: plain values, no MLflow
    objects (only this package touches those)."""

    run_id: str
    experiment_id: str
    status: str  # MLflow's: RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    variant: str | None = None
    seed: str | None = None
    config_hash: str | None = None
    data_fingerprint: str | None = None
    best_val_acc: float | None = None


@dataclass(frozen=True)
class StoredRun:
    """A run as the report reads it, whoever read it (MLflow's client or the SQLite view): what
    MLflow's ``Run`` holds, as plain values. ``metrics``: the latest value of each (NaN where NaN
    was logged); ``tags``, ``params``: strings."""

    run_id: str
    experiment_id: str
    status: str
    run_name: str | None
    start_time: int | None  # ms since the epoch
    end_time: int | None
    artifact_uri: str | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def work_root(uri: str) -> Path:
    """Scratch space for running runs: ``$BIOCLF_WORK_DIR`` when set (a folder every node
    sees, for multi-node runs: resume and claims work across machines), else beside a local
    store (same disk as its artifacts, so large checkpoints are not copied across file
    systems), else the user's cache."""
    store = local_store_dir(uri)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = store / ".work" if store else cache / "bioclf" / "work"
    if os.environ.get("BIOCLF_WORK_DIR"):
        root = Path(os.environ["BIOCLF_WORK_DIR"]).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def scratch(root: Path, status_of: Callable[[str], str | None]) -> list[tuple[Path, int, str | None]]:
    """The work folders of runs under ``root``: (folder, bytes, the run's status from
    ``status_of``, None when the store has no such run or it was deleted). A folder whose run is
    not RUNNING or KILLED will never be resumed."""
    found = []
    for folder in sorted(root.iterdir()):
        if not re.fullmatch(r"[0-9a-f]{32}", folder.name) or not folder.is_dir():
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        found.append((folder, size, status_of(folder.name)))
    return found
