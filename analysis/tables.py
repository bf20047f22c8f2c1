"""The report's tables, built from plain DataFrames (``SuiteData.runs``, histories, per-class
frames). Each builder returns a ``render.Table``: raw values for CSV, formatted columns for
Markdown / LaTeX. Accuracies are fractions in the data and percentages (one decimal) on show.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis import stats

from analysis.history import best_epoch_of, by_run, is_continuous_decay, key_epochs
from analysis.render import DASH, Column, Table, signed
from analysis.suite import COST_METRICS, FINISHED, NOT_RUN

METRIC_HEADERS = {
    "best_val_acc": "Top-1 (%)", "best_val_top5_acc": "Top-5 (%)", "val_f1_macro": "Macro F1 (%)",
    "val_precision_macro": "Macro precision (%)", "val_recall_macro": "Macro recall (%)",
}


def _ordered_variants(runs: pd.DataFrame, variants: list[str]) -> list[str]:
    return list(dict.fromkeys([*variants, *runs["variant"]]))


def _scored(group: pd.DataFrame) -> pd.DataFrame:
    """The finished runs of a group that have a final accuracy: what means are taken over."""
    return group[(group["status"] == FINISHED) & group["best_val_acc"].notna()]


def status_text(group: pd.DataFrame) -> str:
    """``finished``, ``failed``, ``not run`` ...; for several seeds ``2/3 finished; 1 failed``."""
    counts = group["status"].value_counts()
    if len(group) == 1 or len(counts) == 1:
        return str(group["status"].iloc[0]).lower()
    others = "; ".join(f"{n} {s.lower()}" for s, n in counts.items() if s != FINISHED)
    return f"{counts.get(FINISHED, 0)}/{len(group)} finished; {others}"


def _item_name(item) -> str:
    """A transform list item is a name or a mapping with a ``name``."""
    if isinstance(item, dict):
        return str(item.get("name", item))
    return str(item)


def describe_change(key: str, base, mine) -> str:
    """One diff entry of suite.json in a few words; lists (transforms) as added / removed items."""
    short = ".".join(key.split(".")[-2:])
    if isinstance(base, list) and isinstance(mine, list):
        b, m = [_item_name(i) for i in base], [_item_name(i) for i in mine]
        parts = [f"+{n}" for n in m if n not in b] + [f"−{n}" for n in b if n not in m]
        if not parts:  # same items: some settings (or the order) differ
            changed = [n for n, item in zip(m, mine) if item not in base]
            parts = [f"changed {', '.join(changed)}" if changed else "reordered"]
        return f"{short}: {' '.join(parts)}"
    show = lambda v: json.dumps(v) if not isinstance(v, str) else v  # noqa: E731
    return f"{short}: {show(base)} → {show(mine)}"


def change_text(diffs: dict[str, dict[str, list]], variant: str, baseline: str) -> str:
    if variant == baseline:
        return "(baseline)"
    diff = diffs.get(variant)
    if diff is None:
        return ""
    return "; ".join(describe_change(k, *pair) for k, pair in diff.items()) or "(same config as baseline)"


# ---------------------------------------------------------------- ablation (Tables 4-6)


SHARED_LOAD_PER_CPU = 1.5  # above it a run's machine was oversubscribed (its own work counts ~1 on a CPU run)


def machine_shared(runs: pd.DataFrame, histories: pd.DataFrame | None = None) -> pd.Series:
    """Per run: did it share its machine while it trained? True when another run of the suite on
    the same host overlapped it in time (tags ``bioclf.host`` and the runs' start / end), or the
    machine's load per CPU passed SHARED_LOAD_PER_CPU at the end of one of its epochs. Runs that
    logged neither (older runs) count as alone: nothing says otherwise."""
    shared = pd.Series(False, index=runs.index)
    if "host" in runs:
        now = pd.Timestamp.now(tz="UTC")
        timed = runs.dropna(subset=["host", "start_time"]).assign(
            end_time=lambda f: f["end_time"].fillna(now))  # a run still going overlaps until now
        for i, r in timed.iterrows():
            others = timed[(timed.index != i) & (timed["host"] == r["host"])
                           & (timed["start_time"] < r["end_time"]) & (timed["end_time"] > r["start_time"])]
            shared[i] = not others.empty
    if histories is not None and "load_per_cpu" in histories and "run_id" in runs:
        peak = histories.groupby("run_id")["load_per_cpu"].max()
        shared |= runs["run_id"].map(peak).fillna(0) > SHARED_LOAD_PER_CPU
    return shared


def ablation_frame(runs: pd.DataFrame, baseline: str, variants: list[str],
                   diffs: dict[str, dict[str, list]] | None = None) -> pd.DataFrame:
    """One row per variant in spec order: status, n, mean (and std) val accuracy over finished
    runs, Δ vs the baseline in percentage points, exact parameter count, training time relative
    to the baseline, epochs run. Rows without a finished run keep their row, with NaN numbers."""
    rows = []
    for variant in _ordered_variants(runs, variants):
        group = runs[runs["variant"] == variant]
        done = _scored(group)
        params = group["num_params"].dropna()
        rows.append({
            "variant": variant, "is_baseline": variant == baseline,
            "change": change_text(diffs or {}, variant, baseline), "status": status_text(group),
            "n_runs": len(group), "n_finished": len(done),
            "val_acc_mean": done["best_val_acc"].mean() if len(done) else np.nan,
            "val_acc_std": done["best_val_acc"].std(ddof=1) if len(done) > 1 else np.nan,
            "num_params": int(params.iloc[0]) if len(params) else pd.NA,
            "train_time_s_mean": done["train_time_s"].mean() if len(done) else np.nan,
            "epochs_run_mean": done["epochs_run"].mean() if len(done) else np.nan,
            "n_shared": int(done["shared_machine"].sum()) if "shared_machine" in done else 0,
            **{f"{k}_mean": done[k].mean() if len(done) and k in done else np.nan for k in COST_METRICS},
        })
    frame = pd.DataFrame(rows)
    frame["num_params"] = frame["num_params"].astype("Int64")
    base = frame[frame["is_baseline"]]
    base_acc = base["val_acc_mean"].iloc[0] if len(base) else np.nan
    base_time = base["train_time_s_mean"].iloc[0] if len(base) else np.nan
    frame["delta_pp"] = (frame["val_acc_mean"] - base_acc) * 100
    frame["time_rel"] = frame["train_time_s_mean"] / base_time
    return frame


def ablation_significance(runs: pd.DataFrame, predictions: dict[str, pd.DataFrame], baseline: str,
                          variants: list[str]) -> pd.DataFrame | None:
    """``stats.compare_to_baseline`` on the finished runs' per-image predictions (same validation
    images, paired): intervals, p-values (Holm), verdicts, power hints. None when the baseline
    has no finished run with predictions, or the runs did not see the same images."""
    series: dict[str, dict[int, pd.Series]] = {}
    for _, r in _scored(runs).iterrows():
        frame = predictions.get(r["run_id"])
        if frame is not None:
            series.setdefault(r["variant"], {})[int(r["seed"])] = stats.correctness_from_predictions(frame)
    if baseline not in series:
        return None
    ordered = {v: series[v] for v in [baseline, *[v for v in variants if v != baseline]] if v in series}
    try:
        correct = stats.align_correctness(ordered)
    except ValueError:
        return None
    return stats.compare_to_baseline(correct, baseline)


def _with_significance(frame: pd.DataFrame, sig: pd.DataFrame) -> pd.DataFrame:
    sig = sig.set_index("variant")
    out = frame.copy()
    for key in ("acc_ci_low", "acc_ci_high", "delta", "delta_ci_low", "delta_ci_high", "p_value", "p_holm",
                "test", "verdict", "images_needed", "seeds_needed"):
        out[key] = out["variant"].map(sig[key]) if key in sig else np.nan
    out["acc_ci"] = [_interval(lo, hi, 100, "{:.1f}") for lo, hi in zip(out["acc_ci_low"], out["acc_ci_high"])]
    out["delta_ci"] = [_interval(lo, hi, 100, "{:+.1f}") for lo, hi in zip(out["delta_ci_low"], out["delta_ci_high"])]
    out["to_resolve"] = [_power_hint(v, i, k) for v, i, k in zip(out["verdict"], out["images_needed"],
                                                                   out["seeds_needed"])]
    out.loc[out["is_baseline"], "verdict"] = "baseline"
    out["verdict"] = out["verdict"].fillna(out["status"].where(out["status"] == "not run", "no finished run"))
    return out


def _interval(low, high, scale: float, fmt: str) -> str:
    if pd.isna(low) or pd.isna(high):
        return DASH
    return f"[{signed(low * scale, fmt)}, {signed(high * scale, fmt)}]"


def _power_hint(verdict, images, seeds) -> str:
    if verdict != "within noise":
        return ""
    parts = []
    if pd.notna(images):
        parts.append("never (Δ = 0)" if np.isinf(images) else f"≈{int(images):,} val images")
    if pd.notna(seeds) and not np.isinf(seeds):
        parts.append(f"≈{int(seeds)} seeds")
    return " or ".join(parts)


def ablation_table(runs: pd.DataFrame, baseline: str, variants: list[str],
                   diffs: dict[str, dict[str, list]] | None = None, title: str = "Ablation",
                   significance: pd.DataFrame | None = None) -> Table:
    frame = ablation_frame(runs, baseline, variants, diffs)
    if significance is not None:
        frame = _with_significance(frame, significance)
    multi = bool((frame["n_runs"] > 1).any())
    columns = [Column("variant", "Variant"), Column("change", "Change vs baseline"), Column("status", "Status")]
    if multi:
        columns.append(Column("n_finished", "n", "int"))
    columns += [
        Column("val_acc_mean", "Val acc (%)", "pct", std_key="val_acc_std" if multi else None),
        *([Column("acc_ci", "95% CI")] if significance is not None else []),
        Column("delta_pp", "Δ vs baseline (pp)", "pp", blank_when="is_baseline"),
        *([Column("delta_ci", "Δ 95% CI (pp)"), Column("p_holm", "p (Holm)", "p"), Column("verdict", "Verdict"),
           Column("to_resolve", "Detectable with")] if significance is not None else []),
    ]
    notes = [f"Baseline: {baseline}. Val acc: best checkpoint's top-1 on the validation split"
             + (", mean ± std over the finished seeds (n)." if multi else ".")
             + " Δ in percentage points; parameter counts exact in the CSV."]
    if not frame["is_baseline"].any() or frame.loc[frame["is_baseline"], "n_finished"].eq(0).all():
        notes.append(f"The baseline ({baseline}) has no finished run: Δ and relative time cannot be computed.")
    if significance is not None:
        notes.append(stats.table_note(significance))
        notes.append("Verdict at α = 0.05 after Holm–Bonferroni correction over the table's rows; "
                     "\"Detectable with\": validation images (or seeds) at which a Δ of this size would reach "
                     "80% power. Formulas: docs/statistics.md.")
        notes += holm_explained(frame)
    else:
        notes.append("No per-image predictions for the baseline: intervals and tests left out.")
    notes += data_mismatch(runs)
    notes += run_problems(runs)
    return Table("ablation", title, frame, columns, notes)


def cost_table(ablation: Table) -> Table:
    """The ablation rows' costs (size, time, memory, model file, latency): a table of their own,
    so the main one stays readable. Same rows and raw values as the ablation table; "Ran alone"
    says which rows' costs were measured while their machine was shared (``machine_shared``)."""
    frame = ablation.data.copy()
    shared = frame["n_shared"] if "n_shared" in frame else pd.Series(0, index=frame.index)
    frame["ran_alone"] = [DASH if n == 0 else "yes" if k == 0 else f"no ({k} of {n})"
                          for n, k in zip(frame["n_finished"], shared)]
    columns = [
        Column("variant", "Variant"),
        Column("num_params", "Params (M)", "millions"),
        Column("time_rel", "Train time (× baseline)", "ratio"),
        Column("epochs_run_mean", "Epochs", "epochs"),
        Column("peak_rss_mb_mean", "Peak RSS (MB)", "1dp"),
        *([Column("peak_gpu_mem_mb_mean", "Peak GPU mem (MB)", "1dp")]
          if frame["peak_gpu_mem_mb_mean"].notna().any() else []),
        Column("checkpoint_mb_mean", "Checkpoint (MB)", "1dp"),
        Column("inference_ms_per_image_mean", "Latency (ms/img, batch 16)", "1dp"),
        Column("ran_alone", "Ran alone"),
    ]
    notes = ["Means over the finished seeds. Train time, memory and latency are measured on the machine "
             "that trained each run: compare them only between runs that ran alone on the same kind of machine."]
    if (shared > 0).any():
        notes.append(f"\"Ran alone: no (k of n)\": k of the row's n finished runs trained while another run of this "
                     f"suite ran on the same host, or while the machine's load per CPU passed "
                     f"{SHARED_LOAD_PER_CPU:g}: their time and latency are slowed by what else ran, not by the "
                     "change the row makes. Rerun those rows alone (one runner, no other jobs) to compare costs.")
    cols = ["variant", "num_params", "time_rel", "epochs_run_mean", "train_time_s_mean", "peak_rss_mb_mean",
            "peak_gpu_mem_mb_mean", "checkpoint_mb_mean", "inference_ms_per_image_mean", "n_shared", "ran_alone"]
    return Table("ablation_cost", "Cost of each row", frame[[c for c in cols if c in frame]], columns, notes)


