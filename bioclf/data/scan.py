"""Find unreadable images before training, once per dataset listing (``data.on_bad_image``).

A file is bad when it cannot become a training image: a dangling symlink, a symlink loop,
not a regular file (a FIFO named .jpg would block a reader), zero bytes, no read permission,
not an image / an unsupported format, a decompression bomb, truncated or corrupt data, or a
mode that cannot be made RGB. ``check_image`` does what ``load_rgb`` does, so a file the
scan passes is one that training can read:

- a full decode, because ``Image.verify()`` does not notice a JPEG cut short. JPEGs are
  decoded in draft mode (libjpeg's DCT scaling, at 1/8 size): that still reads the whole
  entropy-coded stream, so truncation is caught (tests/test_scan.py checks it on files cut
  at 50% and 90%), at a fraction of the cost of a full-size decode;
- ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced False during the scan;
- decompression bombs: Pillow refuses images over 2 x ``Image.MAX_IMAGE_PIXELS`` (default
  89,478,485 pixels, about 9459 x 9459) and only warns above 1 x; the scan treats the
  warning as bad too, so the limit is ``Image.MAX_IMAGE_PIXELS``. A program that needs
  larger images can raise ``PIL.Image.MAX_IMAGE_PIXELS`` before scanning (``None`` turns the
  check off); the value is stored with the cached result.

Many files are checked in a process pool (``scan_images``). ``scan_dataset`` scans
``ROOT/train``, ``ROOT/val`` (the files the class-folder datasets list) and ``ROOT/test``
(flat) and caches the result as JSON in ``cache_dir / f"scan-{fingerprint}.json"`` (default
``$XDG_CACHE_HOME/bioclf/scans`` or ``~/.cache/bioclf/scans``) under a *listing* fingerprint:
a hash of every image file's relative path, size and mtime_ns. Adding, removing, replacing
or touching a file gives a new fingerprint and a new scan; an unchanged folder is not
re-decoded (only its bad files are checked again, so e.g. a ``chmod`` fix is seen). The
fingerprint does not read file contents (a later content fingerprint may), and the data
folder itself is never written to.

``apply_bad_image_policy`` turns a report into the policy: "error" -> one-line BioclfError
listing the first bad files; "skip" -> the set of absolute paths to pass as ``exclude``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import stat
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Sequence

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bioclf.data.folder import _is_dir, _scan_folder, list_flat_images, list_images
from bioclf.data.images import one_line, to_rgb
from bioclf.errors import BioclfError

log = logging.getLogger(__name__)

# Bump when check_image changes what it calls bad: cached results from older scans are ignored.
SCAN_VERSION = 1
# Below this many files a pool costs more than it saves (measured: see scan_images).
PARALLEL_MIN_FILES = 200
# Draft mode decodes a JPEG at the largest DCT scale-down (1, 1/2, 1/4, 1/8) that keeps it at
# least this size: (1, 1) asks for 1/8, the cheapest (see the module docstring).
DRAFT_SIZE = (1, 1)
# Splits scanned under a dataset root: labelled (class folders) and flat.
LABELLED_SPLITS = ("train", "val")
FLAT_SPLITS = ("test",)
# Bad files named in the "error" policy's one-line message.
ERROR_EXAMPLES = 5

POLICIES = ("error", "skip")


# --- one file -------------------------------------------------------------------------------

def check_image(path: str | os.PathLike, on_decoded: Callable[[Image.Image, Image.Image], None] | None = None,
                draft_size: tuple[int, int] = DRAFT_SIZE) -> str | None:
    """None if ``path`` decodes to an RGB image, else a short reason ("zero bytes", "truncated", ...).

    Never raises for a bad file. Uses the current ``Image.MAX_IMAGE_PIXELS`` and forces
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` off while it runs. ``on_decoded(opened, rgb)``, when
    given, gets the opened file (its size and mode as stored) and the decoded RGB image (EXIF
    orientation applied; JPEGs decoded in draft mode, at least ``draft_size``): the data check
    hashes that same decode instead of decoding the file a second time.
    """
    path = os.fspath(path)
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return _check(path, on_decoded, draft_size)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _check(path: str, on_decoded=None, draft_size: tuple[int, int] = DRAFT_SIZE) -> str | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "dangling symlink" if os.path.islink(path) else "missing (removed during the scan?)"
    except PermissionError:
        return "permission denied"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
        return f"cannot stat ({one_line(error.strerror or error, 80)})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "zero bytes"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                stored = SimpleNamespace(size=image.size, mode=image.mode, format=image.format,
                                         exif=_safe_exif(image))
                if image.format == "JPEG":
                    image.draft("RGB", draft_size)
                image.load()
                rgb = to_rgb(ImageOps.exif_transpose(image))
                if on_decoded is not None:
                    on_decoded(stored, rgb)
    except PermissionError:
        return "permission denied"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return _bomb_reason(error)
    except UnidentifiedImageError:
        return _not_an_image_reason(path)
    except BioclfError as error:  # to_rgb: a mode that has no RGB conversion
        return one_line(error, 120)
    except OSError as error:
        message = str(error)
        if "truncated" in message or "broken data stream" in message:
            return "truncated"
        return f"corrupt ({one_line(message, 100)})"
    except Exception as error:  # noqa: BLE001 - plugins raise SyntaxError, struct.error, ValueError, ...
        return f"corrupt ({type(error).__name__}: {one_line(error, 100)})"
    return None


def _safe_exif(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent or unreadable: exif_transpose then leaves the image)."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block
        return 1


def _bomb_reason(error: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = found.group(1) if found else "?"
    return f"decompression bomb ({pixels} pixels > limit {Image.MAX_IMAGE_PIXELS})"


_SIGNATURES = (
    (b"%PDF", "not an image (PDF document)"),
    (b"PK\x03\x04", "not an image (zip archive)"),
    (b"\x1f\x8b", "not an image (gzip archive)"),
)
_ISO_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"heif": "HEIF", b"avif": "AVIF"}


def _not_an_image_reason(path: str) -> str:
    """Say what a file Pillow cannot identify looks like, from its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        head = b""
    for magic, reason in _SIGNATURES:
        if head.startswith(magic):
            return reason
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return f"unsupported format ({_ISO_BRANDS[head[8:12]]}; convert to JPEG or PNG)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return "unsupported format (SVG vector image)"
    if text.startswith((b"<!doctype html", b"<html")):
        return "not an image (HTML page)"
    if text.startswith(b"<?xml"):
        return "not an image (XML text)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut by the 512-byte read is still text
        if error.start < len(head) - 4:
            return "not an image (cannot identify image file)"
    if head and all(32 <= byte or byte in b"\t\r\n" for byte in head):
        return "not an image (text file)"
    return "not an image (cannot identify image file)"


# --- many files -----------------------------------------------------------------------------

def default_workers() -> int:
    """Processes for a large scan: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def scan_images(paths: Sequence[str | os.PathLike], workers: int | None = None) -> list[tuple[str, str]]:
    """``(path, reason)`` for each bad file of ``paths``, in the given order (see check_image).

    More than PARALLEL_MIN_FILES files are checked in ``workers`` processes (default:
    default_workers()), in chunks; fewer, or ``workers <= 1``, in this process.
    """
    paths = [os.fspath(path) for path in paths]
    workers = default_workers() if workers is None else max(1, int(workers))
    limit = Image.MAX_IMAGE_PIXELS
    if workers > 1 and len(paths) > PARALLEL_MIN_FILES:
        try:
            reasons = _check_in_pool(paths, workers, limit)
        except BrokenProcessPool:
            log.warning("image scan: a worker process died; checking the %d files in this process", len(paths))
            reasons = _check_chunk(paths, limit)
    else:
        reasons = _check_chunk(paths, limit)
    return [(path, reason) for path, reason in zip(paths, reasons) if reason is not None]


def _check_in_pool(paths: list[str], workers: int, limit: int | None) -> list[str | None]:
    # ~4 chunks per worker: large enough to amortise pickling, small enough to balance load.
    size = max(16, math.ceil(len(paths) / (workers * 4)))
    chunks = [paths[start:start + size] for start in range(0, len(paths), size)]
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_pool_context()) as pool:
        return [reason for chunk in pool.map(_check_chunk, chunks, repeat(limit)) for reason in chunk]


def _pool_context():
    # fork starts in milliseconds; spawn would re-import torch in every worker.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _check_chunk(paths: list[str], limit: int | None) -> list[str | None]:
    Image.MAX_IMAGE_PIXELS = limit  # the parent's limit, whatever the start method
    return [check_image(path) for path in paths]


# --- a dataset: listing, fingerprint, cached report -------------------------------------------

def dataset_image_files(root: str | Path) -> list[str]:
    """The image files the datasets would read under ``root``, sorted: every non-hidden class
    folder of train/ and val/ (recursively) and the files of test/ (flat); missing splits are
    skipped here (building the datasets reports them)."""
    root = Path(root)
    files: list[str] = []
    for split in LABELLED_SPLITS:
        split_dir = root / split
        if split_dir.is_dir():
            for entry in sorted(_scan_folder(str(split_dir)), key=lambda e: e.name):
                if not entry.name.startswith(".") and _is_dir(entry):
                    files.extend(list_images(entry.path))
    for split in FLAT_SPLITS:
        if (root / split).is_dir():
            files.extend(list_flat_images(root / split))
    return sorted(files)


def dataset_listing_fingerprint(root: str | Path) -> str:
    """A cheap fingerprint of the image files under ``root``: a hash of the sorted
    (relative path, size, mtime_ns) of each (see dataset_image_files). Contents are not read."""
    root = Path(root)
    return _listing_fingerprint(root, dataset_image_files(root))


def _listing_fingerprint(root: Path, files: Iterable[str]) -> str:
    digest = hashlib.sha256(b"bioclf-listing-v1\n")
    for path in sorted(files):
        try:
            info = os.stat(path)
        except OSError:  # a dangling or looping symlink: the link itself
            try:
                info = os.lstat(path)
            except OSError:
                info = None
        size, mtime = (info.st_size, info.st_mtime_ns) if info else (-1, -1)
        digest.update(f"{_relative(path, root)}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


@dataclass
class ScanReport:
    """The result of scanning a dataset: ``bad`` holds (path relative to root, reason)."""

    fingerprint: str
    n_images: int
    bad: list[tuple[str, str]] = field(default_factory=list)
    root: str = ""
    from_cache: bool = False
    seconds: float = 0.0

    @property
    def n_bad(self) -> int:
        return len(self.bad)

    def bad_paths(self, root: str | Path | None = None) -> set[str]:
        """Absolute paths of the bad files (relative entries joined to ``root`` or self.root)."""
        base = str(root if root is not None else self.root)
        return {os.path.normpath(os.path.join(base, rel)) for rel, _ in self.bad}

    def bad_list_text(self) -> str:
        """One "path<TAB>reason" line per bad file (what a run logs as an artifact)."""
        return "".join(f"{rel}\t{reason}\n" for rel, reason in self.bad)


def cache_home() -> Path:
    """bioclf's cache folder, ``$XDG_CACHE_HOME/bioclf``, else ``~/.cache/bioclf``: scans,
    data-check hashes, resized copies and downloads each keep a subfolder of it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "bioclf"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bioclf/scans``, else ``~/.cache/bioclf/scans``."""
    return cache_home() / "scans"


def scan_dataset(
    root: str | Path,
    cache_dir: str | Path | None = None,
    *,
    use_cache: bool = True,
    workers: int | None = None,
) -> ScanReport:
    """Scan the image files under ``root`` (see dataset_image_files), reusing a cached result.

    ``cache_dir``: where ``scan-<fingerprint>.json`` lives (None: default_cache_dir()).
    ``use_cache=False`` neither reads nor writes it. A cache that cannot be written only
    logs a warning.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise BioclfError(f"data.root: dataset folder {root} not found")
    started = time.perf_counter()
    files = dataset_image_files(root)
    fingerprint = _listing_fingerprint(root, files)
    cache_file = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"scan-{fingerprint}.json"

    cached = _read_cache(cache_file, fingerprint) if use_cache else None
    if cached is not None:
        report = ScanReport(fingerprint, cached["n_images"], [tuple(item) for item in cached["bad"]], str(root),
                            from_cache=True)
        if report.bad:  # check only the known-bad files again: one fixed in place (chmod) drops out
            still = dict(_relative_bad(scan_images(sorted(report.bad_paths()), workers=workers), root))
            if len(still) != len(report.bad):
                report.bad = [(rel, still[rel]) for rel, _ in report.bad if rel in still]
                _write_cache(cache_file, report)
        report.seconds = time.perf_counter() - started
        log.info("image scan of %s: %d images, %d bad (cached, %s)", root, report.n_images, report.n_bad, cache_file)
        return report

    log.info("image scan of %s: checking %d images ...", root, len(files))
    bad = _relative_bad(scan_images(files, workers=workers), root)
    report = ScanReport(fingerprint, len(files), bad, str(root), seconds=time.perf_counter() - started)
    rate = len(files) / report.seconds if report.seconds > 0 else float("inf")
    log.info("image scan of %s: %d images, %d bad, %.1f s (%.0f images/s)", root, len(files), len(bad),
             report.seconds, rate)
    if use_cache:
        _write_cache(cache_file, report)
    return report


def remember_scan(root: str | Path, bad: list[tuple[str, str]], cache_dir: str | Path | None = None) -> None:
    """Store the scan of ``root`` that another pass already made (``bad``: (relative path,
    reason), from check_image on every file of dataset_image_files), so scan_dataset finds it
    cached instead of decoding every image again."""
    root = Path(root).expanduser().absolute()
    files = dataset_image_files(root)
    fingerprint = _listing_fingerprint(root, files)
    cache_file = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"scan-{fingerprint}.json"
    _write_cache(cache_file, ScanReport(fingerprint, len(files), sorted(bad), str(root)))


def _relative_bad(bad: list[tuple[str, str]], root: Path) -> list[tuple[str, str]]:
    return [(_relative(path, root), reason) for path, reason in bad]


def _read_cache(cache_file: Path, fingerprint: str) -> dict | None:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    valid = (
        isinstance(data, dict)
        and data.get("fingerprint") == fingerprint
        and data.get("scan_version") == SCAN_VERSION
        and data.get("max_image_pixels") == Image.MAX_IMAGE_PIXELS
        and isinstance(data.get("n_images"), int)
        and isinstance(data.get("bad"), list)
        and all(isinstance(item, list) and len(item) == 2 for item in data["bad"])
    )
    return data if valid else None


def _write_cache(cache_file: Path, report: ScanReport) -> None:
    data = {
        "scan_version": SCAN_VERSION,
        "max_image_pixels": Image.MAX_IMAGE_PIXELS,
        "fingerprint": report.fingerprint,
        "n_images": report.n_images,
        "bad": [list(item) for item in report.bad],
        "root": report.root,  # informational: the cache is keyed by the listing only
    }
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=cache_file.parent, prefix=".scan-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
        os.replace(temporary, cache_file)
    except OSError as error:
        log.warning("image scan: cannot write the cache %s (%s); the next run scans again", cache_file,
                    error.strerror or error)


# --- the policy -----------------------------------------------------------------------------

def apply_bad_image_policy(report: ScanReport, policy: str, root: str | Path) -> set[str]:
    """``data.on_bad_image`` applied to ``report``.

    "error": raise a one-line BioclfError listing the first bad files if there are any;
    "skip": log the count and return the absolute paths to leave out (``exclude``).
    Both return an empty set for a clean report.
    """
    if policy not in POLICIES:
        raise BioclfError(f"data.on_bad_image: unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    if not report.bad:
        return set()
    root = Path(root)
    if policy == "error":
        raise BioclfError(bad_images_message(report.bad, root))
    log.warning("data.on_bad_image: skip: leaving out %d unreadable image(s) of %d in %s (first: %s)",
                report.n_bad, report.n_images, root,
                ", ".join(f"{_printable(rel)} ({reason})" for rel, reason in report.bad[:3]))
    return report.bad_paths(root)


def bad_images_message(bad: list[tuple[str, str]], root: str | Path) -> str:
    """The one line ``data.on_bad_image: error`` stops on (``run`` and ``check-data`` alike)."""
    shown = ", ".join(f"{_printable(rel)} ({reason})" for rel, reason in bad[:ERROR_EXAMPLES])
    more = ", ..." if len(bad) > ERROR_EXAMPLES else ""
    return (f"data.root: {len(bad)} unreadable image(s) in {root}, e.g. {shown}{more} "
            "— fix or remove them, or set data.on_bad_image: skip")


def _printable(path: str) -> str:
    """A path on one line: control characters (a newline in a file name) escaped."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in path)
