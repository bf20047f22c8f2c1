"""A suite as read back from the store: plain pandas objects, no MLflow.

``analysis.store`` builds a ``SuiteData``; tests build one by hand. The names below are those of
the tracking contract (docs/tracking.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bioclf.tracking import contract

# Per-epoch metrics (step = epoch) and final metrics (of the best checkpoint, and the
# computational columns: peak memory, model file, latency at batch 16), per the contract.
EPOCH_METRICS, COST_METRICS, FINAL_METRICS = contract.EPOCH_METRICS, contract.COST_METRICS, contract.FINAL_METRICS

# Metrics recomputed from predictions/val.csv must match the logged ones to within float noise.
METRIC_TOLERANCE = 1e-9

FINISHED = "FINISHED"
NOT_RUN = "NOT RUN"  # a row of the suite with no run in the store

# Columns every runs frame has (SuiteData.runs), besides ``params.<key>`` and the final metrics.
RUN_COLUMNS = ("variant", "seed", "config_hash", "run_id", "run_name", "status", "error", "parent_run_id",
               "start_time", "end_time", "num_params", "num_trainable_params", "max_epochs", "is_baseline",
               "data_fingerprint", "host", "fold")


@dataclass
class SuiteData:
    """Everything a report needs about one suite.

    ``runs``: one row per (variant, seed) of the suite, in spec order, with the columns of
    ``RUN_COLUMNS``, every final metric (NaN when not logged) and ``params.<key>``.
    ``histories``: long frame, one row per (run_id, epoch), one column per per-epoch metric.
    ``predictions``: run_id -> the run's ``predictions/val.csv``, for the runs the report
    draws per-class figures of (see ``figure_runs``). ``classes``: ``label, folder, name``.
    ``notes``: what could not be read and what was done instead; shown in the report.
    ``val_probs`` / ``taxonomy``: for the taxonomy table (``bioclf-report --taxonomy``, else the
    tree the runs trained with, ``logged_taxonomy``).
    """

    experiment: str
    suite_run_id: str
    tracking_uri: str
    baseline: str
    variants: list[str]
    runs: pd.DataFrame
    histories: pd.DataFrame
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    classes: pd.DataFrame | None = None
    description: str = ""
    diffs: dict[str, dict[str, list]] = field(default_factory=dict)
    suite_status: str = ""
    notes: list[str] = field(default_factory=list)
    val_probs: dict = field(default_factory=dict)  # run_id -> (N, C) softmax of val_probs.npz, when read
    taxonomy: object = None  # bioclf.taxonomy.Taxonomy of the report (--taxonomy, else the runs'), or None
    logged_taxonomy: pd.DataFrame | None = None  # taxonomy.csv of a run that trained with one (all strings)
    fold_runs: pd.DataFrame | None = None  # evaluation.folds: the fold runs pooled into ``runs`` (analysis.folds)

    def history_of(self, run_id: str | None) -> pd.DataFrame:
        """One run's history sorted by epoch (empty when the run has none)."""
        if run_id is None or self.histories.empty:
            return self.histories.iloc[0:0]
        h = self.histories[self.histories["run_id"] == run_id]
        return h.sort_values("epoch").reset_index(drop=True)

    @property
    def class_folders(self) -> list[str] | None:
        """The class folder names in label order (classes.csv), None when no run logged them."""
        if self.classes is None or "folder" not in self.classes:
            return None
        return self.classes.sort_values("label")["folder"].astype(str).tolist()

    @property
    def multi_seed(self) -> bool:
        return bool((self.runs.groupby("variant", sort=False).size() > 1).any())


def run_label(row) -> str:
    """``<variant>-seed<seed>``: the run name bioclf gives a child run; used in file names."""
    return f"{row['variant']}-seed{row['seed']}"


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == FINISHED]


def figure_runs(runs: pd.DataFrame, baseline: str) -> list[tuple[str, pd.Series]]:
    """The runs the per-class figures are drawn for: the baseline (its first seed that has a
    run, a finished one preferred) and the suite's best finished run by ``best_val_acc``.
    Returns ``[(role, row)]`` with role ``baseline``, ``best`` or ``best-baseline`` when the
    baseline is the best run (drawn once)."""
    chosen: list[tuple[str, pd.Series]] = []
    with_run = runs[runs["run_id"].notna()]
    base = with_run[with_run["variant"] == baseline]
    if not base.empty:
        done = finished(base)
        chosen.append(("baseline", (done if not done.empty else base).iloc[0]))
    scored = finished(with_run).dropna(subset=["best_val_acc"])
    if not scored.empty:
        best = scored.loc[scored["best_val_acc"].idxmax()]
        if chosen and chosen[0][1]["run_id"] == best["run_id"]:
            chosen[0] = ("best-baseline", chosen[0][1])
        else:
            chosen.append(("best", best))
    return chosen
