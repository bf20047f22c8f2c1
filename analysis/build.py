"""One suite's whole report from its ``SuiteData``: figures, tables, ``index.md``.

No MLflow here (the caller logs the folder back through ``analysis.store``). Each part is
built from what could be read; what could not is said in the report's notes, never silently
left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis import classwise, figures, tables
from analysis.history import best_epoch_of, stopped_early
from analysis.index import Section, write_index
from analysis.jobs import FigureJob, render_all
from analysis.output import claim_folder, release_folder
from analysis.render import Table, write_table
from analysis.suite import METRIC_TOLERANCE, SuiteData, figure_runs, run_label

FIGURES, TABLES = "figures", "tables"


@dataclass
class BuildOptions:
    weakest_k: int = 10
    top_pairs: int = 15
    figure_formats: tuple[str, ...] = ("png", "pdf")
    table_formats: tuple[str, ...] = ("md", "csv", "tex")
    workers: int | None = None  # figure processes; None: one per CPU (serial for a few figures)


@dataclass
class Report:
    folder: Path
    index: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stale_removed: list[str] = field(default_factory=list)


class _Writer:
    """Writes tables at once and figures at the end (``render_figures``), in parallel processes
    when there are many: a 50-variant suite draws 50+ figures, and matplotlib is CPU-bound."""

    def __init__(self, folder: Path, options: BuildOptions):
        self.folder, self.options = folder, options
        self.files: list[Path] = []
        self._stems: set[str] = set()
        self._jobs: list[FigureJob] = []

    def stem(self, text: str) -> str:
        """A file-name-safe, unique stem (variant names may hold any character)."""
        base = re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"
        stem, i = base, 2
        while stem in self._stems:
            stem, i = f"{base}-{i}", i + 1
        self._stems.add(stem)
        return stem

    def figure(self, stem: str, draw, *args) -> list[str]:
        """Queue ``draw(*args)`` (a ``figures`` function) to be saved as ``figures/<stem>.<ext>``;
        returns the paths relative to the report folder."""
        job = FigureJob(draw, args, self.folder / FIGURES, stem, self.options.figure_formats)
        self._jobs.append(job)
        self.files += job.paths
        return [f"{FIGURES}/{p.name}" for p in job.paths]

    def table(self, table: Table) -> Table:
        self.files += write_table(table, self.folder / TABLES, self.options.table_formats)
        return table

    def render_figures(self) -> None:
        render_all(self._jobs, self.options.workers)
        self._jobs = []


def build_report(data: SuiteData, folder: Path, options: BuildOptions | None = None) -> Report:
    options = options or BuildOptions()
    owner = {"experiment": data.experiment, "suite_run_id": data.suite_run_id}
    previous = claim_folder(folder, owner)
    out = _Writer(folder, options)
    notes = list(data.notes)
    sections = [
        _curves_section(data, out, notes),
        _progress_section(data, out),
        *_classwise_sections(data, out, notes, options),
        _metrics_section(data, out),
        _ablation_section(data, out),
    ]
    out.render_figures()
    index = write_index(folder / "index.md", data, sections, notes, datetime.now(timezone.utc),
                        options.table_formats)
    out.files.append(index)
    stale = release_folder(folder, owner, out.files, previous)
    return Report(folder, index, out.files, notes, stale)


# ---------------------------------------------------------------- sections


def curves_of(data: SuiteData, rows: pd.DataFrame) -> list[figures.Curves]:
    """Plot inputs for the runs of ``rows`` that have a history (suite order)."""
    curves = []
    for _, r in rows[rows["run_id"].notna()].iterrows():
        h = data.history_of(r["run_id"])
        if h.empty:
            continue
        max_epochs = r["max_epochs"] if pd.notna(r["max_epochs"]) else None
        curves.append(figures.Curves(h, r["seed"], best_epoch_of(h, r["best_epoch"]),
                                     stopped_early(h, max_epochs, r["status"], r.get("stopped_early")), r["status"]))
    return curves


def _curves_section(data: SuiteData, out: _Writer, notes: list[str]) -> Section:
    section = Section("Figure 1. Training curves")
    firsts: dict[str, figures.Curves] = {}
    for variant in data.variants:
        curves = curves_of(data, data.runs[data.runs["variant"] == variant])
        if not curves:
            notes.append(f"{variant}: no per-epoch history in the store, no training curves.")
            continue
        firsts[variant] = curves[0]
        main = curves[0]
        tags = [f"seed {main.seed}"] + ([f"{len(curves) - 1} more seed(s) faint"] if len(curves) > 1 else [])
        if main.status != "FINISHED":
            tags.append(main.status.lower())
        role = " (baseline)" if variant == data.baseline else ""
        title = f"Training curves — {variant}{role}, {', '.join(tags)}"
        section.figure(title, out.figure(out.stem(f"fig1_curves_{variant}"), figures.training_curves, curves, title))
    if firsts:
        title = f"Validation accuracy of every variant — {data.experiment}"
        section.figure(title, out.figure(out.stem("fig1_val_acc_all_variants"), figures.val_acc_overlay, firsts,
                                         data.baseline, title), first=True)
    return section


def _progress_section(data: SuiteData, out: _Writer) -> Section:
    section = Section("Table 2. Training progress")
    section.table(out.table(tables.progress_table(data.runs, data.histories)))
    return section


def _classwise_sections(data: SuiteData, out: _Writer, notes: list[str], options: BuildOptions) -> list[Section]:
    per_class = Section("Figure 2. Per-class accuracy")
    confusion = Section("Figure 3. Confusion matrix")
    for role, row in figure_runs(data.runs, data.baseline):
        preds = data.predictions.get(row["run_id"])
        if preds is None:
            continue
        _check_macro_scores(preds, row, notes)
        who = f"{role.replace('-', ' and ')} run {run_label(row)}"
        n = classwise.num_classes_of(preds, data.classes)
        names = classwise.class_names(data.classes, n)
        counts = classwise.confusion_counts(preds, n)
        accuracy = classwise.per_class_accuracy(counts, names)
        tag = f"{role}_{run_label(row)}"

        title = f"Per-class validation accuracy — {who}"
        per_class.figure(title, out.figure(out.stem(f"fig2_per_class_{tag}"), figures.per_class_bars, accuracy,
                                           options.weakest_k, title))
        weakest = classwise.weakest_classes(accuracy, options.weakest_k)
        per_class.table(out.table(tables.weakest_classes_table(weakest, out.stem(f"table_weakest_classes_{tag}"), who)))

        title = f"Confusion matrix (row-normalised) — {who}"
        confusion.figure(title, out.figure(out.stem(f"fig3_confusion_{tag}"), figures.confusion_heatmap,
                                           classwise.row_normalise(counts), names, title))
        pairs = classwise.confused_pairs(counts, names, options.top_pairs)
        confusion.table(out.table(tables.confused_pairs_table(pairs, out.stem(f"table_confused_pairs_{tag}"), who)))
        asym = classwise.asymmetric_pairs(counts, names, options.top_pairs)
        confusion.table(out.table(tables.asymmetric_pairs_table(asym, out.stem(f"table_asymmetric_pairs_{tag}"), who)))
    if not per_class.items:
        notes.append("No predictions artifact could be read: Figures 2 and 3 are missing.")
    return [per_class, confusion]


def _check_macro_scores(preds: pd.DataFrame, row: pd.Series, notes: list[str]) -> None:
    """The figures come from predictions/val.csv; say so if it disagrees with the logged metrics."""
    recomputed = classwise.macro_scores(preds)
    off = [k for k, v in recomputed.items()
           if pd.notna(row.get(k)) and pd.notna(v) and abs(float(row[k]) - v) > METRIC_TOLERANCE]
    if off:
        notes.append(f"{run_label(row)}: predictions/val.csv disagrees with the logged {', '.join(off)} "
                     "(the per-class figures may not be of the best checkpoint).")


def _metrics_section(data: SuiteData, out: _Writer) -> Section:
    section = Section("Table 3. Overall metrics")
    if data.multi_seed:
        section.table(out.table(tables.metrics_summary_table(data.runs, data.variants)))
    section.table(out.table(tables.metrics_table(data.runs)))
    return section


def _ablation_section(data: SuiteData, out: _Writer) -> Section:
    title = f"Ablation — {data.experiment}"
    section = Section(f"Tables 4–6. {title}")
    significance = tables.ablation_significance(data.runs, data.predictions, data.baseline, data.variants)
    table = out.table(tables.ablation_table(data.runs, data.baseline, data.variants, data.diffs, title, significance))
    section.table(table)
    if significance is not None and len(significance) > 1:
        paths = out.figure(out.stem("fig_ablation_delta"), figures.forest_plot, table.data, data.baseline,
                           f"Δ vs baseline — {data.experiment}")
        section.figure("Δ vs baseline with 95% intervals; colour = verdict after Holm correction", paths)
    return section
