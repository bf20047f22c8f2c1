"""Per-class results from a run's logged predictions (``predictions/val.csv``), no model needed.

Macro scores are computed exactly as the trainer computes them (scikit-learn's
``precision_recall_fscore_support``: macro over the classes present in the validation labels,
``zero_division=0``), so they reproduce the logged ``val_f1_macro`` / ``val_precision_macro`` /
``val_recall_macro``. They are written out with numpy, the same operations in the same order
(tests/test_report_cache.py checks them equal to scikit-learn's, bit for bit): importing
scikit-learn costs the report about a second.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bioclf.taxonomy import Taxonomy


def class_names(classes: pd.DataFrame | None, num_classes: int) -> list[str]:
    """Display name per label: classes.csv's ``name`` where there is one, else the label."""
    names = [str(i) for i in range(num_classes)]
    if classes is not None and {"label", "name"} <= set(classes.columns):
        for label, name in zip(classes["label"], classes["name"]):
            if 0 <= int(label) < num_classes and isinstance(name, str) and name:
                names[int(label)] = name
    return names


def num_classes_of(predictions: pd.DataFrame, classes: pd.DataFrame | None) -> int:
    seen = int(max(predictions["label"].max(), predictions["pred"].max())) + 1 if len(predictions) else 0
    return max(seen, len(classes) if classes is not None else 0)


def macro_scores(predictions: pd.DataFrame) -> dict[str, float]:
    """Top-1, top-5 and macro precision / recall / F1 of a predictions frame."""
    y, p = predictions["label"].to_numpy(int), predictions["pred"].to_numpy(int)
    prec, rec, f1 = _macro_prf(y, p)
    top5 = [str(label) in str(t).split() for label, t in zip(y, predictions["top5"])] if "top5" in predictions else []
    return {
        "best_val_acc": float((y == p).mean()),
        "best_val_top5_acc": float(np.mean(top5)) if len(top5) else float("nan"),
        "val_precision_macro": float(prec),
        "val_recall_macro": float(rec),
        "val_f1_macro": float(f1),
    }


