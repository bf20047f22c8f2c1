"""Is a row of the ablation table more than noise? Pure statistics on per-image correctness.

No MLflow, no plotting: numpy arrays and pandas objects in, numbers and one DataFrame out.
Every random draw comes from a ``numpy.random.Generator`` seeded by a ``seed`` argument (default
0), so the same inputs always give the same report. docs/statistics.md explains the table built
by ``compare_to_baseline`` for readers of a report; this docstring states the formulas.

Notation. Every run of a suite is evaluated on the same ``n`` validation images. ``c[s, i]`` is 1
when the run of seed ``s`` classifies image ``i`` correctly (``label == pred`` in
``predictions/val.csv``), else 0. Accuracy of one seed: ``acc_s = (1/n) Σ_i c[s, i]``. For a
variant ``B`` compared with the baseline ``A`` on one seed, the discordant counts are
``n01 = #{i : A wrong, B right}`` and ``n10 = #{i : A right, B wrong}`` (subscripts = correctness
of A, then B), and ``Δ = acc_B − acc_A = (n01 − n10) / n``.

Bootstrap (image resampling). A resample draws ``n`` images with replacement. Every statistic
bootstrapped here is a mean of per-image values ``v_i`` (correctness, or a difference of
correctness, summed over seeds), so a resample's statistic depends only on how many times each
distinct value was drawn; those counts are ``Multinomial(n, (n_k / n)_k)`` where ``n_k`` images
carry value ``u_k``. ``_resampled_sums`` draws these counts directly: the same distribution as
an ``(n_resamples, n)`` index matrix, at a cost independent of ``n`` and without a loop over
resamples. Percentile interval: ``[G⁻¹(α/2), G⁻¹(1 − α/2)]`` with ``G`` the bootstrap
distribution. ``G`` is discrete (a count moves in steps of one image), so its quantile is read
with each atom spread uniformly over its lattice cell (linear interpolation of the CDF between
cell edges). That moves an edge by at most half a step (0.17 points at n = 300) and turns the
0.33-point jumps that Monte-Carlo noise would cause between seeds into a smooth error:
with ``B`` resamples an edge's Monte-Carlo standard error is ``sqrt(q(1 − q)/B) / g(edge)``
(``g`` the density of ``G``), about 0.02 points at n = 300 and ``B = 100,000``
(``DEFAULT_RESAMPLES``), so reruns with other seeds agree to better than 0.1 point.

Tests.
  * Exact McNemar (one seed): under H0 (``P(n01) = P(n10)``) ``n10 | n01 + n10 ~ Bin(m, 1/2)``;
    ``p = binomtest(n10, m, 1/2)`` two-sided; ``p = 1`` when ``m = 0``.
  * Exact sign-flip test (several seeds, image level): ``w_i = Σ_s (c_B[s, i] − c_A[s, i])``
    over the paired seeds, ``T = Σ_i w_i``. Under H0 (per image, A and B exchangeable) each
    ``w_i`` is ``±|w_i|`` with probability 1/2, so ``T = 2Y − M`` with ``M = Σ_i |w_i|`` and
    ``Y = Σ_j j·X_j``, ``X_j ~ Bin(c_j, 1/2)``, ``c_j = #{i : |w_i| = j}``; the law of ``Y`` is an
    exact convolution. ``p = P(|T| ≥ |t_obs|)``. With one seed this *is* the exact McNemar test.
  * Paired t-test across seeds: ``d_s = acc_B,s − acc_A,s`` on the seeds both have,
    ``t = mean(d) / (sd(d) / sqrt(k))`` with ``k − 1`` degrees of freedom (``scipy.stats.ttest_rel``).
    With 3 seeds (2 degrees of freedom) |t| must exceed 4.30 for p < 0.05: little power.
  * Holm step-down over ``m`` p-values sorted ``p_(1) ≤ … ≤ p_(m)``:
    ``p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) · p_(j))``.

Power hints.
  * Images (Connor 1987, McNemar): ``n = [z_{α/2} sqrt(ψ) + z_β sqrt(ψ − δ²)]² / δ²`` with
    ``ψ = p01 + p10`` the discordant rate and ``δ = p01 − p10 = Δ``; ``z_β = Φ⁻¹(power)``.
  * Seeds (paired t-test): the smallest ``k ≥ 2`` whose exact power
    ``P(|T| > t_{1−α/2, k−1})``, ``T ~ noncentral t(k − 1, δ sqrt(k) / σ)``, reaches ``power``;
    it starts from the normal approximation ``k = ((z_{α/2} + z_β) σ / δ)²``.
"""

from __future__ import annotations

import importlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from typing import NamedTuple

import numpy as np
import pandas as pd


