"""Data checks before training: per-class counts, unreadable files, exact and near-duplicate
images within and across splits (leakage), and the dataset's content fingerprint that every run
logs (``bioclf-exp check-data ROOT``; docs/data.md).

- hashing: content sha256, pHash / dHash per file (cached by size + mtime_ns), the fingerprint.
- neardup: all pairs of 64-bit hashes within a Hamming distance, in blocks.
- report: ``check_dataset(root) -> DataReport`` (terminal summary, JSON, CSVs, plots) and
  ``suite_data_check`` (what a suite runs at its start).
"""

from bioclf.datacheck.hashing import (
    DatasetFingerprint,
    FileRecord,
    data_fingerprint,
    default_cache_root,
    fingerprint_dataset,
    hash_files,
    image_hashes,
)
from bioclf.datacheck.neardup import PHASH256_THRESHOLD, PHASH_THRESHOLD, close_pairs, near_duplicate_pairs
from bioclf.datacheck.report import DataReport, Duplicate, check_dataset, suite_data_check

__all__ = [
    "PHASH256_THRESHOLD",
    "DataReport",
    "DatasetFingerprint",
    "Duplicate",
    "FileRecord",
    "PHASH_THRESHOLD",
    "check_dataset",
    "close_pairs",
    "data_fingerprint",
    "default_cache_root",
    "fingerprint_dataset",
    "hash_files",
    "image_hashes",
    "near_duplicate_pairs",
    "suite_data_check",
]