def holm_explained(frame: pd.DataFrame) -> list[str]:
    """A note for rows whose Δ interval excludes 0 while the verdict says "within noise": the
    interval is for that row alone, the verdict is corrected for every row of the table."""
    if not {"delta_ci_low", "delta_ci_high", "verdict"} <= set(frame.columns):
        return []
    apart = frame[((frame["delta_ci_low"] > 0) | (frame["delta_ci_high"] < 0)) & (frame["verdict"] == stats.NOISE)]
    if apart.empty:
        return []
    tested = int((~frame["is_baseline"] & frame["p_holm"].notna()).sum())
    return [f"{', '.join(map(str, apart['variant']))}: the Δ interval excludes 0 but the verdict is within noise. "
            f"The interval is that row's alone (95%); the verdict is corrected for the {tested} rows tested "
            "together (Holm), as a table of several comparisons must be, so it needs stronger evidence."]


def data_mismatch(runs: pd.DataFrame) -> list[str]:
    """A warning when the rows of one table were trained on different data (fingerprints differ)."""
    if "data_fingerprint" not in runs:
        return []
    prints = runs.dropna(subset=["data_fingerprint"]).groupby("data_fingerprint")["variant"].apply(
        lambda v: sorted(set(v)))
    if len(prints) <= 1:
        return []
    groups = "; ".join(f"{fp[:12]}: {', '.join(vs)}" for fp, vs in prints.items())
    return [f"WARNING: the rows of this table were trained on different data (dataset fingerprints {groups})."]