def _macro_prf(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """scikit-learn's ``precision_recall_fscore_support(y, p, labels=np.unique(y), average="macro",
    zero_division=0)``: per class of ``y``, tp / predicted, tp / true and 2 tp / (true + predicted)
    (0 where a denominator is 0), then the mean over those classes."""
    labels = np.unique(y)
    tp = np.array([np.count_nonzero((y == c) & (p == c)) for c in labels], dtype=np.int64)
    pred = np.array([np.count_nonzero(p == c) for c in labels], dtype=np.int64)
    true = np.array([np.count_nonzero(y == c) for c in labels], dtype=np.int64)
    precision = _divide(tp.astype(float), pred.astype(float))
    recall = _divide(tp.astype(float), true.astype(float))
    f_score = _divide(2.0 * tp.astype(float), 1.0 * true.astype(float) + pred.astype(float))
    return float(np.nanmean(precision)), float(np.nanmean(recall)), float(np.nanmean(f_score))


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    zero = denominator == 0
    result = numerator / np.where(zero, 1.0, denominator)
    result[zero] = 0.0
    return result


def confusion_counts(predictions: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Counts (int64), rows = true class, columns = predicted class; labels outside
    ``0 .. num_classes - 1`` are left out, as scikit-learn's ``confusion_matrix`` does."""
    y = predictions["label"].to_numpy(np.int64)
    p = predictions["pred"].to_numpy(np.int64)
    keep = (y >= 0) & (y < num_classes) & (p >= 0) & (p < num_classes)
    flat = np.bincount(y[keep] * num_classes + p[keep], minlength=num_classes * num_classes)
    return flat.astype(np.int64).reshape(num_classes, num_classes)


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Each row as fractions of the true class's images (a class without images: a row of 0)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)


Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: np.ndarray, n: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of ``correct / n`` per element (NaN where n = 0). Unlike
    p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and is honest at 0 of 3: [0, 56%]."""
    correct, n = np.asarray(correct, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = correct / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def per_class_accuracy(counts: np.ndarray, names: list[str]) -> pd.DataFrame:
    """label, name, images, correct, accuracy (NaN without images) with its 95% Wilson interval
    (``acc_ci_low``, ``acc_ci_high``), and the most frequent wrong prediction
    (``confused_with``, ``confused_count``) per class."""
    n = counts.sum(axis=1)
    correct = np.diag(counts)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    worst = off.argmax(axis=1)
    worst_count = off[np.arange(len(off)), worst]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, correct / np.maximum(n, 1), np.nan)
    low, high = wilson_interval(correct, n)
    return pd.DataFrame({
        "label": np.arange(len(counts)), "name": names, "images": n, "correct": correct, "accuracy": acc,
        "acc_ci_low": low, "acc_ci_high": high,
        "confused_with": [names[w] if c > 0 else "" for w, c in zip(worst, worst_count)],
        "confused_count": worst_count,
    })


def weakest_classes(per_class: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k classes whose accuracy is lowest with evidence: ordered by the upper end of their
    95% interval, so 40 of 100 right (at most ~50%) ranks weaker than 0 of 3 (at most ~56%).
    Never more than half of the classes, never a class at 100 % (at 8 classes, "the 10 weakest"
    would be all of them). Ties: lower accuracy, then more images, then label."""
    present = per_class[per_class["images"] > 0]
    k = min(k, max(1, len(present) // 2))
    ranked = present[present["accuracy"] < 1].sort_values(["acc_ci_high", "accuracy", "images", "label"],
                                                          ascending=[True, True, False, True], kind="stable")
    return ranked.head(k).reset_index(drop=True)


def confused_pairs(counts: np.ndarray, names: list[str], top: int) -> pd.DataFrame:
    """The ``top`` most frequent off-diagonal (true → predicted) pairs, by rate then count."""
    rates = row_normalise(counts)
    true, pred = np.nonzero(counts * (1 - np.eye(len(counts), dtype=counts.dtype)))
    pairs = pd.DataFrame({"true_label": true, "true": [names[i] for i in true],
                          "pred_label": pred, "predicted": [names[j] for j in pred],
                          "rate": rates[true, pred], "count": counts[true, pred],
                          "true_images": counts.sum(axis=1)[true]})
    pairs = pairs.sort_values(["rate", "count", "true_label"], ascending=[False, False, True], kind="stable")
    return pairs.head(top).reset_index(drop=True)


def asymmetric_pairs(counts: np.ndarray, names: list[str], top: int) -> pd.DataFrame:
    """Class pairs confused mostly one way (a taken for b, rarely b for a), largest gap first.

    Each unordered pair appears once, written in its stronger direction (a → b)."""
    rates = row_normalise(counts)
    gap = rates - rates.T
    a, b = np.nonzero((gap > 0) & (counts > 0))
    pairs = pd.DataFrame({"a_label": a, "a": [names[i] for i in a], "b_label": b, "b": [names[j] for j in b],
                          "rate_ab": rates[a, b], "count_ab": counts[a, b],
                          "rate_ba": rates[b, a], "count_ba": counts[b, a], "gap": gap[a, b]})
    pairs = pairs.sort_values(["gap", "count_ab", "a_label"], ascending=[False, False, True], kind="stable")
    return pairs.head(top).reset_index(drop=True)


# ---------------------------------------------------------------- the class tree


Block = tuple[int, int]  # [start, stop) positions in a permuted class order


def _natural_key(value) -> tuple:
    """"g2" before "g10": digit runs compare as numbers (the generated trees name their genera
    g0, g1, ... g12); text without digits sorts as plain text."""
    parts = re.split(r"(\d+)", str(value))
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), str(value)


def _sorted_codes(values: pd.Series) -> np.ndarray:
    """Each value's position among the distinct values in natural order."""
    order = {v: i for i, v in enumerate(sorted(values.unique(), key=_natural_key))}
    return values.map(order).to_numpy(np.int64)


def _runs(values: np.ndarray) -> list[Block]:
    """[start, stop) of each run of equal consecutive values."""
    if len(values) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    stops = np.r_[starts[1:], len(values)]
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def tree_order(taxonomy: Taxonomy) -> tuple[np.ndarray, list[tuple[str, list[Block]]]]:
    """Class labels reordered so that the tree's groups are contiguous: by the top rank's value,
    then the next rank down's, ..., then label order within a genus (values in natural order, so
    the order is the same on every run). With it, for each rank above the class (``ranks[1:]``,
    lowest first) the [start, stop) block of each of its values in that order.

    A confusion matrix permuted by it shows confusions inside a genus or family as squares on
    the diagonal. ValueError when a value falls in two blocks (a genus in two families):
    ``read_taxonomy`` refuses such a table."""
    table, above = taxonomy.table, list(taxonomy.ranks[1:])
    # np.lexsort sorts by its last key first: the labels break ties, the top rank leads
    keys = [np.arange(len(table))] + [_sorted_codes(table[rank]) for rank in above]
    order = np.lexsort(keys)
    blocks = []
    for rank in above:
        values = table[rank].to_numpy()[order]
        runs = _runs(values)
        if len(runs) != len(set(values)):
            raise ValueError(f"taxonomy: a {rank} value has classes in two places of the tree")
        blocks.append((rank, runs))
    return order, blocks


def block_values(taxonomy: Taxonomy, order: np.ndarray, rank: str) -> list[str]:
    """The value of ``rank`` of each of its blocks in ``tree_order``'s ``order``, in block order
    (the names a figure writes beside the blocks)."""
    values = taxonomy.table[rank].to_numpy()[order]
    return [str(values[start]) for start, _ in _runs(values)]
