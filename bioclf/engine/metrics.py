"""Evaluation metrics from per-image outputs (scikit-learn for the macro scores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean())


def macro_scores(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Macro precision / recall / F1 over the classes present in the validation labels.

    Averaging over the classes that have validation images (not every class of the model)
    keeps an empty class from pulling the macro mean towards 0; a class never predicted gets
    precision 0 (zero_division=0) rather than a warning.
    """
    present = np.unique(labels)
    p, r, f, _ = precision_recall_fscore_support(
        labels, preds, labels=present, average="macro", zero_division=0
    )
    return {"val_precision_macro": float(p), "val_recall_macro": float(r), "val_f1_macro": float(f)}


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall per class (NaN for a class without validation images)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    hits = np.bincount(labels[preds == labels], minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / counts, np.nan)


def predictions_frame(paths: list[str], labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """One row per image: path, label, pred, top5 (space-separated, best first), p_label, p_pred."""
    k = min(5, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(labels))
    return pd.DataFrame(
        {
            "path": paths,
            "label": labels.astype(int),
            "pred": order[:, 0].astype(int),
            "top5": [" ".join(map(str, r)) for r in order],
            "p_label": probs[rows, labels].astype(float).round(6),
            "p_pred": probs[rows, order[:, 0]].astype(float).round(6),
        }
    )