def run_problems(runs: pd.DataFrame) -> list[str]:
    """One line per row that did not finish: never drop a failed or missing run silently."""
    lines = []
    for _, r in runs[runs["status"] != FINISHED].iterrows():
        who = f"{r['variant']} seed {r['seed']}" if pd.notna(r["seed"]) else r["variant"]
        if r["status"] == NOT_RUN:
            lines.append(f"{who}: not run (no run with config hash {r['config_hash']} in the experiment).")
        else:
            why = f": {r['error']}" if isinstance(r.get("error"), str) and r["error"] else ""
            lines.append(f"{who}: {str(r['status']).lower()} (run {r['run_id']}){why}.")
    return lines


# ---------------------------------------------------------------- overall metrics (Table 3)


def metrics_table(runs: pd.DataFrame) -> Table:
    """Per run: top-1, top-5, macro F1 / precision / recall of the best checkpoint."""
    keep = ["variant", "seed", "status", "run_id", *METRIC_HEADERS, "best_epoch", "epochs_run"]
    frame = runs[keep].reset_index(drop=True)
    frame = frame.assign(status=frame["status"].str.lower())
    columns = [Column("variant", "Variant"), Column("seed", "Seed", "int"), Column("status", "Status")]
    columns += [Column(k, h, "pct") for k, h in METRIC_HEADERS.items()]
    columns.append(Column("best_epoch", "Best epoch", "epochs"))
    notes = ["Metrics of each run's best checkpoint on the validation split (macro: over the classes present)."]
    return Table("table3_overall_metrics", "Table 3. Overall metrics per run", frame, columns, notes)


