"""Per-file hashes of a dataset, cached by (size, mtime_ns), and the dataset fingerprint.

Per image file:

- ``sha256`` of its bytes: exact duplicates, and the content fingerprint;
- ``phash`` and ``phash256``: perceptual hashes (pHash, Zauner 2010, as in the ``imagehash``
  package, reimplemented on Pillow + numpy): the 2-D DCT of the 64 x 64 grey image; its 8 x 8
  lowest frequencies compared with their median give 64 bits (``phash``, cheap to compare for
  every pair), its 16 x 16 lowest give 256 bits (``phash256``, which confirms a candidate pair:
  it tells apart images that only share their coarse layout);
- width, height (after EXIF orientation), mode and format.

Both perceptual hashes are taken from the image as the model sees it: EXIF orientation
applied and made RGB by ``bioclf.data.images.to_rgb`` (alpha on white, 16-bit scaled). JPEGs
are decoded in draft mode (libjpeg's DCT scaling to at least 64 x 64 pixels), which is several
times faster than a full decode and does not change a 64 x 64 summary.

The cache is one JSON file per dataset root, ``<cache_dir>/hashes/<hash of the root path>.json``
(default cache_dir: ``$XDG_CACHE_HOME/bioclf``, else ``~/.cache/bioclf``), mapping each relative
path to its record; a record is reused while the file's size and mtime_ns are unchanged. The
data folder itself is never written to.

The dataset fingerprint (``fingerprint_dataset``) is a sha256 over the sorted (relative path,
content sha256) of every image of train/ and val/ (what a run trains and is measured on; the
unlabeled test/ split does not change any number of a table): the same files give the same
fingerprint whatever their order on disk or their mtimes; one changed pixel, a renamed file or a
file moved to another class folder give a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from bioclf.data.folder import resolve_root
from bioclf.data.images import one_line, to_rgb
from bioclf.data.scan import (
    LABELLED_SPLITS,
    PARALLEL_MIN_FILES,
    _pool_context,
    cache_home,
    check_image,
    dataset_image_files,
    default_workers,
)
from bioclf.errors import BioclfError

if TYPE_CHECKING:
    from bioclf.spec.schema import DataConfig

log = logging.getLogger(__name__)

# Bump when a hash's definition changes: cached perceptual hashes of older versions are recomputed.
HASH_VERSION = 2  # 2: ``error`` is the image scan's reason (one decode checks and hashes)
FINGERPRINT_PREFIX = b"bioclf-data-v1\n"
FINGERPRINT_CHARS = 32  # an MLflow dataset digest holds at most 36 characters
PHASH_SIDE = 64  # the grey image the DCT is taken of
DRAFT_SIZE = (PHASH_SIDE, PHASH_SIDE)
_READ_CHUNK = 1 << 20


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/bioclf``, else ``~/.cache/bioclf``."""
    return cache_home()


# --- one file -------------------------------------------------------------------------------

