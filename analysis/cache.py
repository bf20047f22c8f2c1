"""Which files of a report are still right: a content key per file, kept in the report folder.

Each figure and table file is keyed by a hash of exactly what it is drawn from (the drawing
function's name and inputs, or the table's rows, columns and notes) and of the code that draws
it (``FIGURE_CODE`` / ``TABLE_CODE``: those modules' source and the plotting libraries'
versions). A rebuild keeps a file whose key is the one recorded and whose size and modification
time are still those recorded (a file edited or replaced by hand is redrawn), writes the others,
and ``analysis.output`` removes what the new report no longer has. The manifest,
``.report-cache.json`` beside the report's marker, also keeps the key of the whole report (the
store's fingerprint, see ``analysis.probe``) and the lines the CLI printed for it.

Nothing here imports pandas or numpy at module level: the CLI reads a manifest before it knows
whether anything needs to be built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

CACHE_FILE = ".report-cache.json"
_FORMAT = 1  # of the manifest; another value: the manifest is ignored (everything is redrawn)
_PACKAGE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- code versions


def code_version(modules: tuple[str, ...], packages: tuple[str, ...]) -> str:
    """A hash of ``analysis`` modules' source and installed packages' versions: a new release of
    the drawing code or of matplotlib redraws every file they draw."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for name in modules:
        h.update(name.encode() + b"\0" + (_PACKAGE / f"{name}.py").read_bytes() + b"\0")
    for package in packages:
        try:
            h.update(f"{package}=={version(package)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{package}: none\0".encode())
    return h.hexdigest()[:16]


_versions: dict[str, str] = {}


def figure_code() -> str:
    """What a figure file depends on besides its inputs (computed once per process)."""
    if "figure" not in _versions:
        _versions["figure"] = code_version(("figures", "history", "classwise", "jobs"),
                                           ("matplotlib", "numpy", "pandas", "pillow"))
    return _versions["figure"]


def table_code() -> str:
    """What a table file depends on besides the table (its writers and pandas' CSV output)."""
    if "table" not in _versions:
        _versions["table"] = code_version(("render",), ("pandas", "numpy"))
    return _versions["table"]


def report_code() -> str:
    """Every module of the report and every library it reads or computes with: the key of a
    whole report (a different release may compute any number differently)."""
    if "report" not in _versions:
        modules = tuple(sorted(p.stem for p in _PACKAGE.glob("*.py")))
        _versions["report"] = code_version(modules, ("mlflow", "pandas", "numpy", "scipy", "matplotlib", "pillow"))
    return _versions["report"]


# ---------------------------------------------------------------- content keys


def content_key(*parts) -> str:
    """A hash of ``parts``: equal for equal content (values, dtypes, column names, order), whatever
    object holds it. Raises ``TypeError`` for a type it does not know how to read exactly, rather
    than keying on something approximate (``repr`` of a large array elides values)."""
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()[:40]


def _put(h, tag: bytes, payload: bytes = b"") -> None:
    # Tag and length before every value: ("ab", "c") and ("a", "bc") never hash alike.
    h.update(tag + struct.pack("<Q", len(payload)) + payload)