def metrics_summary_table(runs: pd.DataFrame, variants: list[str]) -> Table:
    """Per variant: mean ± std of each metric over its finished seeds, with n."""
    rows = []
    for variant in _ordered_variants(runs, variants):
        done = _scored(runs[runs["variant"] == variant])
        row = {"variant": variant, "n": len(done)}
        for key in METRIC_HEADERS:
            row[f"{key}_mean"] = done[key].mean() if len(done) else np.nan
            row[f"{key}_std"] = done[key].std(ddof=1) if len(done) > 1 else np.nan
        rows.append(row)
    columns = [Column("variant", "Variant"), Column("n", "n", "int")]
    columns += [Column(f"{k}_mean", h, "pct", std_key=f"{k}_std") for k, h in METRIC_HEADERS.items()]
    return Table("table3_overall_metrics_mean", "Table 3b. Overall metrics per variant (mean ± std over seeds)",
                 pd.DataFrame(rows), columns, ["Finished runs only; std with n − 1 degrees of freedom."])


# ---------------------------------------------------------------- training progress (Table 2)


def fold_table(spread: pd.DataFrame, runs: pd.DataFrame) -> Table:
    """Table 3b: each fold run's accuracy on its own fold, their mean ± sd and range, next to the
    out-of-fold accuracy of all the folds' predictions (the number the ablation table uses)."""
    frame = spread.copy()
    if not frame.empty:
        oof = runs.set_index(["variant", "seed"])["best_val_acc"]
        frame["oof_acc"] = [oof.get((v, s), np.nan) for v, s in zip(frame["variant"], frame["seed"])]
    columns = [Column("variant", "Variant"), Column("seed", "Seed", "int"), Column("n_folds", "Folds", "int"),
               Column("fold_accs", "Accuracy per fold (%)"), Column("fold_mean", "Mean (%)", "pct", std_key="fold_std"),
               Column("fold_min", "Min (%)", "pct"), Column("fold_max", "Max (%)", "pct"),
               Column("oof_acc", "Out-of-fold (%)", "pct")]
    if frame.empty:
        frame = pd.DataFrame(columns=[c.key for c in columns])
    notes = ["Each fold run scored on the fold it did not train on. The spread between folds is what one "
             "train/val split could have shown; the out-of-fold accuracy pools every labelled image once."]
    return Table("table3b_folds", "Table 3b. Folds: accuracy of each held-out fold", frame, columns, notes)


