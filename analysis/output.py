"""The report folder: claimed with a marker file, regenerated in place, never someone else's.

A folder that exists, is not empty and has no marker is refused: it may hold the user's own
files. A folder with the marker belongs to an earlier report: its files are rewritten, and the
files that report wrote but this one does not (a variant since removed) are deleted.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.errors import ReportError

MARKER = ".bioclf-report"


def claim_folder(folder: Path, owner: dict) -> list[str]:
    """Make ``folder`` ours; returns the files (relative paths) an earlier report wrote there."""
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"--out: {folder} is a file, not a folder")
    marker = folder / MARKER
    if folder.is_dir() and any(folder.iterdir()) and not marker.exists():
        raise ReportError(f"{folder} exists, is not empty and holds no earlier report (no {MARKER} file): "
                          "choose another --out, or empty it")
    previous: list[str] = []
    if marker.exists():
        try:
            previous = list(json.loads(marker.read_text()).get("files", []))
        except (OSError, ValueError, AttributeError):
            previous = []
    folder.mkdir(parents=True, exist_ok=True)
    # Claimed before anything is written: a crash half way still leaves a folder we may reuse.
    _write_marker(folder, owner, previous)
    return previous


def release_folder(folder: Path, owner: dict, written: list[Path], previous: list[str]) -> list[str]:
    """Record what this report wrote; delete what only the earlier report had written."""
    now = sorted({p.resolve().relative_to(folder.resolve()).as_posix() for p in written})
    stale = [rel for rel in previous if rel not in now]
    root = folder.resolve()
    for rel in stale:
        path = (folder / rel).resolve()
        if root in path.parents and path.is_file():  # never outside the folder, whatever the marker says
            path.unlink()
    _write_marker(folder, owner, now)
    return stale


def _write_marker(folder: Path, owner: dict, files: list[str]) -> None:
    (folder / MARKER).write_text(json.dumps({"tool": "bioclf-report", **owner, "files": files}, indent=1))
