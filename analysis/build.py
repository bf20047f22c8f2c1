"""One suite's whole report from its ``SuiteData``: figures, tables, ``index.md`` and ``index.html``.

No MLflow here (the caller logs the folder back through ``analysis.store``). Each part is
built from what could be read; what could not is said in the report's notes, never silently
left out.

A rebuild redraws only what changed: each figure and table file is keyed by a hash of what it is
drawn from (``analysis.cache``); a file whose key and bytes on disk are those recorded is kept,
the others are written, and the files the report no longer has are removed.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis import classwise, folds, hierarchy, tables
from analysis.cache import ReportCache, content_key, figure_code, table_code
from analysis.history import Curves, best_epoch_of, by_run, stopped_early
from analysis.html import write_html
from analysis.index import Section, write_index
from analysis.jobs import FigureJob, WorkerPool, render_all
from analysis.output import claim_folder, release_folder
from analysis.render import Table, write_table
from analysis.suite import METRIC_TOLERANCE, SuiteData, figure_runs, run_label

FIGURES, TABLES = "figures", "tables"
# What Figure 1 draws of a history, and of the ablation table what the forest plot draws: a
# figure is given these columns only, so that its cache key changes with them alone (a run's
# epoch times or a table's memory column do not redraw it).
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr")
OVERLAY_COLUMNS = ("epoch", "val_acc")
GRID_COLUMNS = ("epoch", "train_acc", "val_acc")
# Above this many variants, Figure 1 shows every variant as small multiples (pages of
# GRID_PAGE) and draws the full figure (loss, LR drops, seeds) only for the baseline and the best
# variant: 50 full figures cost ~13 CPU-s, the pages ~3 (benchmarks/README.md, section 4).
DETAIL_CURVES_MAX = 12
GRID_PAGE = 20
FOREST_COLUMNS = ("variant", "is_baseline", "delta", "delta_ci_low", "delta_ci_high", "verdict")


@dataclass
class BuildOptions:
    weakest_k: int = 10
    top_pairs: int = 15
    # PDF on request only: saving it too costs ~40% more per figure (benchmarks/README.md).
    figure_formats: tuple[str, ...] = ("png",)
    table_formats: tuple[str, ...] = ("md", "csv", "tex")
    workers: int | None = None  # figure processes; None: one per CPU (serial for a few figures)
    progress: Callable[[str], None] | None = None  # told each step in a line (the CLI: stderr)


@dataclass
class Report:
    folder: Path
    index: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stale_removed: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # figure and table files drawn by this build
    kept: list[str] = field(default_factory=list)  # unchanged since the last build: not redrawn


class _Writer:
    """Writes tables at once and figures through a ``WorkerPool`` as they come (else all at the
    end, ``render_figures``), skipping every file whose content key the cache already holds."""

    def __init__(self, folder: Path, options: BuildOptions, cache: ReportCache, pool: WorkerPool | None):
        self.folder, self.options, self.cache, self.pool = folder, options, cache, pool
        self.files: list[Path] = []
        self.written: list[str] = []
        self.kept: list[str] = []
        self.figure_counts = {"drawn": 0, "kept": 0}
        self.table_counts = {"written": 0, "kept": 0}
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

    def figure(self, stem: str, draw: str, *args) -> list[str]:
        """Have ``figures.<draw>(*args)`` saved as ``figures/<stem>.<ext>`` unless that file is
        current; returns the paths relative to the report folder."""
        key = content_key(figure_code(), draw, args)
        formats = self.options.figure_formats
        paths = [self.folder / FIGURES / f"{stem}.{ext}" for ext in formats]
        missing = tuple(ext for ext, path in zip(formats, paths) if not self._current(path, key))
        if missing:
            job = FigureJob(draw, args, self.folder / FIGURES, stem, missing)
            if self.pool is not None:
                self.pool.submit(job)  # drawn now, in a worker, while the other parts are computed
            else:
                self._jobs.append(job)
        self.figure_counts["drawn" if missing else "kept"] += 1
        self.files += paths
        return [f"{FIGURES}/{p.name}" for p in paths]

    def table(self, table: Table) -> Table:
        key = content_key(table_code(), table.name, table.title, table.data, table.columns, table.notes)
        missing = tuple(ext for ext in self.options.table_formats
                        if not self._current(self.folder / TABLES / f"{table.name}.{ext}", key))
        if missing:
            write_table(table, self.folder / TABLES, missing)
        self.table_counts["written" if missing else "kept"] += 1
        self.files += [self.folder / TABLES / f"{table.name}.{ext}" for ext in self.options.table_formats]
        return table

    def _current(self, path: Path, key: str) -> bool:
        """Is ``path`` already what ``key`` says it should be? Either way it is now expected under ``key``."""
        rel = path.relative_to(self.folder).as_posix()
        self.cache.expect(rel, key)
        current = self.cache.hit(rel, key)
        (self.kept if current else self.written).append(rel)
        return current

    def render_figures(self, say: Callable[[str], None]) -> None:
        if self.figure_counts["drawn"]:
            say(f"drawing {self.figure_counts['drawn']} figure(s); {self.figure_counts['kept']} unchanged, kept")
        elif self.figure_counts["kept"]:
            say(f"all {self.figure_counts['kept']} figures unchanged, kept")
        if self.pool is not None:
            self.pool.wait()
        else:
            render_all(self._jobs, self.options.workers)
        self._jobs = []


def build_report(data: SuiteData, folder: Path, options: BuildOptions | None = None,
                 pool: WorkerPool | None = None) -> Report:
    """The report of ``data`` in ``folder``. ``pool``: workers to draw the figures in (see
    ``analysis.jobs``); without one, they are drawn at the end, forked when there are many."""
    options = options or BuildOptions()
    say = options.progress or (lambda text: None)
    started = time.perf_counter()
    owner = {"experiment": data.experiment, "suite_run_id": data.suite_run_id}
    previous = claim_folder(folder, owner)
    cache = ReportCache.read(folder)
    cache.forget_report()
    out = _Writer(folder, options, cache, pool)
    notes = list(data.notes)
    significance = _significance(data, pool)  # first: the longest single computation of a report
    # The main result first, as in a results section; the ablation table waits for the
    # statistics, which run in the workers while the other sections are laid out.
    others = [
        _curves_section(data, out, notes),
        _progress_section(data, out),
        *_classwise_sections(data, out, notes, options),
        _metrics_section(data, out),
        _taxonomy_section(data, out, notes),
    ]
    sections = [_ablation_section(data, out, significance()), *others]
    tabled = out.table_counts
    say(f"{tabled['written']} table(s) written; {tabled['kept']} unchanged, kept")
    out.render_figures(say)
    when = datetime.now(timezone.utc)
    index = write_index(folder / "index.md", data, sections, notes, when, options.table_formats)
    page = write_html(folder / "index.html", data, sections, notes, when)
    out.files += [index, page]
    # index.md / index.html are rewritten every build (their date); listed so that the CLI sees
    # if one goes missing.
    cache.expect(index.name, "index")
    cache.expect(page.name, "index")
    stale = release_folder(folder, owner, out.files, previous)
    cache.finish()
    if stale:
        say(f"removed {len(stale)} file(s) this report no longer has")
    say(f"built in {time.perf_counter() - started:.1f} s")
    return Report(folder, index, out.files, notes, stale, out.written, out.kept)


# ---------------------------------------------------------------- sections


def curves_of(histories: dict[str, pd.DataFrame], rows: pd.DataFrame) -> list[Curves]:
    """Plot inputs for the runs of ``rows`` that have a history (``history.by_run``; suite order)."""
    curves = []
    for _, r in rows[rows["run_id"].notna()].iterrows():
        h = histories.get(r["run_id"])
        if h is None or h.empty:
            continue
        max_epochs = r["max_epochs"] if pd.notna(r["max_epochs"]) else None
        curves.append(Curves(_columns(h, CURVE_COLUMNS), r["seed"], best_epoch_of(h, r["best_epoch"]),
                             stopped_early(h, max_epochs, r["status"], r.get("stopped_early")), r["status"]))
    return curves


def _columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame.columns]]


def _curves_section(data: SuiteData, out: _Writer, notes: list[str]) -> Section:
    section = Section("Figure 1. Training curves")
    per_variant: dict[str, list[Curves]] = {}
    histories = by_run(data.histories)
    for variant in data.variants:
        curves = curves_of(histories, data.runs[data.runs["variant"] == variant])
        if curves:
            per_variant[variant] = curves
        elif variant in set(data.runs.loc[data.runs["run_id"].notna(), "variant"]):
            notes.append(f"{variant}: no per-epoch history in the store, no training curves.")
    detailed = set(per_variant)
    if len(per_variant) > DETAIL_CURVES_MAX:
        detailed = {data.baseline} | {row["variant"] for role, row in figure_runs(data.runs, data.baseline)}
        _curves_grid(data, out, section, per_variant)
    for variant, curves in per_variant.items():
        if variant not in detailed:
            continue
        main = curves[0]
        tags = [f"seed {main.seed}"] + ([f"{len(curves) - 1} more seed(s) faint"] if len(curves) > 1 else [])
        if main.status != "FINISHED":
            tags.append(main.status.lower())
        role = " (baseline)" if variant == data.baseline else ""
        title = f"Training curves — {variant}{role}, {', '.join(tags)}"
        section.figure(title, out.figure(out.stem(f"fig1_curves_{variant}"), "training_curves", curves, title))
    if per_variant:
        firsts = {v: dataclasses.replace(c[0], history=_columns(c[0].history, OVERLAY_COLUMNS))
                  for v, c in per_variant.items()}
        title = f"Validation accuracy of every variant — {data.experiment}"
        section.figure(title, out.figure(out.stem("fig1_val_acc_all_variants"), "val_acc_overlay", firsts,
                                         data.baseline, title), first=True)
    return section


def _curves_grid(data: SuiteData, out: _Writer, section: Section, per_variant: dict[str, list[Curves]]) -> None:
    """Every variant's first run as small multiples, GRID_PAGE to a figure."""
    firsts = [(v, dataclasses.replace(c[0], history=_columns(c[0].history, GRID_COLUMNS)))
              for v, c in per_variant.items()]
    for start in range(0, len(firsts), GRID_PAGE):
        page = dict(firsts[start:start + GRID_PAGE])
        span = f"variants {start + 1}–{start + len(page)} of {len(firsts)}"
        title = f"Training curves, {span} (accuracy; first seed) — {data.experiment}"
        caption = (f"Training curves, {span}: train and validation accuracy of each variant's first seed. "
                   "Loss, LR drops and other seeds are drawn for the baseline and the best variant below.")
        section.figure(caption, out.figure(out.stem(f"fig1_curves_grid_{start // GRID_PAGE + 1}"), "curves_grid",
                                           page, data.baseline, title))


