"""Out-of-fold evaluation (``evaluation.folds``): the K fold runs of each variant x seed read as
one row, so that every table, figure and test of the report works on every labelled image.

A fold run validates on the fold it did not train on; the K folds partition train + val. The
pooled row's predictions are the K ``val.csv`` files one after the other (every labelled image
once), and its accuracy, top-5 and macro scores are recomputed from them; costs add up (training
time) or take the worst (peak memory). Its run id is fold 0's, so its training curves and key
epochs are fold 0's (said in a note). A variant x seed is finished when all K folds are.

``fold_spread`` keeps what pooling hides: each fold's own accuracy, their mean and spread.
Pure pandas on a SuiteData: no MLflow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.classwise import macro_scores
from analysis.suite import FINISHED, NOT_RUN, SuiteData

# A pooled row's status when not every fold finished: the first of these any fold has.
_WORST_FIRST = ("FAILED", "KILLED", "RUNNING", NOT_RUN)
_SUMMED = ("train_time_s", "epochs_run")
_WORST = ("peak_rss_mb", "peak_gpu_mem_mb")


def has_folds(runs: pd.DataFrame) -> bool:
    return "fold" in runs and runs["fold"].notna().any()


def pool_folds(data: SuiteData) -> SuiteData:
    """``data`` with the fold runs of each (variant, seed) pooled into one row (module docstring);
    unchanged when the suite has no fold runs."""
    runs = data.runs
    if not has_folds(runs):
        return data
    predictions, probs = dict(data.predictions), dict(data.val_probs)
    rows = []
    for _, group in runs.groupby(["variant", "seed"], sort=False, dropna=False):
        if group["fold"].isna().all():
            rows += [r for _, r in group.iterrows()]
            continue
        group = group.sort_values("fold")
        row = group.iloc[0].copy()
        row["n_folds"] = _folds_of(group)
        row["status"] = _pooled_status(group, row["n_folds"])
        ids = group["run_id"].tolist()
        frames = [data.predictions.get(i) for i in ids]
        if row["status"] == FINISHED and all(f is not None for f in frames):
            pooled = pd.concat(frames, ignore_index=True)
            predictions[row["run_id"]] = pooled
            for key, value in macro_scores(pooled).items():
                row[key] = value
            if all(i in data.val_probs for i in ids):
                probs[row["run_id"]] = np.concatenate([data.val_probs[i] for i in ids])
            else:  # fold 0's own softmax would stand for the pooled row
                probs.pop(row["run_id"], None)
        else:
            predictions.pop(row["run_id"], None)
            probs.pop(row["run_id"], None)
            row["best_val_acc"] = np.nan
        for key in _SUMMED:
            if key in group:
                row[key] = group[key].sum(min_count=1)
        for key in _WORST:
            if key in group:
                row[key] = group[key].max()
        rows.append(row)
    pooled_runs = pd.DataFrame(rows).reset_index(drop=True)
    notes = list(data.notes) + [
        f"Out-of-fold evaluation ({int(pooled_runs['n_folds'].max())} folds): each row's accuracy, interval and "
        "test are over every labelled image (train + val), each predicted by the fold run that did not train on "
        "it; training curves and key epochs are fold 0's; training time adds up the folds."]
    return dataclasses.replace(data, runs=pooled_runs, predictions=predictions, val_probs=probs, notes=notes,
                               fold_runs=runs[runs["fold"].notna()].copy())


def _folds_of(group: pd.DataFrame) -> int:
    key = "params.evaluation.folds"
    declared = pd.to_numeric(group[key], errors="coerce").dropna() if key in group else pd.Series(dtype=float)
    return int(declared.iloc[0]) if len(declared) else int(group["fold"].max()) + 1


def _pooled_status(group: pd.DataFrame, folds: int) -> str:
    statuses = list(group["status"])
    if len(statuses) == folds and all(s == FINISHED for s in statuses):
        return FINISHED
    if len(statuses) < folds:
        statuses.append(NOT_RUN)
    return next((s for s in _WORST_FIRST if s in statuses), NOT_RUN)


def fold_spread(fold_runs: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """One row per (variant, seed): each fold's accuracy on its own fold (``fold_accs``, text),
    their mean and standard deviation (ddof 1), the smallest and largest."""
    rows = []
    done = fold_runs[fold_runs["status"] == FINISHED]
    for (variant, seed), group in done.groupby(["variant", "seed"], sort=False):
        accs = group.sort_values("fold")["best_val_acc"].astype(float)
        rows.append({"variant": variant, "seed": seed, "n_folds": len(accs),
                     "fold_accs": " / ".join(f"{100 * a:.1f}" for a in accs),
                     "fold_mean": accs.mean(), "fold_std": accs.std(ddof=1) if len(accs) > 1 else np.nan,
                     "fold_min": accs.min(), "fold_max": accs.max()})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["order"] = frame["variant"].map({v: i for i, v in enumerate(variants)})
        frame = frame.sort_values(["order", "seed"], kind="stable").drop(columns="order").reset_index(drop=True)
    return frame