class _OnFirstUse:
    """A module imported when first used: ``bioclf-report`` computes the tests in a worker process
    that has scipy imported already (the tables module, which imports this one, runs in a process
    that need not pay for it)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


special, sp_fft = _OnFirstUse("scipy.special"), _OnFirstUse("scipy.fft")
stats = _OnFirstUse("scipy.stats")  # only where scipy is older than 1.14 (``_dist_ufuncs``)


# ------------------------------------------------------------------ scipy.stats / scipy.signal, not imported
#
# Importing scipy.stats costs ~1 CPU-second more than scipy.special + scipy.fft (scipy.signal
# imports scipy.stats too), paid by every report's worker before its first figure. The few
# functions used here are computed below exactly as scipy computes them, from the same
# scipy.special ufuncs and scipy.fft transforms in the same order, so every number is
# bit-identical (tests/test_stats.py compares them bitwise with scipy.stats / scipy.signal): the
# report's CSVs do not change.

_DIST_UFUNCS = ("_binom_pmf", "_binom_cdf", "_binom_sf", "_nct_sf")


@cache
def _dist_ufuncs():
    """``scipy.special._ufuncs``, whose private ufuncs scipy.stats' ``binom`` and ``nct`` call
    (scipy >= 1.14), or None when it lacks one of them (older scipy computes them in
    ``scipy.stats._boost``): the callers then ask scipy.stats itself."""
    try:
        module = importlib.import_module("scipy.special._ufuncs")
    except ImportError:
        return None
    return module if all(hasattr(module, name) for name in _DIST_UFUNCS) else None


def _binom_pmf(k, n: int, p: float):
    """``scipy.stats.binom.pmf(k, n, p)``: ``k`` a number or an integer array, ``n >= 0`` an
    integer, ``0 <= p <= 1``."""
    u = _dist_ufuncs()
    if u is None:
        return stats.binom.pmf(k, n, p)
    if np.ndim(k) == 0:
        if not (0 <= k <= n and math.floor(k) == k):
            return np.float64(0.0)
        return np.clip(u._binom_pmf(k, n, p), 0, 1)
    k = np.asarray(k)
    inside = (k >= 0) & (k <= n) & (np.floor(k) == k)
    out = np.zeros(k.shape)
    out[inside] = np.clip(u._binom_pmf(k[inside], n, p), 0, 1)
    return out


def _binom_cdf(k: float, n: int, p: float):
    """``scipy.stats.binom.cdf(k, n, p)`` of a number ``k``."""
    u = _dist_ufuncs()
    if u is None:
        return stats.binom.cdf(k, n, p)
    if k >= n:
        return np.float64(1.0)
    if k < 0:
        return np.float64(0.0)
    return np.clip(u._binom_cdf(math.floor(k), n, p), 0, 1)


def _binom_sf(k: float, n: int, p: float):
    """``scipy.stats.binom.sf(k, n, p)`` of a number ``k``."""
    u = _dist_ufuncs()
    if u is None:
        return stats.binom.sf(k, n, p)
    if k < 0:
        return np.float64(1.0)
    if k >= n:
        return np.float64(0.0)
    return np.clip(u._binom_sf(math.floor(k), n, p), 0, 1)


def _binary_search_for_binom_tst(a: Callable, d: float, lo, hi):
    """scipy.stats._binomtest's search: the ``i`` in ``lo..hi`` with ``a(i) <= d < a(i + 1)``
    (``a`` ascending there)."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        midval = a(mid)
        if midval < d:
            lo = mid + 1
        elif midval > d:
            hi = mid - 1
        else:
            return mid
    return lo if a(lo) <= d else lo - 1


def binomtest_p(k: int, n: int, p: float = 0.5) -> float:
    """``scipy.stats.binomtest(k, n, p).pvalue``, two-sided, computed as scipy does: the
    probability of the outcomes no likelier than ``k`` (relative tolerance 1e-7), their tail on
    the other side of the mode found by binary search on the pmf."""
    if _dist_ufuncs() is None:
        return float(stats.binomtest(k, n, p).pvalue)
    if not (0 <= k <= n and n >= 1 and 0 <= p <= 1):
        raise ValueError(f"binomtest needs 0 <= k <= n, n >= 1 and 0 <= p <= 1; got k={k}, n={n}, p={p}")
    d = _binom_pmf(k, n, p)
    rerr = 1 + 1e-7
    if k == p * n:
        return 1.0
    if k < p * n:
        ix = _binary_search_for_binom_tst(lambda x: -_binom_pmf(x, n, p), -d * rerr, np.ceil(p * n), n)
        y = n - ix + int(d * rerr == _binom_pmf(ix, n, p))
        pval = _binom_cdf(k, n, p) + _binom_sf(n - y, n, p)
    else:
        ix = _binary_search_for_binom_tst(lambda x: _binom_pmf(x, n, p), d * rerr, 0, np.floor(p * n))
        y = ix + 1
        pval = _binom_cdf(y - 1, n, p) + _binom_sf(k - 1, n, p)
    return float(min(1.0, pval))