def _progress_section(data: SuiteData, out: _Writer) -> Section:
    section = Section("Table 2. Training progress")
    section.table(out.table(tables.progress_table(data.runs, data.histories)))
    return section


def _classwise_sections(data: SuiteData, out: _Writer, notes: list[str], options: BuildOptions) -> list[Section]:
    per_class = Section("Figure 2. Per-class accuracy")
    confusion = Section("Figure 3. Confusion matrix")
    tree_order = None  # (class order, rank blocks, top-rank names) for the matrix in tree order
    if data.taxonomy is not None:
        order, blocks = classwise.tree_order(data.taxonomy)
        tree_order = order, blocks, classwise.block_values(data.taxonomy, order, data.taxonomy.ranks[-1])
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
        per_class.figure(title, out.figure(out.stem(f"fig2_per_class_{tag}"), "per_class_bars", accuracy,
                                           options.weakest_k, title))
        weakest = classwise.weakest_classes(accuracy, options.weakest_k)
        per_class.table(out.table(tables.weakest_classes_table(weakest, out.stem(f"table_weakest_classes_{tag}"), who)))

        title = f"Confusion matrix (row-normalised) — {who}"
        rates = classwise.row_normalise(counts)
        confusion.figure(title, out.figure(out.stem(f"fig3_confusion_{tag}"), "confusion_heatmap",
                                           rates, names, title))
        if tree_order is not None and len(data.taxonomy.classes) == n:
            order, blocks, top_names = tree_order
            title = f"Confusion matrix in tree order ({' / '.join(data.taxonomy.ranks[1:])} outlined) — {who}"
            confusion.figure(title, out.figure(out.stem(f"fig3_confusion_tree_{tag}"), "confusion_heatmap",
                                               rates[np.ix_(order, order)], [names[i] for i in order], title,
                                               blocks, top_names))
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
    if data.fold_runs is not None:
        section.table(out.table(tables.fold_table(folds.fold_spread(data.fold_runs, data.variants), data.runs)))
    return section