@dataclass
class FileRecord:
    """What the data check knows about one image file (``rel``: path relative to the root)."""

    rel: str
    size: int
    mtime_ns: int
    sha256: str
    phash: int | None = None  # 64 bits
    phash256: str | None = None  # 256 bits, 64 hex digits
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None  # the perceptual pass could not decode it (the scan says why)

    @property
    def split(self) -> str:
        return self.rel.split("/", 1)[0]

    @property
    def label(self) -> str | None:
        """The class folder of a train/val image, None for a flat split."""
        parts = self.rel.split("/")
        return parts[1] if self.split in LABELLED_SPLITS and len(parts) > 2 else None

    @property
    def has_perceptual(self) -> bool:
        return self.phash is not None or self.error is not None

    def to_json(self) -> list:
        return [self.size, self.mtime_ns, self.sha256,
                None if self.phash is None else f"{self.phash:016x}",
                self.phash256,
                self.width, self.height, self.mode, self.format, self.error]

    @classmethod
    def from_json(cls, rel: str, item: list) -> "FileRecord":
        size, mtime, sha, ph, dh, w, h, mode, fmt, error = item
        return cls(rel, int(size), int(mtime), str(sha), None if ph is None else int(ph, 16),
                   dh, w, h, mode, fmt, error)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` is scipy.fft.dct(x, norm='ortho')."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(PHASH_SIDE)


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def _low_bits(coefficients: np.ndarray, side: int) -> np.ndarray:
    low = coefficients[:side, :side]
    return low > np.median(low)


def phashes_of(gray: Image.Image) -> tuple[int, str]:
    """(64-bit pHash as int, 256-bit pHash as 64 hex digits) of a grey ('L') image."""
    small = gray.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.asarray(small, dtype=np.float64)
    coefficients = _DCT @ pixels @ _DCT.T
    return _bits_to_int(_low_bits(coefficients, 8)), f"{_bits_to_int(_low_bits(coefficients, 16)):064x}"


def image_hashes(image: Image.Image) -> tuple[int, str]:
    """(phash, phash256) of a PIL image of any mode."""
    return phashes_of(to_rgb(image).convert("L"))


_ORIENTATION = 0x0112


def perceptual_info(path: str | os.PathLike) -> dict:
    """phash, phash256, width, height (as displayed, after EXIF orientation), mode and format of one
    file, from the image scan's own decode (bioclf.data.scan.check_image: one decode checks the
    file and hashes it); ``error`` instead, the scan's reason, when it is not a readable image."""
    found: dict = {}

    def hashed(stored, rgb: Image.Image) -> None:
        width, height = stored.size
        if stored.exif in (5, 6, 7, 8):  # stored turned: displayed the other way round
            width, height = height, width
        phash, phash256 = phashes_of(rgb.convert("L"))
        found.update(phash=phash, phash256=phash256, width=width, height=height, mode=stored.mode,
                     format=stored.format)

    reason = check_image(path, on_decoded=hashed, draft_size=DRAFT_SIZE)
    return {"error": reason} if reason is not None else found


def _hash_one(root: str, rel: str, perceptual: bool) -> FileRecord | str:
    path = os.path.join(root, rel)
    try:
        info = os.stat(path)
        sha = file_sha256(path)
    except OSError as error:
        return f"{rel}: {one_line(error.strerror or error, 100)}"
    record = FileRecord(rel, info.st_size, info.st_mtime_ns, sha)
    if perceptual:
        for key, value in perceptual_info(path).items():
            setattr(record, key, value)
    return record


def _hash_chunk(root: str, rels: list[str], perceptual: bool, limit: int | None) -> list[FileRecord | str]:
    Image.MAX_IMAGE_PIXELS = limit
    return [_hash_one(root, rel, perceptual) for rel in rels]


def cache_file_for(root: Path, cache_root: Path) -> Path:
    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_root / "hashes" / f"{key}.json"


def _read_cache(path: Path, root: Path) -> dict[str, FileRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("root") != str(root) or not isinstance(data.get("files"), dict):
        return {}
    same_version = data.get("hash_version") == HASH_VERSION
    records = {}
    for rel, item in data["files"].items():
        try:
            record = FileRecord.from_json(rel, item)
        except (TypeError, ValueError):
            continue
        if not same_version:  # content hashes stay valid; perceptual ones are recomputed
            record = FileRecord(rel, record.size, record.mtime_ns, record.sha256)
        records[rel] = record
    return records


def _write_cache(path: Path, root: Path, records: dict[str, FileRecord]) -> None:
    data = {"hash_version": HASH_VERSION, "root": str(root),
            "files": {rel: record.to_json() for rel, record in sorted(records.items())}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".hashes-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError as error:
        log.warning("data check: cannot write the hash cache %s (%s); the next check hashes again",
                    path, error.strerror or error)


# --- many files -----------------------------------------------------------------------------



def hash_files(
    root: str | Path,
    rels: Sequence[str],
    *,
    perceptual: bool = True,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, FileRecord], list[str]]:
    """Records for ``rels`` (paths relative to ``root``), from the cache where the file's size and
    mtime_ns are unchanged, else computed (in a process pool above PARALLEL_MIN_FILES files).

    ``perceptual=False`` computes the content hash only (the fingerprint needs nothing else).
    ``progress(n)`` is called as files are done. With ``perceptual`` each file is decoded once,
    by the image scan's check (bioclf.data.scan.check_image): an unreadable one gets the scan's
    reason as ``error``. Returns (records, problems): a file that cannot be read at all (gone, no
    permission) is a problem line, not a record.
    """
    root = Path(root).expanduser().absolute()
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    cache_path = cache_file_for(root, cache_root)
    cached = _read_cache(cache_path, root) if use_cache else {}
    records: dict[str, FileRecord] = {}
    todo: list[str] = []
    for rel in rels:
        record = cached.get(rel)
        if record is not None:
            try:
                info = os.stat(root / rel)
            except OSError:
                info = None
            if info is not None and _reusable(record, info, perceptual):
                records[rel] = record
                continue
        todo.append(rel)
    if progress and len(records):
        progress(len(records))
    problems: list[str] = []
    for item in _compute(str(root), todo, perceptual, workers, progress):
        if isinstance(item, str):
            problems.append(item)
        else:
            records[item.rel] = item
    if use_cache and todo:
        # Keep cached entries of files outside this call (e.g. test/ while fingerprinting train/ +
        # val/) while they exist; forget removed files.
        merged = {rel: r for rel, r in cached.items() if rel not in records and (root / rel).exists()}
        merged.update(records)
        _write_cache(cache_path, root, merged)
    return records, problems


def _reusable(record: FileRecord, info: os.stat_result, perceptual: bool) -> bool:
    """The cached record still describes the file, and holds what this call needs."""
    if info.st_size != record.size or info.st_mtime_ns != record.mtime_ns:
        return False
    # an unreadable file is checked again: one fixed in place (chmod) keeps its size and mtime
    return not perceptual or (record.has_perceptual and record.error is None)


def _compute(root: str, rels: list[str], perceptual: bool, workers: int | None,
             progress: Callable[[int], None] | None) -> Iterable[FileRecord | str]:
    workers = default_workers() if workers is None else max(1, int(workers))
    limit = Image.MAX_IMAGE_PIXELS
    if workers > 1 and len(rels) > PARALLEL_MIN_FILES:
        size = max(16, min(256, math.ceil(len(rels) / (workers * 4))))
        chunks = [rels[start:start + size] for start in range(0, len(rels), size)]
        results: list[FileRecord | str] = []
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_pool_context()) as pool:
                futures = [pool.submit(_hash_chunk, root, chunk, perceptual, limit)
                           for chunk in chunks]
                for future in futures:
                    done = future.result()
                    results.extend(done)
                    if progress:
                        progress(len(done))
            return results
        except BrokenProcessPool:
            log.warning("data check: a worker process died; hashing the %d files in this process", len(rels))
    results = []
    for start in range(0, len(rels), 64):
        done = _hash_chunk(root, rels[start:start + 64], perceptual, limit)
        results.extend(done)
        if progress:
            progress(len(done))
    return results


# --- the fingerprint ------------------------------------------------------------------------

def relative_image_files(root: str | Path, splits: Iterable[str] | None = None) -> list[str]:
    """Image files of the dataset under ``root`` (as the datasets list them), relative, sorted;
    ``splits`` limits them to those top-level folders."""
    root = Path(root)
    rels = sorted(Path(path).relative_to(root).as_posix() for path in dataset_image_files(root))
    if splits is not None:
        wanted = set(splits)
        rels = [rel for rel in rels if rel.split("/", 1)[0] in wanted]
    return rels


def fingerprint_of(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, content sha256) pairs, first FINGERPRINT_CHARS hex digits."""
    digest = hashlib.sha256(FINGERPRINT_PREFIX)
    for rel, sha in sorted(pairs):
        digest.update(f"{rel}\0{sha}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def fingerprint_dataset(
    root: str | Path,
    *,
    splits: Iterable[str] = LABELLED_SPLITS,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> str:
    """The content fingerprint of the dataset under ``root`` (see the module docstring): train/
    and val/ by default. Reads every file once, then only files whose size or mtime changed."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise BioclfError(f"data.root: dataset folder {root} not found")
    rels = relative_image_files(root, splits)
    records, problems = hash_files(root, rels, perceptual=False, cache_dir=cache_dir, use_cache=use_cache,
                                   workers=workers)
    if problems:
        raise BioclfError(f"{root}: cannot read {len(problems)} file(s) to fingerprint the dataset, "
                          f"e.g. {problems[0]}")
    return fingerprint_of((rel, records[rel].sha256) for rel in rels)


@dataclass(frozen=True)
class DatasetFingerprint:
    """What a run logs about its data: an MLflow dataset input and the tag ``bioclf.data_fingerprint``."""

    digest: str  # FINGERPRINT_CHARS hex digits
    name: str  # the dataset's name in MLflow: the root folder's name, or "synthetic"
    source_type: str  # "local" (a folder) or "code" (generated)
    source: str  # JSON: {"uri": "file:///..."} or {"generator": ..., "config": {...}}
    profile: str  # JSON: image counts per split, classes


def synthetic_fingerprint(synthetic: dict) -> str:
    blob = json.dumps({"generator": "bioclf.data.synthetic", **synthetic}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(FINGERPRINT_PREFIX + blob.encode()).hexdigest()[:FINGERPRINT_CHARS]


def data_fingerprint(
    cfg: "DataConfig",
    base_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> DatasetFingerprint:
    """The fingerprint of a run's data: the content fingerprint of a folder dataset (cached per
    file), the hash of the generator's settings for ``source: synthetic``."""
    if cfg.source == "synthetic":
        # test_images only adds an unlabeled split: like test/ of a folder, not part of the fingerprint.
        synthetic = cfg.synthetic.model_dump(mode="json", exclude={"test_images"})
        profile = {"splits": {"train": synthetic["num_classes"] * synthetic["train_per_class"],
                              "val": synthetic["num_classes"] * synthetic["val_per_class"]},
                   "num_classes": synthetic["num_classes"]}
        return DatasetFingerprint(
            digest=synthetic_fingerprint(synthetic), name="synthetic", source_type="code",
            source=json.dumps({"generator": "bioclf.data.synthetic", "config": synthetic}, sort_keys=True),
            profile=json.dumps(profile, sort_keys=True),
        )
    root = resolve_root(cfg, base_dir).absolute()
    digest = fingerprint_dataset(root, cache_dir=cache_dir, workers=workers)
    rels = relative_image_files(root, LABELLED_SPLITS)
    counts = {split: sum(1 for rel in rels if rel.split("/", 1)[0] == split) for split in LABELLED_SPLITS}
    classes = {rel.split("/")[1] for rel in rels if rel.count("/") >= 2 and rel.startswith("train/")}
    profile = {"splits": counts, "num_classes": len(classes), "fingerprint_covers": list(LABELLED_SPLITS)}
    return DatasetFingerprint(
        digest=digest, name=root.name or str(root), source_type="local",
        source=json.dumps({"uri": root.as_uri()}), profile=json.dumps(profile, sort_keys=True),
    )