def _feed(h, obj) -> None:  # noqa: C901 - one branch per kind of value, in one place
    if obj is None:
        _put(h, b"N")
    elif isinstance(obj, bool):
        _put(h, b"b", b"1" if obj else b"0")
    elif isinstance(obj, int):
        _put(h, b"i", str(obj).encode())
    elif isinstance(obj, float):
        _put(h, b"f", obj.hex().encode())  # exact: 0.1 + 0.2 and 0.3 differ
    elif isinstance(obj, str):
        _put(h, b"s", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, bytes):
        _put(h, b"y", obj)
    elif isinstance(obj, Path):
        _put(h, b"p", str(obj).encode())
    elif isinstance(obj, (list, tuple)):
        _put(h, b"l" if isinstance(obj, list) else b"t", str(len(obj)).encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, dict):  # in insertion order: the order of a legend is part of a figure
        _put(h, b"d", str(len(obj)).encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Field by field (not dataclasses.asdict, which would deep-copy the DataFrames inside).
        _put(h, b"c", f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name)
            _feed(h, getattr(obj, f.name))
    elif callable(obj) and hasattr(obj, "__qualname__"):
        _put(h, b"F", f"{obj.__module__}.{obj.__qualname__}".encode())
    else:
        _feed_data(h, obj)


def _feed_data(h, obj) -> None:
    """numpy and pandas values (imported here: they are loaded whenever such a value exists)."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        _put(h, b"D", str(obj.shape).encode())
        _feed(h, [str(c) for c in obj.columns])
        _feed(h, [str(t) for t in obj.dtypes] + [str(n) for n in obj.index.names])
        _feed_hashes(h, pd.util.hash_pandas_object(obj.index))
        for i in range(obj.shape[1]):
            _feed_hashes(h, pd.util.hash_pandas_object(obj.iloc[:, i], index=False))
    elif isinstance(obj, pd.Series):
        _put(h, b"S", str(len(obj)).encode())
        _feed(h, [str(obj.name), str(obj.dtype)])
        _feed_hashes(h, pd.util.hash_pandas_object(obj, index=True))
    elif isinstance(obj, np.ndarray):
        _put(h, b"A", f"{obj.dtype.str}{obj.shape}".encode())
        if obj.dtype.kind == "O":
            for item in obj.ravel():
                _feed(h, item)
        else:
            h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        _feed(h, obj.item())
    elif obj is pd.NA or obj is pd.NaT:
        _put(h, b"n", repr(obj).encode())
    elif isinstance(obj, (pd.Timestamp, pd.Timedelta)):
        _put(h, b"T", obj.isoformat().encode())
    else:
        raise TypeError(f"content_key: no exact reading of {type(obj).__name__}")


def _feed_hashes(h, hashes) -> None:
    """pandas' per-row uint64 hashes (exact for numbers, by value for strings and objects)."""
    h.update(hashes.to_numpy().tobytes())


# ---------------------------------------------------------------- the manifest


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ReportCache:
    """The manifest of one report folder: for each file, its key and the size and modification
    time it had when written."""

    def __init__(self, folder: Path, files: dict[str, dict] | None = None, report: dict | None = None):
        self.folder = folder
        self.files: dict[str, dict] = files or {}
        self.report: dict | None = report
        self._new: dict[str, str] = {}  # rel path -> key, for the files of the build in progress

    @classmethod
    def read(cls, folder: Path) -> ReportCache:
        """The folder's manifest; an empty one when there is none or it cannot be read."""
        try:
            raw = json.loads((folder / CACHE_FILE).read_text(encoding="utf-8"))
            if raw.get("format") != _FORMAT:
                return cls(folder)
            return cls(folder, dict(raw.get("files") or {}), raw.get("report"))
        except (OSError, ValueError, AttributeError, TypeError):
            return cls(folder)

    def hit(self, rel: str, key: str) -> bool:
        """The file is there, recorded under ``key``, and untouched since it was written."""
        entry = self.files.get(rel)
        return bool(entry) and entry.get("key") == key and _stat(self.folder / rel) == entry.get("stat")

    def expect(self, rel: str, key: str) -> None:
        """``rel`` belongs to the report being built, under ``key`` (kept or about to be written)."""
        self._new[rel] = key

    def forget_report(self) -> None:
        """A build has started: until it finishes, the folder is not known to be any store's
        report (a build that dies half way must not leave a whole-report key behind)."""
        if self.report is not None:
            self.report = None
            self._write(self.files)

    def finish(self) -> None:
        """Record the files of the finished build (stat now: after they were written)."""
        files = {}
        for rel, key in self._new.items():
            stat = _stat(self.folder / rel)
            if stat is not None:
                files[rel] = {"key": key, "stat": stat}
        self.files, self._new = files, {}
        self._write(files)

    def set_report(self, key: str, summary: dict) -> None:
        """The whole report is that of the store with fingerprint ``key``; ``summary``: what the
        CLI printed for it, and whether it was logged to the store."""
        self.report = {"key": key, **summary, "stat": {rel: _stat(self.folder / rel) for rel in self.files}}
        self._write(self.files)

    def current_report(self, key: str) -> dict | None:
        """The summary recorded for ``key`` if every file of that report is still as written."""
        report = self.report
        if not report or report.get("key") != key:
            return None
        recorded = report.get("stat") or {}
        if not recorded or any(_stat(self.folder / rel) != stat for rel, stat in recorded.items()):
            return None
        return report

    def _write(self, files: dict[str, dict]) -> None:
        data = {"format": _FORMAT, "tool": "bioclf-report", "files": files}
        if self.report is not None:
            data["report"] = self.report
        tmp = self.folder / (CACHE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        tmp.replace(self.folder / CACHE_FILE)  # never a half-written manifest