def progress_frame(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Key epochs of every run with a history, in suite order (see ``history.key_epochs``)."""
    parts = []
    histories_of = by_run(histories)
    for _, r in runs[runs["run_id"].notna()].iterrows():
        h = histories_of.get(r["run_id"])
        if h is None or h.empty:
            continue
        best = best_epoch_of(h, r["best_epoch"])
        rows = key_epochs(h, best, r["max_epochs"] if pd.notna(r["max_epochs"]) else None, r["status"],
                          r.get("stopped_early"))
        parts.append(rows.assign(variant=r["variant"], seed=r["seed"]))
    cols = ["variant", "seed", "run_id", "epoch", "event", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    if not parts:
        return pd.DataFrame(columns=cols)
    frame = pd.concat(parts, ignore_index=True)
    return frame.reindex(columns=cols)


def progress_table(runs: pd.DataFrame, histories: pd.DataFrame) -> Table:
    frame = progress_frame(runs, histories)
    columns = [Column("variant", "Variant"), Column("seed", "Seed", "int"), Column("epoch", "Epoch", "int"),
               Column("event", "Event"), Column("train_loss", "Train loss", "loss"),
               Column("train_acc", "Train acc (%)", "pct"), Column("val_loss", "Val loss", "loss"),
               Column("val_acc", "Val acc (%)", "pct"), Column("lr", "LR", "lr")]
    notes = ["LR: the learning rate the epoch trained with; a drop is listed at the first epoch at the lower rate."]
    continuous = [f"{r['variant']} seed {r['seed']}" for _, r in runs[runs["run_id"].notna()].iterrows()
                  if is_continuous_decay(histories[histories["run_id"] == r["run_id"]])]
    if continuous:
        notes.append(f"LR decays every epoch (no discrete drops listed) for: {', '.join(continuous)}.")
    without = runs[runs["run_id"].notna() & ~runs["run_id"].isin(set(histories["run_id"]))]
    if len(without):
        notes.append("No per-epoch history for: " + ", ".join(f"{v} seed {s}" for v, s in
                                                              zip(without["variant"], without["seed"])) + ".")
    return Table("table2_training_progress", "Table 2. Training progress: key epochs of each run", frame, columns,
                 notes)


# ---------------------------------------------------------------- per-class (Figures 2-3)


def weakest_classes_table(weakest: pd.DataFrame, name: str, who: str) -> Table:
    frame = weakest.reset_index(drop=True).assign(rank=lambda f: np.arange(1, len(f) + 1))
    frame["acc_ci"] = [_interval(lo, hi, 100, "{:.0f}") for lo, hi in zip(frame["acc_ci_low"], frame["acc_ci_high"])]
    columns = [Column("rank", "#", "int"), Column("label", "Label", "int"), Column("name", "Class"),
               Column("accuracy", "Accuracy (%)", "pct"), Column("acc_ci", "95% CI (%)"),
               Column("correct", "Correct", "int"), Column("images", "Images", "int"),
               Column("confused_with", "Most often predicted as"), Column("confused_count", "Times", "int")]
    notes = ["Ordered by the upper end of each class's 95% interval (Wilson), not by its accuracy alone: "
             "with a few images a low accuracy is weak evidence (0 of 3 right is still consistent with 56%)."]
    return Table(name, f"Weakest {len(frame)} classes, {who}", frame, columns, notes)


def confused_pairs_table(pairs: pd.DataFrame, name: str, who: str) -> Table:
    columns = [Column("true", "True class"), Column("predicted", "Predicted as"),
               Column("rate", "Rate (% of true class)", "pct"), Column("count", "Count", "int"),
               Column("true_images", "Images of true class", "int")]
    return Table(name, f"Most confused pairs (true → predicted), {who}", pairs, columns)


def asymmetric_pairs_table(pairs: pd.DataFrame, name: str, who: str) -> Table:
    columns = [Column("a", "Class A"), Column("b", "Class B"),
               Column("rate_ab", "A → B (%)", "pct"), Column("count_ab", "A → B count", "int"),
               Column("rate_ba", "B → A (%)", "pct"), Column("count_ba", "B → A count", "int"),
               Column("gap", "Gap (pp)", "pct")]
    notes = ["Pairs confused mostly one way: A's images taken for B more often than B's for A; largest gap first."]
    return Table(name, f"Asymmetric confusions, {who}", pairs, columns, notes)


# ---------------------------------------------------------------- mistakes in the taxonomy (Table 7)


def taxonomy_table(summary: pd.DataFrame, taxonomy, skipped: list[str], multi_seed: bool) -> Table:
    """Table 7: per variant, ranked as trained and by CRM, top-1 at every rank, mistake
    severity, hierarchical distance @1 / @k (``analysis.hierarchy.summary_frame``)."""
    from analysis.hierarchy import K

    columns = [Column("variant", "Variant"), Column("ranking", "Ranking")]
    if multi_seed:
        columns.append(Column("n_seeds", "Seeds", "int"))
    columns += [Column(f"{rank}_acc", f"{rank} acc (%)", "pct") for rank in taxonomy.ranks]
    columns += [Column("mistake_severity", "Severity", "2dp"), Column("hdist@1", "hdist@1", "2dp"),
                Column(f"hdist@{K}", f"hdist@{K}", "2dp"), Column("mistakes", "Mistakes", "int")]
    frame = summary if not summary.empty else pd.DataFrame(columns=[c.key for c in columns])
    ranks = " → ".join(taxonomy.ranks)
    notes = [f"Tree: {ranks} (heights 0 to {len(taxonomy.ranks) - 1}, the root {len(taxonomy.ranks)}). "
             "Severity: mean height of the lowest common ancestor of the true and the predicted class over the "
             f"mistakes; hdist@k: over all images, mean height between the true class and each of the top k "
             "(Bertinetto et al., CVPR 2020). CRM: the same softmax re-ranked by expected tree cost, no "
             "retraining (Karthik et al., ICLR 2021). Lower is better for severity and hdist"
             + ("; values are means over seeds, mistakes summed" if multi_seed else "") + ". Formulas: "
             "docs/taxonomy.md."]
    if skipped:
        notes.append(f"Left out (their softmax does not have the taxonomy's {len(taxonomy.classes)} classes, or "
                     f"they scored other images): {', '.join(skipped)}.")
    return Table("table7_taxonomy", "Table 7. Mistakes in the taxonomy", frame, columns, notes)


def taxonomy_delta_table(deltas: pd.DataFrame, baseline: str) -> Table:
    """Table 7b: each variant (as trained and with CRM) minus the baseline as trained, per image
    on the same images, with paired 95% intervals and Holm-corrected verdicts per measure."""
    from analysis.hierarchy import MEASURES

    frame = deltas.copy()
    labels = {"acc": "Δ top-1 (pp)", "mistake_severity": "Δ severity", "hdist@1": "Δ hdist@1"}
    columns = [Column("variant", "Variant"), Column("ranking", "Ranking")]
    for key, _ in MEASURES:
        scale, fmt = (100, "{:+.1f}") if key == "acc" else (1, "{:+.2f}")
        cells = []
        for _, r in frame.iterrows():
            if pd.isna(r.get(f"{key}_delta")):
                cells.append(DASH)
                continue
            verdict = r[f"{key}_verdict"]
            mark = "" if verdict in (stats.NOISE, stats.NA) else f" {verdict}"
            cells.append(f"{signed(r[f'{key}_delta'] * scale, fmt)} "
                         f"{_interval(r[f'{key}_low'], r[f'{key}_high'], scale, fmt)}{mark}")
        frame[f"{key}_cell"] = cells
        columns.append(Column(f"{key}_cell", labels.get(key, f"Δ {key}")))
    if frame.empty:
        frame = pd.DataFrame(columns=[c.key for c in columns])
    notes = [f"Each row minus {baseline} as trained, on the same validation images and seeds: Δ with its paired "
             "95% bootstrap interval; 'better' or 'worse' when the Holm-corrected p-value (per measure, over the "
             "rows of this table) is below 0.05, else within noise. Lower severity and hdist are better. "
             "Tests: exact sign-flip on per-image scores (top-1, hdist); paired bootstrap of the ratio for "
             "severity (a mean over each model's own mistakes); with 3 seeds or more, also a paired t-test across "
             "seeds, the larger p-value counting (as in the ablation table). Details: docs/taxonomy.md."]
    return Table("table7b_taxonomy_delta", f"Table 7b. Mistakes in the taxonomy, Δ vs {baseline}", frame, columns,
                 notes)
