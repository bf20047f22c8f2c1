"""Pre-resized copies of a dataset's training images (``data.resize_cache``), built once.

Decoding a 500 x 375 .. 1000 px JPEG costs more than everything the fast pipeline then does
with it; an ablation suite decodes the same images again in every epoch of every variant.
With ``data.resize_cache: S`` each training image is decoded ONCE at full size, resized so
its shorter side is S (Lanczos, antialiased; images already that small are read from the
original file) and stored as a quality-95, 4:4:4 JPEG. Every later epoch and every variant of
the suite reads the small copy.

Where: ``$XDG_CACHE_HOME/bioclf/resized/<listing fingerprint>-s<S>-q95-v1/`` (default
``~/.cache/bioclf/resized``); the user's data folder is never written to. The fingerprint is
``dataset_listing_fingerprint`` (every image's relative path, size and mtime): adding,
removing, replacing or touching a file gives a new cache. A ``manifest.json`` in the folder
maps each relative path to its copy; a run asking for files the manifest lacks builds just
those (under a lock, so concurrent runs of a suite build each file once).

What it changes: random_resized_crop samples the same RELATIVE boxes (area fraction and
aspect of the image, rounded to whole pixels of the smaller image), but their pixels now come
from a resampled copy: a second resampling (Lanczos then the pipeline's bilinear) and a JPEG
re-encoding. If S is smaller than the box needs (box side < output size), the crop is
upsampled where the original would have been downsampled: with scale >= 0.7 and ratio in
[3/4, 4/3] a box's shorter side is >= 0.84 x the image's shorter side for 4:3 images (0.72 x
for square ones), so S >= 1.2 x crop size (1.4 x for square images) avoids that; 1.15 x
(258 for 224) upsamples the smallest boxes of 4:3 images by up to 4%. That is why the cache
is opt-in. Evaluation images are not read from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

from PIL import Image

from bioclf.claims import claim
from bioclf.data.images import BadImageError, load_rgb
from bioclf.data.scan import _pool_context, cache_home, dataset_listing_fingerprint, default_workers

log = logging.getLogger(__name__)

CACHE_VERSION = 1
QUALITY = 95
# Fewer files than this are resized in this process (a pool costs more than it saves).
PARALLEL_MIN_FILES = 64


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/bioclf/resized``, else ``~/.cache/bioclf/resized``."""
    return cache_home() / "resized"


def cache_folder(root: str | Path, short_side: int, cache_root: str | Path | None = None) -> Path:
    fingerprint = dataset_listing_fingerprint(root)
    base = Path(cache_root) if cache_root is not None else default_cache_root()
    return base / f"{fingerprint}-s{int(short_side)}-q{QUALITY}-v{CACHE_VERSION}"


def resized_paths(
    root: str | Path,
    paths: Iterable[str],
    short_side: int,
    cache_root: str | Path | None = None,
    workers: int | None = None,
) -> tuple[dict[str, str], int]:
    """``({original path: path to read}, number of files resized now)`` for ``paths`` under ``root``.

    Files the cache folder already holds are not decoded again; the rest are resized (in
    ``workers`` processes). A file that cannot be read maps to itself (reading it then raises
    the usual BadImageError); a file already small enough maps to itself too.
    """
    if int(short_side) < 1:
        raise ValueError(f"data.resize_cache must be a positive shorter-side length, got {short_side!r}")
    root = Path(root)
    folder = cache_folder(root, short_side, cache_root)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [os.fspath(p) for p in paths]
    with claim(folder, "build", wait=True):
        manifest = _read_manifest(folder)
        todo = [p for p in paths if _relative(p, root) not in manifest]
        if todo:
            log.info("resize cache: resizing %d image(s) to a %d px shorter side in %s", len(todo), short_side, folder)
            jobs = [(p, str(folder / _copy_name(_relative(p, root))), int(short_side)) for p in todo]
            for path, entry in zip(todo, _run(jobs, workers)):
                manifest[_relative(path, root)] = entry
            _write_manifest(folder, manifest)
    mapping = {}
    for p in paths:
        entry = manifest.get(_relative(p, root), "")
        mapping[p] = str(folder / entry) if entry and not entry.startswith("!") else p
    return mapping, len(todo)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return os.path.abspath(path)


def _copy_name(relative: str) -> str:
    digest = hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:2]}/{digest[2:24]}.jpg"


def _read_manifest(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _write_manifest(folder: Path, files: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump({"version": CACHE_VERSION, "quality": QUALITY, "files": files}, handle)
    os.replace(tmp, folder / "manifest.json")


def _run(jobs: list[tuple[str, str, int]], workers: int | None) -> list[str]:
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers > 1 and len(jobs) >= PARALLEL_MIN_FILES:
        size = max(8, math.ceil(len(jobs) / (workers * 4)))
        chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_pool_context()) as pool:
            return [entry for chunk in pool.map(_resize_chunk, chunks) for entry in chunk]
    return _resize_chunk(jobs)


def _resize_chunk(jobs: list[tuple[str, str, int]]) -> list[str]:
    return [resize_one(*job) for job in jobs]


def resize_one(source: str, target: str, short_side: int) -> str:
    """Write ``source`` resized to ``target``; returns the manifest entry: the copy's name
    relative to the cache folder, "" (kept: already small enough) or "!reason" (unreadable)."""
    try:
        image = load_rgb(source)
    except BadImageError as error:
        return f"!{error}"
    width, height = image.size
    if min(width, height) <= short_side:
        return ""
    factor = short_side / min(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = image.resize(size, Image.Resampling.LANCZOS)
    target_path = Path(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_path.parent, prefix=".tmp-", suffix=".jpg")
    os.close(fd)
    try:
        small.save(tmp, "JPEG", quality=QUALITY, subsampling=0)
        os.replace(tmp, target_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target_path.relative_to(target_path.parent.parent).as_posix()
