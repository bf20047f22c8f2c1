"""Table builders, key-epoch logic, per-class results and the Markdown / LaTeX writers, on
hand-made DataFrames (no MLflow): the values are checked, not only that something came out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import classwise, tables
from analysis.history import is_continuous_decay, key_epochs, lr_drops
from analysis.render import Column, Table, latex_escape, markdown_body, to_latex
from analysis.suite import FINAL_METRICS, RUN_COLUMNS, figure_runs


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """A SuiteData.runs frame: every contract column, defaults for what a row leaves out."""
    full = []
    for i, row in enumerate(rows):
        rec = dict.fromkeys(RUN_COLUMNS)
        rec.update(dict.fromkeys(FINAL_METRICS, np.nan))
        rec.update(status="FINISHED", run_id=f"run{i}", max_epochs=10, num_params=1_000_000, is_baseline=False)
        rec.update(row)
        if rec["status"] == "NOT RUN":
            rec["run_id"] = None
        full.append(rec)
    return pd.DataFrame(full)


def history(lrs: list[float], val_acc: list[float] | None = None, run_id: str = "r") -> pd.DataFrame:
    n = len(lrs)
    acc = val_acc or list(np.linspace(0.3, 0.8, n))
    return pd.DataFrame({"run_id": run_id, "epoch": np.arange(1, n + 1), "train_loss": np.linspace(2, 1, n),
                         "train_acc": np.linspace(0.2, 0.9, n), "val_loss": np.linspace(2.2, 1.2, n),
                         "val_acc": acc, "lr": lrs})


# ---------------------------------------------------------------- Table 2: key epochs


def test_key_epochs_lists_first_each_lr_drop_best_and_early_stop():
    h = history([1e-3] * 4 + [2e-4] * 4 + [4e-5] * 2)
    rows = key_epochs(h, best_epoch=7, max_epochs=20)
    assert list(rows["epoch"]) == [1, 5, 7, 9, 10]
    assert list(rows["event"]) == ["first", "LR drop 0.001 → 0.0002", "best", "LR drop 0.0002 → 4e-05", "early stop"]
    # the rows are the history's own values at those epochs
    pd.testing.assert_frame_equal(rows.drop(columns="event"), h[h["epoch"].isin([1, 5, 7, 9, 10])].reset_index(drop=True))
    assert [d.epoch for d in lr_drops(h)] == [5, 9]


def test_key_epochs_use_the_logged_stopped_early_over_inference():
    h = history([1e-3] * 10)
    # 10 of 20 epochs, but the run says it did not stop early (e.g. train.epochs was lowered for a resume)
    assert key_epochs(h, best_epoch=3, max_epochs=20, logged_stop=0.0)["event"].iloc[-1] == "last"
    assert key_epochs(h, best_epoch=3, max_epochs=10, logged_stop=1.0)["event"].iloc[-1] == "early stop"
    assert key_epochs(h, best_epoch=3, max_epochs=20, logged_stop=float("nan"))["event"].iloc[-1] == "early stop"


def test_key_epochs_merges_events_of_one_epoch_and_marks_unfinished_runs():
    h = history([1e-3] * 3)
    assert list(key_epochs(h, best_epoch=3, max_epochs=3)["event"]) == ["first", "best, last"]
    assert list(key_epochs(h, best_epoch=2, max_epochs=10, status="FAILED")["event"]) == ["first", "best", "last (failed)"]
    # a finished run that used all its epochs did not stop early
    assert list(key_epochs(h, best_epoch=1, max_epochs=3)["event"]) == ["first, best", "last"]


def test_cosine_decay_is_not_a_list_of_drops():
    lrs = list(1e-3 * 0.5 * (1 + np.cos(np.pi * np.arange(12) / 12)))
    h = history(lrs)
    assert is_continuous_decay(h) and lr_drops(h) == []
    assert list(key_epochs(h, best_epoch=12, max_epochs=12)["event"]) == ["first", "best, last"]


def test_progress_table_covers_every_run_with_a_history():
    runs = runs_frame([{"variant": "base", "seed": 0, "run_id": "a", "best_epoch": 4.0, "max_epochs": 6},
                       {"variant": "x", "seed": 0, "run_id": "b", "best_epoch": 2.0, "max_epochs": 3},
                       {"variant": "y", "seed": 0, "status": "NOT RUN"}])
    hist = pd.concat([history([1e-3, 1e-3, 1e-4, 1e-4], run_id="a"), history([1e-3] * 3, run_id="b")])
    table = tables.progress_table(runs, hist)
    got = table.data
    assert list(zip(got["variant"], got["epoch"], got["event"])) == [
        ("base", 1, "first"), ("base", 3, "LR drop 0.001 → 0.0001"), ("base", 4, "best, early stop"),
        ("x", 1, "first"), ("x", 2, "best"), ("x", 3, "last")]
    md = markdown_body(table)
    assert "| base | 0 | 3 | LR drop 0.001 → 0.0001 | 1.3333 | 66.7 | 1.5333 | 63.3 | 1.00e-04 |" in md


# ---------------------------------------------------------------- ablation (Tables 4-6)


@pytest.fixture
def ablation_runs() -> pd.DataFrame:
    return runs_frame([
        {"variant": "base", "seed": 1, "best_val_acc": 0.80, "train_time_s": 100.0, "epochs_run": 10.0,
         "num_params": 88_791_204, "is_baseline": True},
        {"variant": "base", "seed": 2, "best_val_acc": 0.90, "train_time_s": 120.0, "epochs_run": 12.0,
         "num_params": 88_791_204, "is_baseline": True},
        {"variant": "wide", "seed": 1, "best_val_acc": 0.88, "train_time_s": 220.0, "epochs_run": 10.0,
         "num_params": 90_000_001},
        {"variant": "wide", "seed": 2, "best_val_acc": 0.92, "train_time_s": 220.0, "epochs_run": 10.0,
         "num_params": 90_000_001},
        {"variant": "flaky", "seed": 1, "best_val_acc": 0.70, "train_time_s": 50.0, "epochs_run": 5.0},
        {"variant": "flaky", "seed": 2, "status": "FAILED", "error": "RunFailed: training loss became nan"},
        {"variant": "never", "seed": 1, "status": "NOT RUN", "config_hash": "abc123abc123", "num_params": None},
        {"variant": "never", "seed": 2, "status": "NOT RUN", "config_hash": "def456def456", "num_params": None},
    ])


def test_ablation_frame_aggregates_per_variant_in_spec_order(ablation_runs):
    f = tables.ablation_frame(ablation_runs, "base", ["base", "wide", "flaky", "never"]).set_index("variant")
    assert list(f.index) == ["base", "wide", "flaky", "never"]
    assert f.loc["base", "val_acc_mean"] == pytest.approx(0.85)
    assert f.loc["base", "val_acc_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert f.loc["wide", "delta_pp"] == pytest.approx(5.0)
    assert f.loc["wide", "time_rel"] == pytest.approx(2.0)
    assert f.loc["wide", "num_params"] == 90_000_001  # exact, not rounded
    assert f.loc["flaky", "n_finished"] == 1 and math.isnan(f.loc["flaky", "val_acc_std"])
    assert f.loc["flaky", "val_acc_mean"] == pytest.approx(0.70)  # the failed seed is not averaged in
    assert f.loc["flaky", "status"] == "1/2 finished; 1 failed"
    assert f.loc["never", "status"] == "not run" and math.isnan(f.loc["never", "val_acc_mean"])


def test_ablation_table_marks_failed_and_missing_rows_never_drops_them(ablation_runs):
    table = tables.ablation_table(ablation_runs, "base", ["base", "wide", "flaky", "never"])
    md, cost = markdown_body(table), markdown_body(tables.cost_table(table))
    assert "| base | (baseline) | finished | 2 | 85.0 ± 7.1 | — |" in md and "| base | 88.79 | 1.00× | 11 |" in cost
    assert "| wide |  | finished | 2 | 90.0 ± 2.8 | +5.0 |" in md and "| wide | 90.00 | 2.00× | 10 |" in cost
    assert "| flaky |  | 1/2 finished; 1 failed | 1 | 70.0 | -15.0 |" in md and "| flaky | 1.00 | 0.45× | 5 |" in cost
    assert "| never |  | not run | 0 | — | — |" in md and "| never | — | — | — |" in cost
    assert any("flaky seed 2: failed (run run5): RunFailed: training loss became nan." in n for n in table.notes)
    assert any("never seed 1: not run (no run with config hash abc123abc123" in n for n in table.notes)


def test_single_seed_ablation_has_no_n_or_std_and_says_when_baseline_is_missing():
    runs = runs_frame([{"variant": "base", "seed": 0, "status": "FAILED", "is_baseline": True},
                       {"variant": "a", "seed": 0, "best_val_acc": 0.5, "train_time_s": 10.0, "epochs_run": 3.0}])
    table = tables.ablation_table(runs, "base", ["base", "a"], diffs={"a": {"loss.label_smoothing": [0.1, 0.0]}})
    assert [c.header for c in table.columns][:4] == ["Variant", "Change vs baseline", "Status", "Val acc (%)"]
    assert "| a | loss.label_smoothing: 0.1 → 0.0 | finished | 50.0 | — |" in markdown_body(table)
    assert "| a | 1.00 | — | 3 |" in markdown_body(tables.cost_table(table))
    assert any("baseline (base) has no finished run" in n for n in table.notes)


def test_describe_change_names_added_and_removed_transforms():
    base = ["resize", {"name": "color_jitter", "brightness": 0.15}, {"name": "random_erasing", "p": 0.2}]
    mine = ["resize", {"name": "color_jitter", "brightness": 0.15}, "rotation"]
    assert tables.describe_change("data.train_transforms", base, mine) == \
        "data.train_transforms: +rotation −random_erasing"
    changed = ["resize", {"name": "color_jitter", "brightness": 0.3}, {"name": "random_erasing", "p": 0.2}]
    assert tables.describe_change("data.train_transforms", base, changed) == "data.train_transforms: changed color_jitter"
    assert tables.describe_change("model.head.hidden_dim", 512, None) == "head.hidden_dim: 512 → null"


# ---------------------------------------------------------------- Table 3: overall metrics


def test_metrics_tables_per_run_and_per_variant(ablation_runs):
    runs = ablation_runs.assign(best_val_top5_acc=0.99, val_f1_macro=0.5, val_precision_macro=0.6,
                                val_recall_macro=0.7, best_epoch=3.0)
    per_run = tables.metrics_table(runs)
    assert list(per_run.data["best_val_acc"][:4]) == [0.80, 0.90, 0.88, 0.92]
    assert "| wide | 2 | finished | 92.0 | 99.0 | 50.0 | 60.0 | 70.0 | 3 |" in markdown_body(per_run)
    mean = tables.metrics_summary_table(runs, ["base", "wide", "flaky", "never"]).data.set_index("variant")
    assert mean.loc["wide", "best_val_acc_mean"] == pytest.approx(0.90)
    assert mean.loc["wide", "n"] == 2 and mean.loc["never", "n"] == 0


# ---------------------------------------------------------------- per-class results


@pytest.fixture
def preds() -> pd.DataFrame:
    return pd.DataFrame({"label": [0, 0, 1, 1, 2, 2, 2, 2], "pred": [0, 1, 1, 1, 2, 0, 0, 2],
                         "top5": ["0 1", "1 0", "1 2", "1 0", "2 0", "0 2", "0 1", "2 1"]})


def test_macro_scores_follow_the_trainers_definition(preds):
    got = classwise.macro_scores(preds)
    # by hand: precision 0: 1/3, 1: 2/3, 2: 2/2; recall 0: 1/2, 1: 2/2, 2: 2/4
    assert got["val_precision_macro"] == pytest.approx((1 / 3 + 2 / 3 + 1) / 3)
    assert got["val_recall_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    f1 = [2 * p * r / (p + r) for p, r in [(1 / 3, 0.5), (2 / 3, 1), (1, 0.5)]]
    assert got["val_f1_macro"] == pytest.approx(np.mean(f1))
    assert got["best_val_acc"] == pytest.approx(5 / 8)
    assert got["best_val_top5_acc"] == pytest.approx(7 / 8)  # "0 1" lacks label 2 once


def test_confusion_per_class_and_pairs(preds):
    names = classwise.class_names(pd.DataFrame({"label": [0, 1, 2], "name": ["ant", "bee", "wasp"]}), 3)
    counts = classwise.confusion_counts(preds, 3)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 2]]
    np.testing.assert_allclose(classwise.row_normalise(counts)[2], [0.5, 0, 0.5])
    per = classwise.per_class_accuracy(counts, names)
    assert per["accuracy"].tolist() == [0.5, 1.0, 0.5]
    assert per.loc[2, "confused_with"] == "ant" and per.loc[2, "confused_count"] == 2
    weakest = classwise.weakest_classes(per, 10)  # at most half the classes, never one at 100 %
    assert weakest["name"].tolist() == ["wasp"]
    pairs = classwise.confused_pairs(counts, names, 5)
    assert list(zip(pairs["true"], pairs["predicted"], pairs["count"])) == [("wasp", "ant", 2), ("ant", "bee", 1)]
    assert pairs.loc[0, "rate"] == 0.5
    asym = classwise.asymmetric_pairs(counts, names, 5)
    assert list(zip(asym["a"], asym["b"])) == [("wasp", "ant"), ("ant", "bee")]
    assert asym.loc[0, "rate_ab"] == 0.5 and asym.loc[0, "rate_ba"] == 0.0 and asym.loc[0, "gap"] == 0.5


def test_class_names_fall_back_to_labels():
    assert classwise.class_names(None, 3) == ["0", "1", "2"]
    assert classwise.class_names(pd.DataFrame({"label": [1], "name": ["bee"]}), 3) == ["0", "bee", "2"]


def test_figure_runs_are_baseline_first_seed_and_best():
    runs = runs_frame([{"variant": "b", "seed": 1, "run_id": "b1", "best_val_acc": 0.5},
                       {"variant": "b", "seed": 2, "run_id": "b2", "best_val_acc": 0.9},
                       {"variant": "x", "seed": 1, "run_id": "x1", "best_val_acc": 0.7}])
    assert [(role, r["run_id"]) for role, r in figure_runs(runs, "b")] == [("baseline", "b1"), ("best", "b2")]
    runs.loc[1, "best_val_acc"] = 0.1
    runs.loc[2, "best_val_acc"] = 0.2
    assert [(role, r["run_id"]) for role, r in figure_runs(runs, "b")] == [("best-baseline", "b1")]


# ---------------------------------------------------------------- writers


def test_markdown_and_latex_escape_and_align():
    table = Table("t", "A & B | 100%", pd.DataFrame({"name": ["a|b", "x_y"], "acc": [0.1234, float("nan")]}),
                  [Column("name", "Name"), Column("acc", "Acc (%)", "pct")], ["n_1 & more"])
    md = markdown_body(table)
    assert md.splitlines()[:4] == ["| Name | Acc (%) |", "|:---|---:|", "| a\\|b | 12.3 |", "| x_y | — |"]
    tex = to_latex(table)
    assert r"\caption{A \& B | 100\%}" in tex and r"x\_y & --- \\" in tex and r"\begin{tabular}{lr}" in tex
    assert latex_escape("Δ ± 5 → ×") == r"$\Delta$ $\pm$ 5 $\rightarrow$ $\times$"


def test_data_mismatch_warns_when_rows_used_different_data():
    from analysis.tables import data_mismatch

    same = pd.DataFrame({"variant": ["a", "b"], "data_fingerprint": ["f1", "f1"]})
    assert data_mismatch(same) == []
    mixed = pd.DataFrame({"variant": ["a", "b", "c"], "data_fingerprint": ["f1", "f2", None]})
    (warning,) = data_mismatch(mixed)
    assert "different data" in warning and "f1: a" in warning and "f2: b" in warning


def test_an_interval_apart_from_zero_with_a_noise_verdict_is_explained():
    from analysis.tables import holm_explained

    frame = pd.DataFrame({"variant": ["base", "a", "b", "c"], "is_baseline": [True, False, False, False],
                          "delta_ci_low": [np.nan, 0.004, -0.02, 0.01], "delta_ci_high": [np.nan, 0.05, 0.03, 0.09],
                          "p_holm": [np.nan, 0.09, 0.8, 0.01], "verdict": ["baseline", "within noise", "within noise",
                                                                           "better"]})
    [note] = holm_explained(frame)
    assert note.startswith("a: the Δ interval excludes 0 but the verdict is within noise")
    assert "corrected for the 3 rows tested together (Holm)" in note
    assert holm_explained(frame[frame["variant"] != "a"]) == []


def _at(minute: int) -> pd.Timestamp:
    return pd.Timestamp("2026-12-01 10:00", tz="UTC") + pd.Timedelta(minutes=minute)


def test_machine_shared_by_overlap_on_one_host_or_by_load():
    runs = runs_frame([
        {"variant": "base", "seed": 0, "host": "a", "start_time": _at(0), "end_time": _at(10)},
        {"variant": "x", "seed": 0, "host": "a", "start_time": _at(5), "end_time": _at(15)},   # overlaps base
        {"variant": "y", "seed": 0, "host": "b", "start_time": _at(5), "end_time": _at(15)},   # other host
        {"variant": "z", "seed": 0, "host": "a", "start_time": _at(15), "end_time": _at(20)},  # after x: alone
        {"variant": "w", "seed": 0, "host": None, "start_time": _at(0), "end_time": _at(20)},  # unknown host
        {"variant": "v", "seed": 0, "host": "c", "start_time": _at(0), "end_time": _at(9)},
    ])
    loads = pd.DataFrame({"run_id": ["run5", "run5", "run3"], "epoch": [1, 2, 1], "load_per_cpu": [0.9, 2.5, 1.0]})
    assert tables.machine_shared(runs).tolist() == [True, True, False, False, False, False]
    assert tables.machine_shared(runs, loads).tolist() == [True, True, False, False, False, True]


def test_cost_table_says_which_rows_did_not_run_alone():
    runs = runs_frame([
        {"variant": "base", "seed": 0, "best_val_acc": 0.8, "train_time_s": 100.0, "is_baseline": True},
        {"variant": "base", "seed": 1, "best_val_acc": 0.8, "train_time_s": 100.0, "is_baseline": True},
        {"variant": "a", "seed": 0, "best_val_acc": 0.7, "train_time_s": 300.0},
        {"variant": "a", "seed": 1, "best_val_acc": 0.7, "train_time_s": 100.0},
        {"variant": "never", "seed": 0, "status": "NOT RUN"},
    ]).assign(shared_machine=[False, False, True, False, False])
    cost = tables.cost_table(tables.ablation_table(runs, "base", ["base", "a", "never"]))
    assert cost.data.set_index("variant")["ran_alone"].to_dict() == {"base": "yes", "a": "no (1 of 2)", "never": "—"}
    assert any("k of the row's n finished runs trained while another run" in n for n in cost.notes)
    alone = tables.cost_table(tables.ablation_table(runs.assign(shared_machine=False), "base", ["base", "a"]))
    assert not any("Ran alone: no" in n for n in alone.notes)


def test_wilson_interval_matches_hand_computed_values():
    low, high = classwise.wilson_interval(np.array([5, 0, 3, 0]), np.array([10, 3, 3, 0]))
    np.testing.assert_allclose(low[:3], [0.236593, 0.0, 0.438503], atol=1e-6)
    np.testing.assert_allclose(high[:3], [0.763407, 0.561497, 1.0], atol=1e-6)
    assert np.isnan(low[3]) and np.isnan(high[3])  # a class without images has no interval


def test_weakest_classes_order_by_evidence_not_by_accuracy_alone():
    # "few": 0 of 3 right (at most ~56%); "many": 40 of 100 (at most ~50%); "ok": 90 of 100
    counts = np.zeros((4, 4), dtype=int)
    counts[0, 0], counts[0, 1] = 0, 3
    counts[1, 1], counts[1, 0] = 40, 60
    counts[2, 2], counts[2, 0] = 90, 10
    counts[3, 3] = 50
    per = classwise.per_class_accuracy(counts, ["few", "many", "ok", "perfect"])
    assert per.loc[0, "acc_ci_high"] == pytest.approx(0.561497, abs=1e-6)
    assert classwise.weakest_classes(per, 2)["name"].tolist() == ["many", "few"]
    table = tables.weakest_classes_table(classwise.weakest_classes(per, 2), "w", "baseline")
    md = markdown_body(table)
    assert "| 1 | 1 | many | 40.0 | [31, 50] |" in md and "| 2 | 0 | few | 0.0 | [0, 56] |" in md
    assert "upper end of each class's 95% interval" in table.notes[0]
