"""Near-duplicate pairs among 64-bit perceptual hashes: every pair, exactly, in blocks.

A pair of images is a near-duplicate when the Hamming distance of their 64-bit pHashes is at
most ``PHASH_THRESHOLD`` (10 of 64 bits) *and* that of their 256-bit pHashes at most
``PHASH256_THRESHOLD`` (28 of 256). The 64-bit hash finds candidates among all pairs; the
256-bit one (finer frequencies) confirms them. Measured on generated photo-like images (smooth
noise fields, and the project's synthetic images upscaled from 64 px, JPEG; 300 of each):

| | 64-bit | 256-bit |
|---|---|---|
| copies resized to 60% / 150% / 64 px and re-encoded, or re-encoded at quality 40: max | 4 - 8 | 12 - 24 |
| distinct noise fields: min over 44,850 pairs | 14 | 94 |
| distinct synthetic images (same-class look-alikes, noise 0.5): min | 6 | 58 |
| distinct synthetic images with almost no jitter (difficulty 0): min | 2 | 36 |

For unrelated photos each bit agrees with probability about 1/2, so both thresholds are far in
the binomial tail (P(64-bit distance <= 10) ~ 1e-8 per pair). A 3% crop is usually, not always,
caught. Real photos are not random (burst shots, the same specimen twice): near-duplicates are a
list to look at, not proof.

All pairs are compared, exactly, with no bucketing that could miss a pair: the hashes are
uint64, one block of rows at a time is XORed with every later hash and the set bits counted
(``numpy.bitwise_count`` on numpy >= 2, a byte table before). 20,000 hashes are 2e8 pairs:
1-2 s on a shared 2-core CPU (random hashes, the worst case).
"""

from __future__ import annotations


import numpy as np

PHASH_THRESHOLD = 10  # of 64 bits
PHASH256_THRESHOLD = 28  # of 256 bits
BLOCK_ROWS = 64  # rows per block: 64 x 20,000 uint64 = 10 MB of temporaries (fits in cache better than 256)
MAX_PAIRS = 100_000  # stop collecting beyond this (a folder of blank images would give n^2 pairs)

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (uint8 result)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(values.shape + (8,))
    return _POPCOUNT8[as_bytes].sum(axis=-1, dtype=np.uint8)


def close_pairs(hashes: np.ndarray, threshold: int, block_rows: int = BLOCK_ROWS,
                max_pairs: int = MAX_PAIRS) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(i, j, distance, truncated) for every i < j with popcount(hashes[i] ^ hashes[j]) <= threshold.

    ``truncated`` is True when more than ``max_pairs`` pairs matched (the first max_pairs are returned).
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found_i, found_j, found_d = [], [], []
    total = 0
    truncated = False
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        # Rows start..stop against columns start..n: the block's own upper triangle and everything after.
        distance = popcount64(hashes[start:stop, None] ^ hashes[None, start:])
        rows, cols = np.nonzero(distance <= threshold)
        keep = cols > rows  # column index is relative to `start`, as is the row index
        rows, cols = rows[keep], cols[keep]
        if len(rows):
            found_i.append(rows + start)
            found_j.append(cols + start)
            found_d.append(distance[rows, cols])
            total += len(rows)
            if total > max_pairs:
                truncated = True
                break
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.uint8), False
    i, j, d = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)
    return i[:max_pairs], j[:max_pairs], d[:max_pairs], truncated


def hex256_to_words(values: list[str]) -> np.ndarray:
    """256-bit hashes (64 hex digits each) as an (n, 4) uint64 array."""
    return np.array([[int(v[k:k + 16], 16) for k in range(0, 64, 16)] for v in values], dtype=np.uint64).reshape(-1, 4)


def near_duplicate_pairs(phashes: np.ndarray, phash256: np.ndarray, phash_threshold: int = PHASH_THRESHOLD,
                         phash256_threshold: int = PHASH256_THRESHOLD, max_pairs: int = MAX_PAIRS):
    """(i, j, 64-bit distance, 256-bit distance, truncated) of the pairs within both thresholds.

    ``phashes``: (n,) uint64; ``phash256``: (n, 4) uint64 (see hex256_to_words).
    """
    i, j, d64, truncated = close_pairs(phashes, phash_threshold, max_pairs=max_pairs)
    words = np.asarray(phash256, dtype=np.uint64).reshape(-1, 4)
    if len(i):
        d256 = popcount64(words[i] ^ words[j]).sum(axis=1, dtype=np.int64)
    else:
        d256 = np.zeros(0, dtype=np.int64)
    keep = d256 <= phash256_threshold
    return i[keep], j[keep], d64[keep], d256[keep], truncated