def ttest_rel_p(b: np.ndarray, a: np.ndarray) -> float:
    """``scipy.stats.ttest_rel(b, a).pvalue`` (two-sided) of two paired 1-D float samples of
    ``k >= 2`` values, computed as scipy does (``ttest_1samp`` of ``x = b − a``): ``t = mean(x) /
    sqrt(var / k)`` with ``var`` the mean squared deviation times ``k / (k − 1)``, and
    ``p = 2 stdtr(k − 1, −|t|)``."""
    x = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"ttest_rel_p needs two equal 1-D samples of at least 2 values, got {x.shape}")
    n = x.shape[0]
    d = np.mean(x) - np.float64(0.0)
    var = np.mean((x - np.mean(x, keepdims=True)) ** 2)
    nf = np.float64(n)
    var = var * (nf / (nf - 1))
    denom = np.sqrt(var / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(d, denom)
    return float(2 * special.stdtr(np.float64(n - 1), -np.abs(t)))


def _ppf(q: float, ppf: Callable):
    """scipy.stats' ``ppf`` of a distribution on the whole line, loc 0 and scale 1, as scipy
    applies them: ``ppf(q) * 1 + 0`` inside (0, 1), ∓inf at 0 and 1, NaN elsewhere."""
    if 0 < q < 1:
        return ppf(q) * 1 + 0
    return -math.inf if q == 0 else math.inf if q == 1 else math.nan


def _norm_ppf(q: float):
    """``scipy.stats.norm.ppf(q)``."""
    return _ppf(q, special.ndtri)


def _t_ppf(q: float, df: int):
    """``scipy.stats.t.ppf(q, df)`` for ``df > 0``."""
    return _ppf(q, partial(special.stdtrit, df))


def _nct_sf(x: float, df: int, nc: float):
    """``scipy.stats.nct.sf(x, df, nc)`` for ``df > 0`` and finite ``x``, ``nc``."""
    u = _dist_ufuncs()
    if u is None:
        return stats.nct.sf(x, df, nc)
    with np.errstate(over="ignore"):
        return np.clip(u._nct_sf(x, df, nc), 0, 1)


def _nct_cdf(x: float, df: int, nc: float):
    """``scipy.stats.nct.cdf(x, df, nc)`` for ``df > 0`` and finite ``x``, ``nc``: scipy >= 1.14
    computes it with ``nctdtr`` (older releases with boost, hence the same gate as ``_nct_sf``)."""
    if _dist_ufuncs() is None:
        return stats.nct.cdf(x, df, nc)
    return special.nctdtr(df, nc, x)


def fftconvolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.signal.fftconvolve(a, b)`` (mode "full") of two real 1-D arrays, computed as scipy
    does: a length-1 input multiplies the other; else real FFTs of both, zero-padded to
    ``next_fast_len(len(a) + len(b) − 1)``, multiplied, transformed back and cut to that length."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or np.iscomplexobj(a) or np.iscomplexobj(b):
        raise ValueError(f"fftconvolve takes two real 1-D arrays, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    if a.size == 0 or b.size == 0:
        return np.asarray([])
    if a.size == 1 or b.size == 1:  # scipy convolves along no axis then: a plain (broadcast) product
        return a * b
    size = a.size + b.size - 1
    fsize = sp_fft.next_fast_len(size, True)
    a = a.astype(np.float64) if a.dtype.kind in "iub" else a
    b = b.astype(np.float64) if b.dtype.kind in "iub" else b
    out = sp_fft.irfft(sp_fft.rfft(a, fsize) * sp_fft.rfft(b, fsize), fsize)
    return out[:size].copy()


# 100,000 resamples keep a 95% edge within ~0.02 points (Monte-Carlo s.e.) at n = 300 images;
# the resampling draws multinomial counts, so this costs tens of milliseconds whatever n is.
DEFAULT_RESAMPLES = 100_000
# Metrics that need the resampled images themselves (macro F1) cost O(n) per resample.
METRIC_RESAMPLES = 10_000
_CHUNK_ELEMENTS = 1 << 22  # entries of one resample matrix chunk (32 MiB of int64)

TEST_MCNEMAR = "mcnemar-exact"
TEST_SIGN_FLIP = "sign-flip-exact"
TEST_MAX = "max(sign-flip-exact, paired-t)"
MIN_SEEDS_FOR_T = 3  # paired seeds from which the seed-level t-test joins the primary p-value

BETTER, WORSE, NOISE, NA, BASELINE = "better", "worse", "within noise", "n/a", "baseline"
CORRECTION = "holm"

COLUMNS = (
    "variant", "n_seeds", "n_paired", "n_images",
    "acc_mean", "acc_std", "acc_ci_low", "acc_ci_high",
    "delta", "delta_ci_low", "delta_ci_high",
    "test", "p_images", "p_seeds", "p_value", "p_holm", "correction", "verdict",
    "images_needed", "seeds_needed",
)


class McNemarResult(NamedTuple):
    n01: int  # images the first classifier (a) gets wrong and the second (b) gets right
    n10: int  # images a gets right and b gets wrong
    p_value: float


# ------------------------------------------------------------------ helpers


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _as_matrix(correct, name: str = "correct") -> np.ndarray:
    """A correctness vector ``(n,)`` or matrix ``(seeds, n)`` as a 2-D int64 array of 0/1."""
    arr = np.asarray(correct)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (n,) or (seeds, n) array, got shape {np.shape(correct)}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name}: correctness must be boolean or 0/1")
    return arr.astype(np.int64)


def _resampled_sums(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``Σ_i values[idx_i]`` for ``n_resamples`` bootstrap resamples ``idx`` of the images.

    ``values``: integer per-image scores. Drawn as multinomial counts of the distinct values
    (exactly the law of an index-matrix resample; see the module docstring), in chunks.
    """
    n = values.size
    u, counts = np.unique(values, return_counts=True)
    if u.size == 1:
        return np.full(n_resamples, n * int(u[0]), dtype=np.int64)
    if u.size == 2:
        k = rng.binomial(n, counts[1] / n, size=n_resamples)
        return n * int(u[0]) + int(u[1] - u[0]) * k.astype(np.int64)
    p = counts / n
    rows = max(1, _CHUNK_ELEMENTS // u.size)
    out = np.empty(n_resamples, dtype=np.int64)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        out[start:stop] = rng.multinomial(n, p, size=stop - start) @ u
    return out


def _lattice_quantiles(sums: np.ndarray, qs: Sequence[float], step: int, lo: int, hi: int) -> np.ndarray:
    """Quantiles of a distribution on an integer lattice of spacing ``step``, every atom spread
    uniformly over ``[x − step/2, x + step/2]`` (linear CDF inside a cell), clipped to [lo, hi]."""
    x, c = np.unique(sums, return_counts=True)
    cdf = np.cumsum(c) / sums.size
    out = []
    for q in qs:
        k = min(int(np.searchsorted(cdf, q, side="left")), x.size - 1)
        below = cdf[k - 1] if k > 0 else 0.0
        frac = (q - below) / (cdf[k] - below)
        out.append(x[k] - step / 2 + step * min(max(frac, 0.0), 1.0))
    return np.clip(np.asarray(out, dtype=float), lo, hi)


def _mean_ci(values: np.ndarray, denom: int, n_resamples: int, alpha: float,
             rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of ``Σ_i values_i / denom`` (integer per-image values)."""
    _check_alpha(alpha)
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    values = np.asarray(values, dtype=np.int64)
    u = np.unique(values)
    n = values.size
    if u.size == 1:
        point = n * int(u[0]) / denom
        return point, point
    step = int(np.gcd.reduce(np.diff(u)))
    sums = _resampled_sums(values, n_resamples, rng)
    low, high = _lattice_quantiles(sums, (alpha / 2, 1 - alpha / 2), step, n * int(u[0]), n * int(u[-1]))
    return float(low / denom), float(high / denom)


def paired_scores_delta(a: np.ndarray, b: np.ndarray, per_image: int = 1, *, n_resamples: int = DEFAULT_RESAMPLES,
                        alpha: float = 0.05, seed: int | np.random.Generator = 0) -> tuple[float, float, float, float]:
    """Δ of the mean of integer per-image scores (``(seeds, n)`` matrices, row s of ``a`` paired with
    row s of ``b``; each score a sum of ``per_image`` values, e.g. the heights of the top 5), its
    paired percentile bootstrap interval and the exact sign-flip p-value: ``(delta, low, high, p)``.
    ``paired_bootstrap_delta`` and ``sign_flip_exact`` are this with 0/1 scores."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.int64)), np.atleast_2d(np.asarray(b, dtype=np.int64))
    if a.shape != b.shape:
        raise ValueError(f"scores {a.shape} and {b.shape} must have the same shape (same images, same seeds)")
    w = (b - a).sum(axis=0)
    denom = a.size * per_image
    low, high = _mean_ci(w, denom, n_resamples, alpha, _rng(seed))
    return float(w.sum() / denom), low, high, sign_flip_p(w)


def paired_ratio_delta(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, *,
                       n_resamples: int = 4000, alpha: float = 0.05,
                       seed: int | np.random.Generator = 0) -> tuple[float, float, float, float]:
    """Δ of a ratio of per-image sums, ``Σ num_b / Σ den_b − Σ num_a / Σ den_a`` (a mean over a
    subset of the images, e.g. the severity of the mistakes), its paired percentile bootstrap
    interval (images resampled together for a and b) and the bootstrap p-value
    ``min(1, 2 min(P*(Δ* ≤ 0), P*(Δ* ≥ 0)))``: ``(delta, low, high, p)``. Per-image inputs are
    summed over seeds by the caller. NaN when a side has no denominator."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b)]
    if arrays[1].sum() == 0 or arrays[3].sum() == 0:
        return (math.nan,) * 4
    delta = arrays[2].sum() / arrays[3].sum() - arrays[0].sum() / arrays[1].sum()
    rng, n = _rng(seed), arrays[0].size
    draws = []
    for start in range(0, n_resamples, 256):  # (chunk, n) index draws: memory stays ~ 256 n
        idx = rng.integers(0, n, size=(min(256, n_resamples - start), n))
        na, da, nb, db = (x[idx].sum(axis=1) for x in arrays)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws.append(nb / db - na / da)
    d = np.concatenate(draws)
    d = d[np.isfinite(d)]
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    return float(delta), float(low), float(high), p


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _z(q: float) -> float:
    return float(_norm_ppf(q))


# ------------------------------------------------------------------ intervals


def bootstrap_ci(
    correct: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """Percentile bootstrap ``1 − alpha`` interval of accuracy from per-image correctness.

    ``correct``: boolean (or 0/1) vector ``(n,)`` of one run, or matrix ``(seeds, n)`` of
    several seeds of one variant on the same images. With several seeds the statistic is the
    seed-averaged accuracy ``(1/(S·n)) Σ_s Σ_i c[s, i]`` and every resample draws the same
    images for all seeds (resampling ``v_i = Σ_s c[s, i]``). The interval reflects which
    images happen to be in the validation set only; the trained models are held fixed, so
    seed-to-seed variation is not in it (see ``seed_summary``).
    ``n_resamples``: 100,000 by default, which keeps each edge's Monte-Carlo error near
    0.02 points at n = 300 (two seeds agree to < 0.1 point); quantiles use the lattice
    convention of the module docstring. Returns ``(low, high)`` as fractions in [0, 1].
    """
    c = _as_matrix(correct)
    return _mean_ci(c.sum(axis=0), c.size, n_resamples, alpha, _rng(seed))


def paired_bootstrap_delta(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float, float]:
    """``Δ = acc_b − acc_a`` and its paired percentile bootstrap interval.

    Paired: each resample draws the same image indices for both classifiers, i.e. it resamples
    the per-image differences ``w_i = c_b[i] − c_a[i]`` (∈ {−1, 0, 1}); ``Δ* = Σ w*_i / n``.
    Pairing removes the difficulty the two share image by image, which is why the interval is
    much narrower than the difference of two unpaired intervals. ``(seeds, n)`` matrices (row
    ``s`` of a paired with row ``s`` of b) give the seed-averaged Δ with
    ``w_i = Σ_s (c_b[s, i] − c_a[s, i])``. Returns ``(delta, low, high)``.
    """
    a, b = _as_matrix(correct_a, "correct_a"), _as_matrix(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must have the same shape "
                         "(same images, same seeds)")
    w = (b - a).sum(axis=0)
    delta = float(w.sum() / a.size)
    low, high = _mean_ci(w, a.size, n_resamples, alpha, _rng(seed))
    return delta, low, high


def macro_f1(labels: np.ndarray, preds: np.ndarray, classes: np.ndarray | None = None) -> float | np.ndarray:
    """Macro F1, vectorised over rows: ``(n,)`` arrays give a float, ``(r, n)`` arrays give ``(r,)``.

    ``F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c) = 2·TP_c / (#pred == c + #label == c)``, 0 when the
    denominator is 0 (sklearn's ``zero_division=0``); macro F1 = mean of ``F1_c`` over
    ``classes``, by default the classes present in ``labels`` (all rows together). A prediction
    of a class outside ``classes`` is a false negative of the true class and nobody's false
    positive. Equals ``sklearn.metrics.f1_score(labels, preds, labels=classes, average="macro",
    zero_division=0)`` row by row, and the logged ``val_f1_macro`` for the full set. Counting is
    one ``bincount`` per quantity over ``row · (K + 1) + class index``.
    """
    lab, prd = np.asarray(labels), np.asarray(preds)
    if lab.shape != prd.shape or lab.ndim not in (1, 2):
        raise ValueError(f"labels {lab.shape} and preds {prd.shape} must be equal (n,) or (r, n) arrays")
    one = lab.ndim == 1
    if one:
        lab, prd = lab[None, :], prd[None, :]
    cls = np.unique(lab) if classes is None else np.unique(np.asarray(classes))
    out = _macro_f1_codes(_class_codes(lab, cls), _class_codes(prd, cls), cls.size)
    return float(out[0]) if one else out


def _class_codes(x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each entry of ``x`` in the sorted ``classes``; ``len(classes)`` when absent."""
    k = classes.size
    pos = np.minimum(np.searchsorted(classes, x), k - 1)
    return np.where(classes[pos] == x, pos, k)


def _macro_f1_codes(li: np.ndarray, pi: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 of each row of ``(r, n)`` class codes (``k`` = outside the class set)."""
    r = li.shape[0]
    offset = (np.arange(r) * (k + 1))[:, None]
    size = r * (k + 1)
    lo, po = (li + offset).ravel(), (pi + offset).ravel()
    n_label = np.bincount(lo, minlength=size).reshape(r, k + 1)[:, :k]
    n_pred = np.bincount(po, minlength=size).reshape(r, k + 1)[:, :k]
    tp = np.bincount(lo, weights=(lo == po), minlength=size).reshape(r, k + 1)[:, :k]
    denom = n_label + n_pred
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    return f1.mean(axis=1)


def bootstrap_metric_ci(
    labels: np.ndarray,
    preds: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = macro_f1,
    *,
    n_resamples: int = METRIC_RESAMPLES,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of any per-image metric, by resampling index matrices.

    ``metric_fn(labels_2d, preds_2d) -> (r,)`` scores every row of ``(r, n)`` resampled
    labels/preds at once (no Python loop over resamples); the index matrix is built in chunks of
    about 4 M entries. With the default ``macro_f1`` the class set is fixed to the classes
    present in the full ``labels`` (a class missing from a resample's labels counts with F1 0
    when it is predicted or absent, as sklearn does with ``labels=`` given), so every resample
    averages over the same classes as the point estimate. Quantiles: ``numpy.quantile``
    (linear). 10,000 resamples by default (macro F1 at n = 300: ~0.2 s).
    """
    _check_alpha(alpha)
    lab, prd = np.asarray(labels), np.asarray(preds)
    if lab.ndim != 1 or lab.shape != prd.shape or lab.size == 0:
        raise ValueError(f"labels {lab.shape} and preds {prd.shape} must be equal non-empty (n,) arrays")
    if metric_fn is macro_f1:  # fixed class set; class codes computed once, not per resample
        cls = np.unique(lab)
        lab, prd = _class_codes(lab, cls), _class_codes(prd, cls)
        metric_fn = partial(_macro_f1_codes, k=cls.size)
    rng, n = _rng(seed), lab.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    scores = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        scores[start:stop] = metric_fn(lab[idx], prd[idx])
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ------------------------------------------------------------------ tests


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact McNemar test of two classifiers on the same images (one seed each).

    ``n01`` = a wrong & b right, ``n10`` = a right & b wrong. Under H0 the ``m = n01 + n10``
    discordant images split like fair coin flips: ``p = binomtest(n10, m, 0.5)`` two-sided
    (``= Σ_{k : |k − m/2| ≥ |n10 − m/2|} C(m, k) / 2^m``); ``p = 1`` when ``m = 0``.
    """
    a, b = np.asarray(correct_a).astype(bool), np.asarray(correct_b).astype(bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must be equal 1-D vectors")
    n01, n10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    if n01 + n10 == 0:
        return McNemarResult(n01, n10, 1.0)
    return McNemarResult(n01, n10, binomtest_p(n10, n01 + n10, 0.5))


def sign_flip_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact paired sign-flip (randomisation) test at the image level; returns the p-value.

    ``(n,)`` vectors or ``(seeds, n)`` matrices paired row by row. ``w_i = Σ_s (c_b − c_a)``;
    under H0 every ``w_i`` keeps or flips its sign with probability 1/2 independently, and the
    law of ``T = Σ w_i`` is computed exactly (module docstring). ``p = P(|T| ≥ |t_obs|)``, 1 when
    every ``w_i`` is 0. For one seed this equals ``mcnemar_exact(...).p_value``. Seed-to-seed
    variation is not part of H0's randomness (the models are held fixed): see ``paired_seed_test``.
    """
    a, b = _as_matrix(correct_a, "correct_a"), _as_matrix(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must have the same shape")
    return sign_flip_p((b - a).sum(axis=0))


def sign_flip_p(w: np.ndarray) -> float:
    """The exact sign-flip p-value of integer per-image differences ``w`` (``sign_flip_exact``'s
    law): any paired integer score (correctness, a tree height) is tested the same way."""
    w = np.asarray(w, dtype=np.int64)
    t = int(abs(w.sum()))
    mags, counts = np.unique(np.abs(w[w != 0]), return_counts=True)
    total = int(np.sum(mags * counts))  # M
    if t == 0 or total == 0:
        return 1.0
    pmf = np.ones(1)  # law of Y = Σ_j j·X_j on 0..M
    for j, c in zip(mags.tolist(), counts.tolist()):
        part = np.zeros(j * c + 1)
        part[::j] = _binom_pmf(np.arange(c + 1), c, 0.5)
        if pmf.size * part.size <= 20_000_000:
            pmf = np.convolve(pmf, part)
        else:
            pmf = np.clip(fftconvolve(pmf, part), 0.0, None)
    y = np.arange(total + 1)
    p = float(pmf[np.abs(2 * y - total) >= t].sum())
    return min(1.0, max(p, 0.0))


def seed_summary(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, std, n)`` of per-seed values; std with ``ddof=1`` (NaN for n = 1; all NaN for n = 0)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return float(np.mean(v)), std, int(v.size)


def paired_seed_test(a_by_seed: Mapping[int, float], b_by_seed: Mapping[int, float]) -> tuple[float, float, int]:
    """Paired t-test of per-seed values (e.g. accuracies) of b against a, paired by seed.

    Uses the seeds both have (``k`` of them): ``d_s = b_s − a_s``, ``t = mean(d)/(sd(d)/√k)``,
    ``k − 1`` degrees of freedom (``scipy.stats.ttest_rel``). Returns ``(mean_delta, p, k)``;
    ``p`` is NaN when ``k < 2``; when every ``d_s`` is equal, ``p = 1`` if they are 0 and 0
    otherwise (differences are rounded to 12 decimals so float noise does not fake a variance).
    Little power: with 3 seeds ``|t|`` must exceed 4.30 for p < 0.05 (2 degrees of freedom);
    the test treats the validation images as fixed (image noise is the sign-flip/McNemar tests').
    """
    common = sorted(set(a_by_seed) & set(b_by_seed))
    k = len(common)
    if k == 0:
        return math.nan, math.nan, 0
    a = np.array([a_by_seed[s] for s in common], dtype=float)
    b = np.array([b_by_seed[s] for s in common], dtype=float)
    d = np.round(b - a, 12)
    mean = float(np.mean(b - a))
    if k < 2:
        return mean, math.nan, k
    if np.all(d == d[0]):
        return mean, (1.0 if d[0] == 0 else 0.0), k
    return mean, ttest_rel_p(b, a), k


def holm_bonferroni(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    The ``m`` finite p-values sorted ``p_(1) ≤ … ≤ p_(m)`` become
    ``min(1, max_{j ≤ i} (m − j + 1) p_(j))`` (monotone in ``p``, capped at 1). NaN entries stay
    NaN and do not count in ``m``. Controls the family-wise error rate at α under any dependence.
    """
    p = np.asarray(list(p_values), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def verdict(delta: float, p_adjusted: float, alpha: float = 0.05) -> str:
    """``"better"`` if ``p_adjusted < alpha`` and ``delta > 0``, ``"worse"`` if ``p_adjusted < alpha``
    and ``delta < 0``, ``"n/a"`` when ``p_adjusted`` or ``delta`` is NaN (nothing to compare:
    missing data, no seed in common with the baseline), else ``"within noise"``.
    (``compare_to_baseline`` labels the baseline row ``"baseline"``.)"""
    if delta is None or p_adjusted is None or math.isnan(delta) or math.isnan(p_adjusted):
        return NA
    if p_adjusted < alpha and delta > 0:
        return BETTER
    if p_adjusted < alpha and delta < 0:
        return WORSE
    return NOISE


# ------------------------------------------------------------------ power hints


def images_needed(p_a: float, p_b: float, discordant_rate: float, alpha: float = 0.05,
                  power: float = 0.8) -> int | None:
    """Validation images at which McNemar's test detects ``δ = p_b − p_a`` with ``power``.

    Connor (1987): ``n = [z_{α/2}·√ψ + z_β·√(ψ − δ²)]² / δ²`` rounded up, ``ψ`` = discordant rate
    (fraction of images exactly one of the two classifiers gets right, ``p01 + p10``),
    ``z_{α/2} = Φ⁻¹(1 − α/2)``, ``z_β = Φ⁻¹(power)``. Assumes the discordant rate stays at ``ψ``.
    ``None`` when ``δ = 0`` (no number of images suffices). Raises ValueError when ``ψ < |δ|``
    (impossible: every changed outcome is a discordant image).
    """
    _check_alpha(alpha)
    delta = float(p_b) - float(p_a)
    psi = float(discordant_rate)
    if not (0 <= psi <= 1) or not (0 < power < 1):
        raise ValueError("discordant_rate must lie in [0, 1] and power in (0, 1)")
    if delta == 0:
        return None
    if psi < abs(delta) - 1e-12:
        raise ValueError(f"discordant rate {psi} is below |p_b - p_a| = {abs(delta)}")
    za, zb = _z(1 - alpha / 2), _z(power)
    n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta**2, 0.0))) ** 2 / delta**2
    return int(math.ceil(n - 1e-9))


def seeds_needed(mean_delta: float, std_delta: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Seeds for which the paired t-test across seeds detects ``mean_delta`` with ``power``.

    ``σ = std_delta`` (sd of the per-seed differences). Normal approximation
    ``k = ((z_{α/2} + z_β)·σ/δ)²``, then the smallest ``k ≥ 2`` from there whose exact power
    under the noncentral t (``df = k − 1``, ``nc = δ√k/σ``) reaches ``power``. At least 2;
    2 when ``σ = 0``; ``None`` when ``δ = 0`` or ``σ`` is NaN.
    """
    _check_alpha(alpha)
    d, sd = float(mean_delta), float(std_delta)
    if math.isnan(d) or math.isnan(sd) or d == 0:
        return None
    if sd == 0:
        return 2
    za, zb = _z(1 - alpha / 2), _z(power)
    k = max(2, int(math.ceil(((za + zb) * sd / abs(d)) ** 2)) - 1)
    while True:
        df, nc = k - 1, abs(d) * math.sqrt(k) / sd
        tc = _t_ppf(1 - alpha / 2, df)
        achieved = _nct_sf(tc, df, nc) + _nct_cdf(-tc, df, nc)
        if achieved >= power:
            return k
        k += 1


# ------------------------------------------------------------------ predictions -> correctness


def correctness_from_predictions(df: pd.DataFrame) -> pd.Series:
    """Per-image correctness ``label == pred`` of one run's ``predictions/val.csv``, indexed by
    ``path`` (name ``correct``, dtype bool). Raises ValueError on missing columns or repeated paths."""
    missing = {"path", "label", "pred"} - set(df.columns)
    if missing:
        raise ValueError(f"predictions lack column(s) {sorted(missing)}")
    dup = int(df["path"].duplicated().sum())
    if dup:
        raise ValueError(f"predictions list {dup} path(s) more than once")
    ok = df["label"].to_numpy() == df["pred"].to_numpy()
    return pd.Series(ok, index=pd.Index(df["path"].to_numpy(), name="path"), name="correct", dtype=bool)


def align_correctness(series):
    """Align correctness Series (from ``correctness_from_predictions``) on their image paths.

    ``series``: ``{key: Series}`` or ``{variant: {seed: Series}}``. Every Series must cover the
    same set of paths; they are reordered to the first one's order and returned as bool numpy
    arrays in the same nesting (ready for ``compare_to_baseline``). Raises ValueError naming the
    run and how many paths differ (missing / extra) when a set differs.
    """
    leaves: list[tuple[tuple, pd.Series]] = []
    for key, val in series.items():
        if isinstance(val, pd.Series):
            leaves.append(((key,), val))
        else:
            leaves.extend(((key, sub), s) for sub, s in val.items())
    if not leaves:
        raise ValueError("no correctness series to align")

    def name(k: tuple) -> str:
        return str(k[0]) if len(k) == 1 else f"{k[0]} seed {k[1]}"

    ref_key, ref = leaves[0]
    order = ref.index
    if order.has_duplicates:
        raise ValueError(f"{name(ref_key)}: repeated image paths")
    ref_set = set(order)
    aligned: dict = {}
    for key, s in leaves:
        if s.index.has_duplicates:
            raise ValueError(f"{name(key)}: repeated image paths")
        here = set(s.index)
        if here != ref_set:
            miss, extra = len(ref_set - here), len(here - ref_set)
            raise ValueError(f"{name(key)}: {miss + extra} image path(s) differ from {name(ref_key)} "
                             f"({miss} missing, {extra} extra; {len(ref_set)} expected)")
        arr = s.reindex(order).to_numpy().astype(bool)
        if len(key) == 1:
            aligned[key[0]] = arr
        else:
            aligned.setdefault(key[0], {})[key[1]] = arr
    return aligned


# ------------------------------------------------------------------ the ablation table


def _row_rng(seed: int, variant: str, stream: int) -> np.random.Generator:
    # One stream per (variant, quantity): a row's interval does not change when rows are added.
    return np.random.default_rng([int(seed), zlib.crc32(str(variant).encode()), stream])


def compare_to_baseline(
    correct: Mapping[str, Mapping[int, np.ndarray]],
    baseline: str,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    power: float = 0.8,
) -> pd.DataFrame:
    """The ablation table's statistics: one row per variant (input order) against ``baseline``.

    ``correct``: variant → seed → boolean correctness vector, all on the same ``n`` images in
    the same order (``align_correctness`` builds it from predictions). Columns (``COLUMNS``):

    * ``n_seeds`` seeds of the variant; ``n_paired`` seeds it shares with the baseline;
      ``n_images`` = n.
    * ``acc_mean``, ``acc_std``: mean and sd (ddof=1, NaN for one seed) of per-seed accuracy.
    * ``acc_ci_low/high``: percentile bootstrap over images of the seed-averaged accuracy
      (``bootstrap_ci`` on the variant's seeds × images matrix; one seed: the plain per-image
      bootstrap). Image-sampling noise only.
    * ``delta``, ``delta_ci_low/high``: accuracy minus the baseline's, averaged over the
      ``n_paired`` common seeds, with the paired bootstrap interval (``paired_bootstrap_delta``).
    * ``test``, ``p_images``, ``p_seeds``, ``p_value`` — the primary p-value rule:
        - 1 paired seed: exact McNemar (``test = "mcnemar-exact"``; ``p_seeds`` NaN);
        - 2 paired seeds: exact sign-flip test on the seed-summed per-image differences
          (``"sign-flip-exact"``); the t-test with 1 degree of freedom is shown in ``p_seeds``
          but not used;
        - ≥ 3 paired seeds: ``p_value = max(p_images, p_seeds)`` with ``p_images`` the sign-flip
          test and ``p_seeds`` the paired t-test across seeds (``"max(sign-flip-exact, paired-t)"``):
          a row is called better or worse only if it stands out both from which images are in
          the validation set and from seed-to-seed variation (an intersection–union test, level α).
    * ``p_holm``: Holm over the non-baseline rows with a p-value; ``correction = "holm"``.
    * ``verdict``: ``verdict(delta, p_holm, alpha)``; the baseline row says ``"baseline"``.
    * ``images_needed`` (``images_needed`` with the paired seeds' mean accuracies and mean
      discordant rate) and ``seeds_needed`` (``seeds_needed`` with the mean and sd of the
      per-seed Δ; needs ≥ 2 paired seeds) for ``"within noise"`` rows only; float columns, ``inf``
      when Δ = 0 (never detectable), NaN elsewhere.

    Baseline row: ``delta = 0``, interval, p-values and hints NaN, ``test`` None. A variant with no
    seed in common with the baseline gets NaN Δ / p and verdict ``"n/a"``. Bootstrap draws come
    from ``default_rng([seed, crc32(variant), k])``, so a row does not depend on the other rows.
    """
    _check_alpha(alpha)
    if baseline not in correct:
        raise ValueError(f"baseline {baseline!r} is not among the variants {list(correct)}")
    mats = _correctness_matrices(correct)
    base_seeds, base_m = mats[baseline]
    rows = []
    for variant, (seeds, m) in mats.items():
        row = _row(variant, seeds, m, n_resamples, alpha, seed)
        if variant == baseline:
            row.update(n_paired=row["n_seeds"], delta=0.0, verdict=BASELINE)
        else:
            _compare_paired(row, seeds, m, base_seeds, base_m, n_resamples, alpha, seed)
        rows.append(row)
    _holm_verdicts_and_hints([r for r in rows if r["variant"] != baseline], alpha, power)
    frame = pd.DataFrame(rows).drop(columns="_hint")
    return frame[list(COLUMNS)]


def _correctness_matrices(correct: Mapping[str, Mapping[int, np.ndarray]]) -> dict[str, tuple[list[int], np.ndarray]]:
    """variant -> (its seeds, sorted; seeds x images 0/1 matrix); every variant on the same images."""
    mats: dict[str, tuple[list[int], np.ndarray]] = {}
    n = None
    for variant, by_seed in correct.items():
        if not by_seed:
            raise ValueError(f"variant {variant!r} has no seed")
        seeds = sorted(by_seed)
        m = np.vstack([_as_matrix(by_seed[s], f"{variant} seed {s}") for s in seeds])
        if n is None:
            n = m.shape[1]
        elif m.shape[1] != n:
            raise ValueError(f"{variant}: {m.shape[1]} images, expected {n} "
                             "(all runs must share the validation images)")
        mats[variant] = (seeds, m)
    return mats


def _row(variant: str, seeds: list[int], m: np.ndarray, n_resamples: int, alpha: float, seed: int) -> dict:
    """A variant's own columns (accuracy over seeds, its interval); the comparison columns NaN."""
    n = m.shape[1]
    acc_mean, acc_std, n_seeds = seed_summary(m.sum(axis=1) / n)
    low, high = _mean_ci(m.sum(axis=0), m.size, n_resamples, alpha, _row_rng(seed, variant, 0))
    return dict(variant=variant, n_seeds=n_seeds, n_paired=0, n_images=n, acc_mean=acc_mean, acc_std=acc_std,
                acc_ci_low=low, acc_ci_high=high, delta=math.nan, delta_ci_low=math.nan, delta_ci_high=math.nan,
                test=None, p_images=math.nan, p_seeds=math.nan, p_value=math.nan, p_holm=math.nan,
                correction=CORRECTION, verdict=NA, images_needed=math.nan, seeds_needed=math.nan, _hint=None)


def _compare_paired(row: dict, seeds: list[int], m: np.ndarray, base_seeds: list[int], base_m: np.ndarray,
                    n_resamples: int, alpha: float, seed: int) -> None:
    """Δ vs the baseline over the seeds both have, its interval and the primary p-value (the rule
    in compare_to_baseline's docstring); what the power hints need is kept in ``row["_hint"]``."""
    common = sorted(set(seeds) & set(base_seeds))
    row["n_paired"] = k = len(common)
    if not k:
        return
    n = m.shape[1]
    b = m[[seeds.index(s) for s in common]]
    a = base_m[[base_seeds.index(s) for s in common]]
    delta, dlow, dhigh = paired_bootstrap_delta(a, b, n_resamples=n_resamples, alpha=alpha,
                                                seed=_row_rng(seed, row["variant"], 1))
    row.update(delta=delta, delta_ci_low=dlow, delta_ci_high=dhigh)
    if k == 1:
        row.update(test=TEST_MCNEMAR, p_images=mcnemar_exact(a[0].astype(bool), b[0].astype(bool)).p_value)
        row["p_value"] = row["p_images"]
    else:
        row["p_images"] = sign_flip_exact(a, b)
        row["p_seeds"] = paired_seed_test(dict(zip(common, a.sum(axis=1) / n)), dict(zip(common, b.sum(axis=1) / n)))[1]
        if k >= MIN_SEEDS_FOR_T:
            row.update(test=TEST_MAX, p_value=max(row["p_images"], row["p_seeds"]))
        else:
            row.update(test=TEST_SIGN_FLIP, p_value=row["p_images"])
    # exact per-seed Δ from integer counts (no float noise in their sd)
    per_seed_delta = (b.sum(axis=1) - a.sum(axis=1)) / n
    discordant = float(np.mean(np.sum(a != b, axis=1) / n))
    row["_hint"] = (float(np.mean(a.sum(axis=1) / n)), float(np.mean(b.sum(axis=1) / n)), discordant,
                    seed_summary(per_seed_delta))


def _holm_verdicts_and_hints(rows: list[dict], alpha: float, power: float) -> None:
    """Holm over the non-baseline ``rows``, their verdicts, and for "within noise" rows the
    images / seeds a decision would need."""
    for r, p_adj in zip(rows, holm_bonferroni([r["p_value"] for r in rows])):
        r["p_holm"] = float(p_adj)
        r["verdict"] = verdict(r["delta"], r["p_holm"], alpha)
        if r["verdict"] == NOISE and r["_hint"] is not None:
            p_a, p_b, psi, (d_mean, d_std, k) = r["_hint"]
            imgs = images_needed(p_a, p_b, max(psi, abs(p_b - p_a)), alpha, power)
            r["images_needed"] = math.inf if imgs is None else float(imgs)
            if k >= 2:
                sds = seeds_needed(d_mean, d_std, alpha, power)
                r["seeds_needed"] = math.inf if sds is None else float(sds)


def table_note(frame: pd.DataFrame, alpha: float = 0.05, power: float = 0.8) -> str:
    """A one-paragraph note for under the ablation table: what the intervals and verdicts mean and
    which noise each one leaves out, worded for the tests the table actually used."""
    n = int(frame["n_images"].iloc[0]) if len(frame) else 0
    tests = set(frame["test"].dropna())
    tested = int(frame["p_value"].notna().sum()) if "p_value" in frame else max(len(frame) - 1, 0)
    parts = [
        f"Accuracy intervals: {1 - alpha:.0%} percentile bootstrap over the {n} validation images (one image = "
        f"{100 / n:.2f} points)." if n else "",
        "Δ: difference to the baseline on the seeds both have, with a paired bootstrap interval.",
        (f"Verdict: better/worse when the Holm-adjusted p-value (over the {tested} tested row"
         f"{'s' if tested != 1 else ''}) is below {alpha:g}; otherwise within noise." if tested else
         "No row besides the baseline has a test yet (not run, or no predictions): no verdict."),
    ]
    if TEST_MCNEMAR in tests or TEST_SIGN_FLIP in tests:
        parts.append("Rows tested on one or two seeds (exact McNemar / sign-flip test over images) hold the trained "
                     "models fixed: seed-to-seed variation is not in their p-value or interval, so a 'better' there "
                     "may not survive retraining with another seed.")
    if TEST_MAX in tests:
        parts.append("Rows with ≥ 3 seeds must pass both the image-level sign-flip test and a paired t-test across "
                     "seeds (p = the larger); with 3 seeds the t-test has little power.")
    parts.append("images_needed / seeds_needed: validation images (McNemar, Connor 1987) or seeds (paired t-test) "
                 f"at which the observed Δ would be detected with {power:.0%} power at α = {alpha:g} "
                 "before correction.")
    return " ".join(p for p in parts if p)