def _taxonomy_section(data: SuiteData, out: _Writer, notes: list[str]) -> Section:
    section = Section("Table 7. Mistakes in the taxonomy")
    tree = data.taxonomy
    if tree is None:
        return section  # no taxonomy: no section (an empty one is left out of the page)
    scores, skipped = hierarchy.collect(data.runs, data.val_probs, data.predictions, tree)
    summary = hierarchy.summary_frame(scores, tree, data.variants)
    if summary.empty:
        notes.append("A taxonomy is known but no finished run has its softmax (predictions/val_probs.npz): "
                     "Table 7 is empty.")
    section.table(out.table(tables.taxonomy_table(summary, tree, skipped, data.multi_seed)))
    deltas = hierarchy.delta_frame(scores, data.baseline, data.variants)
    if not deltas.empty:
        section.table(out.table(tables.taxonomy_delta_table(deltas, data.baseline)))
    if scores:
        top = len(tree.ranks)  # the root's height
        counts = hierarchy.height_counts(scores, data.variants, top)
        title = f"Where the mistakes meet in the tree — {data.experiment}"
        section.figure(title, out.figure(out.stem("fig7_mistake_heights"), "mistake_height_bars", counts,
                                         list(tree.ranks), title))
    return section


def _significance(data: SuiteData, pool: WorkerPool | None) -> Callable[[], pd.DataFrame | None]:
    """The ablation's tests (bootstrap intervals, exact tests), started in a worker when there is
    one, so that they run while this process builds the other parts; returns what waits for them."""
    args = (data.runs, data.predictions, data.baseline, data.variants)
    if pool is None:
        return lambda: tables.ablation_significance(*args)
    return pool.call(tables.ablation_significance, *args)


def _ablation_section(data: SuiteData, out: _Writer, significance: pd.DataFrame | None) -> Section:
    title = f"Ablation — {data.experiment}"
    section = Section(f"Tables 4–6. {title}")
    runs = data.runs.assign(shared_machine=tables.machine_shared(data.runs, data.histories))
    ablation = tables.ablation_table(runs, data.baseline, data.variants, data.diffs, title, significance)
    if data.fold_runs is not None:
        ablation.notes.insert(0, "Out of fold: 'validation' here means every labelled image (train + val), each "
                                 "scored by the fold run that did not train on it (Table 3b: each fold's own).")
    table = out.table(ablation)
    section.table(table)
    section.table(out.table(tables.cost_table(ablation)))
    if significance is not None and len(significance) > 1:
        paths = out.figure(out.stem("fig_ablation_delta"), "forest_plot", _columns(table.data, FOREST_COLUMNS),
                           data.baseline, f"Δ vs baseline — {data.experiment}")
        section.figure("Δ vs baseline with 95% intervals; colour = verdict after Holm correction", paths)
    return section
