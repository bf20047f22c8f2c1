"""Table 7's numbers: how bad each variant's mistakes are in the class tree, from the runs' whole
softmax (``predictions/val_probs.npz``), ranked as trained and re-ranked by CRM, and their Δ vs
the baseline with paired intervals and Holm-corrected verdicts.

Every measure is a function of per-image scores, so variants are compared image by image, the
way the ablation table compares accuracy (analysis.stats):

- top-1 at each rank: 0/1 per image (the class rank is ordinary accuracy);
- hdist@1: the height of the lowest common ancestor of the true and the predicted class, an
  integer per image (0 when right); hdist@k: the sum of the heights of the top k, over k;
- mistake severity: hdist@1 over the mistakes only, a ratio of two per-image sums (heights,
  mistakes), so its Δ gets a paired bootstrap of the ratio instead of the exact sign-flip test.

With 3 paired seeds or more, a p-value is the larger of the image-level test's and the paired
t-test's across seeds, the ablation table's rule. Holm's correction runs per measure over the
rows compared with the baseline (each variant as trained, and each variant re-ranked by CRM,
the baseline's included). Numbers only: the formulas of the measures are in bioclf.taxonomy,
the tests in analysis.stats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import stats
from analysis.suite import finished, run_label
from bioclf.taxonomy import Taxonomy, crm_ranking, top_k

K = 5  # hdist@k's k, as in Bertinetto et al. and Karthik et al.
SOFTMAX, CRM = "as trained", "CRM"
RANKINGS = (SOFTMAX, CRM)


@dataclass
class Scores:
    """Per-image scores of one ranking of one run (all ``(n,)``, in the suite's image order)."""

    rank_correct: dict[str, np.ndarray]  # rank -> right at that rank (bool)
    height1: np.ndarray  # LCA height of the top-1 prediction (0: right)
    height_k: np.ndarray  # sum of the LCA heights of the top k
    k: int


def run_scores(probs: np.ndarray, labels: np.ndarray, tree: Taxonomy, heights: np.ndarray,
               predicted: np.ndarray | None = None) -> dict[str, Scores]:
    """The scores of a run's softmax, ranked by probability and by CRM (expected tree cost).
    ``predicted``: the run's own predictions (val.csv), first among ties of the float16 softmax,
    so that "as trained" top-1 is the run's best_val_acc exactly."""
    k = min(K, probs.shape[1])
    out = {}
    for name, ranking in ((SOFTMAX, top_k(probs, k, predicted)), (CRM, crm_ranking(probs, heights)[:, :k])):
        predicted = ranking[:, 0]
        correct = {rank: tree.at_rank(predicted, rank) == tree.at_rank(labels, rank) for rank in tree.ranks}
        out[name] = Scores(correct, heights[labels, predicted], heights[labels[:, None], ranking].sum(1), k)
    return out


def collect(runs: pd.DataFrame, val_probs: dict, predictions: dict, tree: Taxonomy
            ) -> tuple[dict[str, dict[int, dict[str, Scores]]], list[str]]:
    """variant -> seed -> ranking -> Scores for every finished run with its softmax, rows put in
    the first such run's image order (by path); and the runs left out (other classes or images)."""
    heights = tree.lca_heights()
    scores: dict[str, dict[int, dict[str, Scores]]] = {}
    skipped: list[str] = []
    order = None
    for _, r in finished(runs).iterrows():
        probs, preds = val_probs.get(r["run_id"]), predictions.get(r["run_id"])
        if probs is None or preds is None:
            continue
        if probs.shape[1] != len(tree.classes) or len(probs) != len(preds):
            skipped.append(run_label(r))
            continue
        paths = preds["path"].astype(str).to_numpy()
        if order is None:
            order = pd.Index(paths)
        position = pd.Index(paths).get_indexer(order)
        if len(paths) != len(order) or (position < 0).any():
            skipped.append(run_label(r))
            continue
        labels, predicted = preds["label"].to_numpy()[position], preds["pred"].to_numpy()[position]
        scores.setdefault(r["variant"], {})[int(r["seed"])] = run_scores(probs[position], labels, tree, heights,
                                                                         predicted)
    return scores, skipped


def _measures(s: Scores) -> dict[str, float]:
    wrong = s.height1 > 0
    return {"mistakes": int(wrong.sum()),
            "mistake_severity": float(s.height1[wrong].mean()) if wrong.any() else np.nan,
            "hdist@1": float(s.height1.mean()), f"hdist@{K}": float(s.height_k.mean() / s.k)}


def summary_frame(scores: dict[str, dict[int, dict[str, Scores]]], tree: Taxonomy, variants: list[str]) -> pd.DataFrame:
    """One row per (variant, ranking), in table order: per-rank top-1, mistake severity, hdist@1,
    hdist@k, each the mean over the variant's seeds; ``mistakes`` summed over seeds."""
    rows = []
    for variant in [v for v in variants if v in scores]:
        for ranking in RANKINGS:
            per_seed = [seeds[ranking] for seeds in scores[variant].values()]
            values = pd.DataFrame([{**{f"{rank}_acc": float(s.rank_correct[rank].mean()) for rank in tree.ranks},
                                    **_measures(s)} for s in per_seed])
            row = {"variant": variant, "ranking": ranking, "n_seeds": len(per_seed)}
            row.update(values.drop(columns="mistakes").mean().to_dict())
            row["mistakes"] = int(values["mistakes"].sum())
            rows.append(row)
    return pd.DataFrame(rows)


MEASURES = (  # key, higher is better
    ("acc", True),
    ("mistake_severity", False),
    ("hdist@1", False),
    (f"hdist@{K}", False),
)


def delta_frame(scores: dict[str, dict[int, dict[str, Scores]]], baseline: str, variants: list[str],
                alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Every (variant, ranking) but the baseline as trained, against the baseline as trained on
    the seeds both have: per measure ``<m>_delta``, ``<m>_low``, ``<m>_high``, ``<m>_p``,
    ``<m>_p_holm`` and ``<m>_verdict`` (better / worse / within noise, by the measure's direction)."""
    if baseline not in scores:
        return pd.DataFrame()
    base = scores[baseline]
    rows = []
    for variant in [v for v in variants if v in scores]:
        for ranking in RANKINGS:
            if variant == baseline and ranking == SOFTMAX:
                continue
            common = sorted(set(scores[variant]) & set(base))
            row: dict = {"variant": variant, "ranking": ranking, "n_paired": len(common)}
            if common:
                a = [base[s][SOFTMAX] for s in common]
                b = [scores[variant][s][ranking] for s in common]
                # one stream per row, as in the ablation table: a row's interval does not move when rows are added
                row.update(_paired(a, b, stats._row_rng(seed, f"{variant}/{ranking}", 0)))
            rows.append(row)
    frame = pd.DataFrame(rows)
    for key, higher_better in MEASURES:
        if f"{key}_p" not in frame:
            frame[[f"{key}_{c}" for c in ("delta", "low", "high", "p")]] = np.nan
        frame[f"{key}_p_holm"] = stats.holm_bonferroni(frame[f"{key}_p"].to_numpy(dtype=float))
        sign = 1.0 if higher_better else -1.0
        frame[f"{key}_verdict"] = [stats.verdict(sign * d, p, alpha)
                                   for d, p in zip(frame[f"{key}_delta"], frame[f"{key}_p_holm"])]
    return frame


def _paired(a: list[Scores], b: list[Scores], rng: np.random.Generator) -> dict[str, float]:
    """Each measure's Δ, interval and p-value over the paired seeds (``a[s]`` with ``b[s]``). With
    ``stats.MIN_SEEDS_FOR_T`` seeds or more the p-value is, as in the ablation table, the larger
    of the image-level test's and the paired t-test's across seeds."""
    out: dict[str, float] = {}
    stack = lambda side, f: np.vstack([f(s) for s in side])  # noqa: E731 - seeds x images
    ha, hb = stack(a, lambda s: s.height1), stack(b, lambda s: s.height1)
    by_measure = {
        "acc": (stack(a, lambda s: s.rank_correct["class"]), stack(b, lambda s: s.rank_correct["class"]), 1),
        "hdist@1": (ha, hb, 1),
        f"hdist@{K}": (stack(a, lambda s: s.height_k), stack(b, lambda s: s.height_k), a[0].k),
    }
    for key, (ma, mb, per_image) in by_measure.items():
        delta, low, high, p = stats.paired_scores_delta(ma, mb, per_image, seed=rng)
        per_seed = ma.mean(axis=1) / per_image, mb.mean(axis=1) / per_image
        out.update(_row(key, delta, low, high, p, per_seed))
    delta, low, high, p = stats.paired_ratio_delta(ha.sum(0), (ha > 0).sum(0), hb.sum(0), (hb > 0).sum(0), seed=rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = ha.sum(axis=1) / (ha > 0).sum(axis=1), hb.sum(axis=1) / (hb > 0).sum(axis=1)
    out.update(_row("mistake_severity", delta, low, high, p, per_seed))
    return out


def _row(key: str, delta: float, low: float, high: float, p_images: float,
         per_seed: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    p = p_images
    if len(per_seed[0]) >= stats.MIN_SEEDS_FOR_T and np.isfinite(per_seed).all():
        seeds = range(len(per_seed[0]))
        p_seeds = stats.paired_seed_test(dict(zip(seeds, per_seed[0])), dict(zip(seeds, per_seed[1])))[1]
        p = max(p_images, p_seeds)
    return {f"{key}_delta": delta, f"{key}_low": low, f"{key}_high": high, f"{key}_p": p}


def height_counts(scores: dict[str, dict[int, dict[str, Scores]]], variants: list[str], top: int) -> pd.DataFrame:
    """Mistakes per LCA height 1..``top`` (columns), one row per variant (index), of its
    predictions as trained, summed over seeds."""
    rows = {}
    for variant in [v for v in variants if v in scores]:
        heights = np.concatenate([seeds[SOFTMAX].height1 for seeds in scores[variant].values()])
        rows[variant] = np.bincount(heights, minlength=top + 1)[1:top + 1]
    return pd.DataFrame.from_dict(rows, orient="index", columns=range(1, top + 1))
