"""The report's figures from plain DataFrames / arrays: matplotlib (object API, Agg, never
pyplot's global state or ``show``) in seaborn's whitegrid style, frozen here (``REPORT_RC``) so
that drawing never imports seaborn. Every figure has a title, axis labels with units, and stays
readable at 100 classes (thinned ticks, no per-cell numbers).

Margins are set from measured text (``analysis.layout``), not by constrained layout, whose extra
drawing pass cost a third of each figure.
"""

from __future__ import annotations

import colorsys
import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.lines
import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize, PowerNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from analysis import layout
from analysis.classwise import Block, weakest_classes
from analysis.history import Curves, lr_drops  # noqa: F401 - Curves: figures.Curves as before

ANNOTATE_MAX_CLASSES = 20  # confusion cells carry their % up to this many classes
TICKS_ALL_MAX_CLASSES = 30  # every class gets a tick label up to this many classes
TRAIN, VAL = "#1f77b4", "#ff7f0e"
NUMBER_TICK = "0.000"  # the widest numeric tick label these figures' locators produce


# seaborn 0.13's ``{**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=1.0)}``,
# written out: importing seaborn costs ~1 CPU-second more than the rest of this module (it imports
# scipy.stats), paid by every figure worker of every report. tests/test_report_figures.py checks
# this against seaborn when it is installed. Left out: seaborn's "image.cmap": "rocket", a colormap
# that exists only once seaborn has registered it (every image here names its colormap).
SEABORN_WHITEGRID_NOTEBOOK = {
    "figure.facecolor": "white",
    "axes.labelcolor": ".15",
    "xtick.direction": "out",
    "ytick.direction": "out",
    "xtick.color": ".15",
    "ytick.color": ".15",
    "axes.axisbelow": True,
    "grid.linestyle": "-",
    "text.color": ".15",
    "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "lines.solid_capstyle": "round",
    "patch.edgecolor": "w",
    "patch.force_edgecolor": True,
    "xtick.top": False,
    "ytick.right": False,
    "axes.grid": True,
    "axes.facecolor": "white",
    "axes.edgecolor": ".8",
    "grid.color": ".8",
    "axes.spines.left": True,
    "axes.spines.bottom": True,
    "axes.spines.right": True,
    "axes.spines.top": True,
    "xtick.bottom": False,
    "ytick.left": False,
    "axes.linewidth": 1.25,
    "grid.linewidth": 1,
    "lines.linewidth": 1.5,
    "lines.markersize": 6,
    "patch.linewidth": 1,
    "xtick.major.width": 1.25,
    "ytick.major.width": 1.25,
    "xtick.minor.width": 1,
    "ytick.minor.width": 1,
    "xtick.major.size": 6,
    "ytick.major.size": 6,
    "xtick.minor.size": 4,
    "ytick.minor.size": 4,
    "font.size": 12.0,
    "axes.labelsize": 12.0,
    "axes.titlesize": 12.0,
    "xtick.labelsize": 11.0,
    "ytick.labelsize": 11.0,
    "legend.fontsize": 11.0,
    "legend.title_fontsize": 12.0,
}
REPORT_RC = {**SEABORN_WHITEGRID_NOTEBOOK, "axes.titleweight": "bold", "figure.titlesize": 14,
             "figure.titleweight": "bold", "legend.fontsize": 9, "legend.framealpha": 0.9}


@contextmanager
def report_style():
    """seaborn's whitegrid look at a size readable without zooming, for the figures built inside."""
    with matplotlib.rc_context(REPORT_RC):
        yield


def variant_colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct line colours: matplotlib's tab10 (= seaborn's "tab10") up to 10; beyond,
    evenly spaced hues. seaborn drew those from its "husl" palette (even hues at equal perceived
    lightness), which cannot be had without importing seaborn; here the hues are spaced in HLS,
    with the lightness alternating between neighbours so that close hues still tell apart."""
    if n <= 10:
        return [tuple(c) for c in matplotlib.colormaps["tab10"].colors[:max(n, 1)]]
    return [colorsys.hls_to_rgb((0.01 + i / n) % 1.0, 0.42 if i % 2 else 0.55, 0.75) for i in range(n)]


def save_figure(fig: Figure, folder: Path, stem: str, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ext in enumerate(formats):
        path = folder / f"{stem}.{ext}"
        fig.savefig(path, metadata={"CreationDate": None} if ext == "pdf" else None)
        if i == 0:  # the layout is solved by the first save; the other formats reuse it
            fig.set_layout_engine("none")
        paths.append(path)
    return paths


# ---------------------------------------------------------------- Figure 1: training curves


def _plot_metric(ax, h: pd.DataFrame, key: str, color: str, label: str | None, scale: float, faint: bool) -> None:
    if key not in h or h[key].dropna().empty:
        return
    ax.plot(h["epoch"], h[key] * scale, color=color, label=label, lw=1.0 if faint else 2.0,
            alpha=0.35 if faint else 1.0, marker=None if faint or len(h) > 30 else "o", ms=3.5)


def _mark_events(ax, main: Curves, key: str | None, scale: float) -> None:
    """LR drops (grey dotted), best epoch (star on the val curve), early stop (red dashed)."""
    drops = lr_drops(main.history)
    # One legend entry for all drops, with the new rates: text on the plot would fight the legend.
    label = "LR drop: " + ", ".join(f"ep {d.epoch} → {d.after:.0e}" for d in drops[:4]) + (" …" if len(drops) > 4 else "")
    for i, drop in enumerate(drops):
        ax.axvline(drop.epoch, color="0.45", ls=":", lw=1.3, label=label if i == 0 else None)
    h = main.history
    if key and main.best_epoch is not None and key in h and (h["epoch"] == main.best_epoch).any():
        y = h.loc[h["epoch"] == main.best_epoch, key].iloc[0] * scale
        ax.plot([main.best_epoch], [y], marker="*", ms=15, color="#2ca02c", mec="black", mew=0.6, ls="none",
                label=f"best epoch ({main.best_epoch})", zorder=5)
    if main.stopped_early and not h.empty:
        ax.axvline(int(h["epoch"].max()), color="#d62728", ls="--", lw=1.5,
                   label=f"early stop (epoch {int(h['epoch'].max())})")


def training_curves(runs: list[Curves], title: str) -> Figure:
    """Loss and accuracy, train vs val, of one variant. The first run carries the marks; other
    seeds of the variant are drawn faint behind it."""
    with report_style():
        fig = Figure(figsize=(12, 4.6))
        ax_loss, ax_acc = fig.subplots(1, 2)
        for i, run in enumerate(runs):
            faint = i > 0
            train, val = ("train", "validation") if not faint else \
                ("other seeds: train", "other seeds: validation") if i == 1 else (None, None)
            _plot_metric(ax_loss, run.history, "train_loss", TRAIN, train, 1, faint)
            _plot_metric(ax_loss, run.history, "val_loss", VAL, val, 1, faint)
            _plot_metric(ax_acc, run.history, "train_acc", TRAIN, train, 100, faint)
            _plot_metric(ax_acc, run.history, "val_acc", VAL, val, 100, faint)
        if runs:
            _mark_events(ax_loss, runs[0], "val_loss", 1)
            _mark_events(ax_acc, runs[0], "val_acc", 100)
        ax_loss.set(title="Loss", xlabel="Epoch", ylabel="Loss (cross-entropy)")
        ax_acc.set(title="Accuracy", xlabel="Epoch", ylabel="Accuracy (%)")
        ax_acc.set_ylim(bottom=max(0.0, ax_acc.get_ylim()[0]), top=min(101.0, ax_acc.get_ylim()[1] + 2))
        for ax in (ax_loss, ax_acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # One legend under both panels: inside either it would hide the curves it explains.
        handles, labels = ax_acc.get_legend_handles_labels()
        ncol = min(4, len(labels))
        legend_h = layout.legend_size(labels, ncol, size=10)[1] if labels else 0.0
        if labels:
            fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=10,
                       bbox_to_anchor=(0.5, layout.PAD / fig.get_figheight()), borderaxespad=0)
        beside = layout.axis_label() + layout.ticks_width([NUMBER_TICK])
        layout.set_margins(fig, left=layout.PAD + beside, right=0.25, wspace=beside + 0.3,
                           top=layout.add_suptitle(fig, title) + layout.axes_title(),
                           bottom=2 * layout.PAD + legend_h + layout.axis_label() + layout.ticks_height())
    return fig


def val_acc_overlay(curves: dict[str, Curves], baseline: str, title: str) -> Figure:
    """Validation accuracy per epoch of every variant on one axis; baseline in black."""
    with report_style():
        fig = Figure(figsize=(11, 5.5))
        ax = fig.subplots()
        others = [v for v in curves if v != baseline]
        palette = variant_colors(len(others))
        colors = {v: palette[i] for i, v in enumerate(others)}
        for variant, run in curves.items():
            h = run.history
            if "val_acc" not in h or h["val_acc"].dropna().empty:
                continue
            is_base = variant == baseline
            color = "black" if is_base else colors[variant]
            label = f"{variant} (baseline)" if is_base else variant
            ax.plot(h["epoch"], h["val_acc"] * 100, color=color, lw=2.6 if is_base else 1.6, label=label,
                    zorder=4 if is_base else 3)
            if run.best_epoch is not None and (h["epoch"] == run.best_epoch).any():
                y = h.loc[h["epoch"] == run.best_epoch, "val_acc"].iloc[0] * 100
                ax.plot([run.best_epoch], [y], marker="*", ms=11, color=color, mec="black", mew=0.5, zorder=5)
        ax.set(title=title, xlabel="Epoch", ylabel="Validation accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ncol = 1 if len(curves) <= 12 else 2
        legend_title = "variant (★ best epoch)"
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=ncol, title=legend_title,
                  borderaxespad=layout.PAD * 72 / layout.font_size("legend.fontsize"))
        _, labels = ax.get_legend_handles_labels()
        legend_w = layout.legend_size(labels, ncol, title=legend_title)[0]
        # The plot keeps its width; the figure grows with the legend (long variant names).
        left = layout.PAD + layout.axis_label() + layout.ticks_width(["100"])
        fig.set_figwidth(left + 8.0 + 2 * layout.PAD + legend_w + layout.PAD)
        layout.set_margins(fig, left=left, right=2 * layout.PAD + legend_w + layout.PAD,
                           top=layout.PAD + layout.axes_title(),
                           bottom=layout.PAD + layout.axis_label() + layout.ticks_height())
    return fig


GRID_COLUMNS = 4
GRID_PANEL = (3.0, 1.9)  # inches of one small multiple
PANEL_TITLE_SIZE = 10.0
PANEL_TITLE_CHARS = 34  # longer variant names are cut with "…": a panel title must not reach its neighbour's


def _panel_title(variant: str, baseline: str) -> str:
    text = variant if len(variant) <= PANEL_TITLE_CHARS else variant[:PANEL_TITLE_CHARS - 1] + "…"
    return f"{text} (baseline)" if variant == baseline and len(text) < PANEL_TITLE_CHARS - 8 else text


def curves_grid(curves: dict[str, Curves], baseline: str, title: str) -> Figure:
    """Train and validation accuracy of many variants, one small panel each on shared axes (small
    multiples): a page of 20 costs about what three single-variant figures do, and the variants
    compare at a glance. Marks: the best epoch (star) and an early stop (red dashed)."""
    n = max(1, len(curves))
    cols = min(GRID_COLUMNS, n)
    rows = math.ceil(n / cols)
    with report_style():
        legend_labels = ["train", "validation", "best epoch", "early stop"]
        legend_h = layout.legend_size(legend_labels, len(legend_labels))[1]
        left = layout.PAD + layout.axis_label() + layout.ticks_width(["100"])
        panel_title = layout.line_height(PANEL_TITLE_SIZE) + matplotlib.rcParams["axes.titlepad"] / 72
        below = layout.ticks_height()  # tick labels under a panel that has no panel under it
        bottom = 2 * layout.PAD + legend_h + layout.axis_label() + below
        top = layout.suptitle(title) + panel_title
        wspace, hspace = 0.2, panel_title + below + 0.05
        fig = Figure(figsize=(left + cols * GRID_PANEL[0] + (cols - 1) * wspace + 0.25,
                              bottom + rows * GRID_PANEL[1] + (rows - 1) * hspace + top))
        axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
        for ax, (variant, run) in zip(axes.flat, curves.items()):
            h = run.history
            _plot_metric(ax, h, "train_acc", TRAIN, "train", 100, faint=False)
            _plot_metric(ax, h, "val_acc", VAL, "validation", 100, faint=False)
            for line in ax.get_lines():
                line.set(linewidth=1.4, marker="")
            if run.best_epoch is not None and "val_acc" in h and (h["epoch"] == run.best_epoch).any():
                y = h.loc[h["epoch"] == run.best_epoch, "val_acc"].iloc[0] * 100
                ax.plot([run.best_epoch], [y], marker="*", ms=10, color="#2ca02c", mec="black", mew=0.5,
                        ls="none", label="best epoch", zorder=5)
            if run.stopped_early and not h.empty:
                ax.axvline(int(h["epoch"].max()), color="#d62728", ls="--", lw=1.2, label="early stop")
            ax.set_title(_panel_title(variant, baseline), fontsize=PANEL_TITLE_SIZE,
                         fontweight="bold" if variant == baseline else "normal")
        for i, ax in enumerate(axes.flat):
            r, c = divmod(i, cols)
            if i >= len(curves):
                ax.set_visible(False)
                axes[r - 1, c].xaxis.set_tick_params(labelbottom=True)  # the panel above ends its column
                axes[r - 1, c].set_xlabel("Epoch")
            elif r == rows - 1:
                ax.set_xlabel("Epoch")
            if c == 0:
                ax.set_ylabel("Accuracy (%)")
        axes[0, 0].set_ylim(0, 101)
        axes[0, 0].xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes[0, 0].yaxis.set_major_locator(MaxNLocator(nbins=4))
        handles = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
                       bbox_to_anchor=(0.5, layout.PAD / fig.get_figheight()), borderaxespad=0)
        layout.add_suptitle(fig, title)
        layout.set_margins(fig, left=left, right=0.25, top=top, bottom=bottom, wspace=wspace, hspace=hspace)
    return fig


# ---------------------------------------------------------------- Figure 2: per-class accuracy


def _bars(ax, frame: pd.DataFrame, weak: set[int], title: str, mean: float) -> None:
    n = len(frame)
    x = np.arange(n)
    acc = frame["accuracy"].fillna(0).to_numpy() * 100
    colors = ["#d62728" if label in weak else "#4c72b0" for label in frame["label"]]
    half = (0.85 if n > TICKS_ALL_MAX_CLASSES else 0.7) / 2
    # One collection of rectangles, not n bar patches: at 100 classes that is a third of the figure's cost.
    corners = np.stack([np.stack([x - half, x - half, x + half, x + half], 1),
                        np.stack([np.zeros(n), acc, acc, np.zeros(n)], 1)], 2)
    ax.add_collection(PolyCollection(corners, facecolors=colors, edgecolors="none"))
    tops = acc
    if "acc_ci_low" in frame:  # each class's 95% interval: with 3 images a bar alone says little
        high = frame["acc_ci_high"].fillna(0).to_numpy() * 100
        ax.vlines(x, frame["acc_ci_low"].fillna(0).to_numpy() * 100, high,
                  color="0.2", lw=0.9 if n > TICKS_ALL_MAX_CLASSES else 1.3, alpha=0.7)
        tops = np.maximum(acc, high)
    ax.axhline(mean * 100, color="0.3", ls="--", lw=1.2)
    ax.annotate(MEAN_NOTE.format(mean * 100), xy=(1, mean * 100), xycoords=("axes fraction", "data"),
                xytext=(4, 0), textcoords="offset points", va="center", fontsize=9, color="0.3")
    ax.set(title=title, ylabel="Accuracy (%)", ylim=(0, 112), xlim=(-0.7, n - 0.3))
    if n <= TICKS_ALL_MAX_CLASSES:  # few classes: every bar named and valued
        ax.set_xticks(x, frame["name"], rotation=90 if _rotated(frame["name"]) else 0)
        for xi, value, top in zip(x, acc, tops):
            ax.text(xi, top + 1.5, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
        return
    ax.set_xticks([])  # at 100 classes only the weakest get their name, written above their bar
    for xi, label, name, top in zip(x, frame["label"], frame["name"], tops):
        if label in weak:
            ax.text(xi, top + 1.5, str(name), rotation=90, ha="center", va="bottom", fontsize=8, color="#d62728")


MEAN_NOTE = "mean\n{:.1f}%"


def _rotated(names) -> bool:
    """Class names longer than 3 characters are written vertically under their bar or cell."""
    return max((len(str(name)) for name in names), default=0) > 3


def _under_axis(names, rotated: bool, size: float) -> float:
    """Height of tick labels of ``names`` under an axis (their width when written vertically)."""
    return (layout.text_width(names, size) if rotated else layout.line_height(size)) + 0.1


def per_class_bars(per_class: pd.DataFrame, k: int, title: str) -> Figure:
    """Two panels: classes in label order, then sorted by accuracy; the k weakest in red."""
    present = per_class[per_class["images"] > 0]
    weak = set(weakest_classes(per_class, k)["label"])
    mean = float(present["accuracy"].mean()) if len(present) else 0.0
    n = len(per_class)
    suptitle = f"{title}\n{len(weak)} weakest classes in red; whiskers: 95% interval; dashed: mean over classes"
    with report_style():
        fig = Figure(figsize=(max(10.0, min(20.0, 0.17 * n + 4)), 9))
        top, bottom = fig.subplots(2, 1)
        _bars(top, per_class, weak, "By class label", mean)
        top.set_xlabel("Class (label order)" if n <= TICKS_ALL_MAX_CLASSES else f"Class (label order, {n} classes)")
        ranked = per_class.sort_values(["accuracy", "images", "label"], ascending=[True, False, True],
                                       na_position="last")
        _bars(bottom, ranked, weak, "Sorted by accuracy", mean)
        bottom.set_xlabel("Class (weakest first)")
        names = per_class["name"].astype(str).tolist() if n <= TICKS_ALL_MAX_CLASSES else []
        under = layout.axis_label() + (_under_axis(names, _rotated(names), layout.font_size("xtick.labelsize"))
                                       if names else 0.0)
        layout.set_margins(fig, left=layout.PAD + layout.axis_label() + layout.ticks_width(["100"]),
                           right=layout.text_width(MEAN_NOTE.format(100.0).split("\n"), 9) + 0.1 + layout.PAD,
                           top=layout.add_suptitle(fig, suptitle) + layout.axes_title(),
                           bottom=layout.PAD + under, hspace=under + layout.axes_title() + layout.PAD)
    return fig


# ---------------------------------------------------------------- Figure 3: confusion matrix


def _thinned_ticks(n: int) -> np.ndarray:
    step = 1 if n <= TICKS_ALL_MAX_CLASSES else math.ceil(n / 25)
    return np.arange(0, n, step)


BLOCK_LABEL_MAX = 30  # more top-rank groups than this: unlabelled, the names would not be read
BLOCK_LABEL_MIN_CELLS = 2  # a narrower group gets no name: it would stand over its neighbours
BLOCK_LABEL_CHARS = 24  # longer group names are cut with "…"
BLOCK_LABEL_SIZE = 8.0
BLOCK_BRACKET = 0.05  # inches between the matrix's top edge and a group's bracket
BLOCKS_LEGEND_TITLE = "outlined: classes of one"


def _block_style(level: int, levels: int) -> dict:
    """Outline of a group at ``level`` (0: the rank just above the class) of ``levels`` ranks:
    the top rank thick and dark, lower ranks thinner and lighter, so nested squares stay apart."""
    up = level / (levels - 1) if levels > 1 else 1.0
    return dict(linewidth=0.9 + 1.3 * up, edgecolor=str(round(0.6 - 0.5 * up, 2)), zorder=3 + level)


def _outline_blocks(ax, blocks: list[tuple[str, list[Block]]]) -> None:
    """One unfilled square per group on the diagonal, on its cells' edges."""
    for level, (_, spans) in enumerate(blocks):
        for start, stop in spans:
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), stop - start, stop - start, fill=False,
                                   clip_on=False, **_block_style(level, len(blocks))))


def _block_labels(spans: list[Block], names: list[str], cell: float) -> tuple[list[tuple[Block, str]], bool]:
    """The top-rank groups that get their name over their columns, and whether the names are
    written vertically (when one is wider than its group)."""
    if len(spans) > BLOCK_LABEL_MAX:
        return [], False
    shown = [((start, stop), name if len(name) <= BLOCK_LABEL_CHARS else name[:BLOCK_LABEL_CHARS - 1] + "…")
             for (start, stop), name in zip(spans, map(str, names)) if stop - start >= BLOCK_LABEL_MIN_CELLS]
    vertical = any(layout.text_width([name], BLOCK_LABEL_SIZE) > (stop - start) * cell - 0.08
                   for (start, stop), name in shown)
    return shown, vertical


def _label_band(shown: list[tuple[Block, str]], vertical: bool) -> float:
    """Room over the matrix for the group names and their brackets."""
    if not shown:
        return 0.0
    text = layout.text_width([name for _, name in shown], BLOCK_LABEL_SIZE) if vertical else \
        layout.line_height(BLOCK_LABEL_SIZE)
    return BLOCK_BRACKET + 0.04 + text


def _write_block_labels(ax, shown: list[tuple[Block, str]], vertical: bool, side: float) -> None:
    """Each name over its group's columns, on a bracket spanning them: without it a name over a
    narrow group could belong to either neighbour."""
    over = ax.get_xaxis_transform()  # x in cells, y in fractions of the matrix's height
    bracket = 1 + BLOCK_BRACKET / side
    for (start, stop), name in shown:
        ax.plot([start - 0.35, stop - 0.65], [bracket, bracket], color="0.1", lw=1.2, transform=over,
                clip_on=False, solid_capstyle="butt")
        ax.annotate(name, xy=((start + stop - 1) / 2, bracket), xycoords=over, xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=BLOCK_LABEL_SIZE,
                    rotation=90 if vertical else 0)


def _blocks_legend(fig: Figure, blocks: list[tuple[str, list[Block]]], x: float) -> None:
    """Which outline is which rank, top rank first, under the matrix centred at ``x`` (a fraction
    of the figure's width)."""
    handles = []
    for level, (rank, _) in enumerate(blocks):
        style = _block_style(level, len(blocks))
        handles.append(matplotlib.lines.Line2D([], [], color=style["edgecolor"], lw=style["linewidth"], label=rank))
    fig.legend(handles=handles[::-1], loc="lower center", ncol=len(handles), title=BLOCKS_LEGEND_TITLE,
               bbox_to_anchor=(x, layout.PAD / fig.get_figheight()), borderaxespad=0)


def confusion_heatmap(rates: np.ndarray, names: list[str], title: str,
                      blocks: list[tuple[str, list[Block]]] | None = None,
                      block_names: list[str] | None = None) -> Figure:
    """Row-normalised confusion matrix in % of each true class. Above 20 classes the colour scale
    is square-root (small confusions stay visible next to a bright diagonal) and cells carry no
    numbers; above 30 only every n-th class is labelled. The matrix is a square of a fixed side
    (by class count); the figure grows around it with the class names.

    ``blocks``: ``classwise.tree_order``'s groups, ``rates`` and ``names`` already in its order:
    each group is outlined on the diagonal (mistakes inside a genus or family fall in its square)
    and a legend under the matrix names the ranks. ``block_names``: the top rank's value of each
    of its groups (``classwise.block_values``), written over the matrix where they fit."""
    n = len(rates)
    big = n > ANNOTATE_MAX_CLASSES
    norm = PowerNorm(0.5, vmin=0, vmax=100) if big else Normalize(0, 100)
    side = 6.5 if n <= 10 else 8 if n <= ANNOTATE_MAX_CLASSES else 10
    ticks = _thinned_ticks(n)
    labels = [str(names[t]) for t in ticks]
    tick_size = 9 if n <= TICKS_ALL_MAX_CLASSES else 8
    blocks = blocks or []
    if block_names is not None and blocks and len(block_names) != len(blocks[-1][1]):
        raise ValueError(f"{len(block_names)} block names for {len(blocks[-1][1])} {blocks[-1][0]} blocks")
    with report_style():
        shown, vertical = _block_labels(blocks[-1][1], block_names, side / max(n, 1)) \
            if blocks and block_names is not None else ([], False)
        band = _label_band(shown, vertical)
        ranks = [rank for rank, _ in blocks]
        legend_h = layout.legend_size(ranks, len(ranks), title=BLOCKS_LEGEND_TITLE)[1] + layout.PAD if blocks else 0.0
        left = layout.PAD + layout.axis_label() + layout.text_width(labels, tick_size) + 0.1
        bottom = layout.PAD + legend_h + layout.axis_label() + _under_axis(labels, _rotated(labels), tick_size)
        top = layout.PAD + layout.axes_title() + band
        gap, bar_w = 0.3, 0.25
        right = layout.ticks_width(["100"]) + layout.axis_label() + layout.PAD
        width, height = left + side + gap + bar_w + right, bottom + side + top
        fig = Figure(figsize=(width, height))
        ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
        ax.grid(False)
        image = ax.imshow(rates * 100, cmap="Blues", norm=norm, interpolation="nearest", aspect="equal")
        bar_axes = fig.add_axes(((left + side + gap) / width, (bottom + 0.075 * side) / height,
                                 bar_w / width, 0.85 * side / height))
        bar = fig.colorbar(image, cax=bar_axes)
        bar.set_label("% of the true class's images" + (" (square-root scale)" if big else ""))
        if not big:
            for i, j in zip(*np.nonzero(rates)):
                value = rates[i, j] * 100
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if value > 55 else "black")
        ax.set_xticks(ticks, labels, rotation=90 if _rotated(labels) else 0)
        ax.set_yticks(ticks, labels)
        ax.tick_params(labelsize=tick_size)
        ax.set(xlabel="Predicted class", ylabel="True class")
        # over the group names when there are some: matplotlib lifts a title over tick labels only
        ax.set_title(title, pad=matplotlib.rcParams["axes.titlepad"] + band * 72)
        if blocks:
            _outline_blocks(ax, blocks)
            _write_block_labels(ax, shown, vertical, side)
            _blocks_legend(fig, blocks, (left + side / 2) / width)
    return fig


# ---------------------------------------------------------------- how bad the mistakes are

SEVERITY_COLORS = "YlOrRd"  # light: the classes meet low in the tree (a "better" mistake); dark: at the root
SHARE_NOTE_MIN = 0.08  # a segment of at least this share carries its %; a narrower one has no room
SHARE_NOTE_SIZE = 8.0
MISTAKE_ROW = 0.42  # inches per variant
MISTAKES_LEGEND_TITLE = "where the true and the predicted class meet"


def meets_at(height: int, rank_names: list[str]) -> str:
    """A mistake's LCA height in words: 1 → "same genus" (``rank_names`` = the taxonomy's ranks,
    from the class up), the top one → "only the root"."""
    return f"same {rank_names[height]}" if height < len(rank_names) else "only the root"


def _severity_colors(count: int) -> list[tuple[float, float, float]]:
    """``count`` colours from light to dark; the lightest still apart from the white background."""
    cmap = matplotlib.colormaps[SEVERITY_COLORS]
    return [to_rgb(cmap(x)) for x in (np.linspace(0.2, 0.9, count) if count > 1 else [0.5])]


def _ink(color: tuple[float, float, float]) -> str:
    """Text colour readable on ``color``."""
    r, g, b = color
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


def _legend_columns(labels: list[str], title: str, room: float) -> int:
    """The most legend columns (one row if it fits) whose legend is at most ``room`` inches wide."""
    ncol = len(labels)
    while ncol > 1 and layout.legend_size(labels, ncol, title=title)[0] > room:
        ncol -= 1
    return max(ncol, 1)


def mistake_height_bars(counts: pd.DataFrame, rank_names: list[str], title: str) -> Figure:
    """Where in the tree each variant's mistakes fall: one 100%-stacked bar per variant (rows of
    ``counts``, top first), segments = share of its mistakes whose true and predicted class meet
    at height 1, 2, ... (``counts``' columns, ``analysis.hierarchy.height_counts``), light to dark. Each
    bar ends with its number of mistakes; a variant without any says so on an empty bar."""
    variants = counts.index.astype(str).tolist()
    heights = [int(h) for h in counts.columns]
    values = counts.to_numpy(float)
    totals = values.sum(axis=1)
    shares = np.divide(values, totals[:, None], out=np.zeros_like(values), where=totals[:, None] > 0)
    starts = np.cumsum(shares, axis=1) - shares
    labels = [meets_at(h, rank_names) for h in heights]
    colors = _severity_colors(len(heights))
    notes = [f"n = {int(total)}" for total in totals]
    n = len(variants)
    xlabel = "Share of the variant's mistakes (%)"
    with report_style():
        left = layout.PAD + layout.ticks_width(variants)
        plot_w = max(6.5, layout.text_width([title], layout.font_size("axes.titlesize")) + 0.2)
        right = 0.1 + layout.text_width(notes, 9) + layout.PAD
        width = left + plot_w + right
        ncol = _legend_columns(labels, MISTAKES_LEGEND_TITLE, width - 2 * layout.PAD)
        legend_w, legend_h = layout.legend_size(labels, ncol, title=MISTAKES_LEGEND_TITLE)
        top = layout.PAD + layout.axes_title()
        bottom = 2 * layout.PAD + legend_h + layout.axis_label() + layout.ticks_height()
        fig = Figure(figsize=(width, top + bottom + MISTAKE_ROW * max(n, 1.5)))
        ax = fig.subplots()
        y = np.arange(n)
        for k, (label, color) in enumerate(zip(labels, colors)):
            ax.barh(y, shares[:, k], left=starts[:, k], height=0.7, color=color, label=label,
                    edgecolor="white", linewidth=0.6)
            for i in np.flatnonzero(shares[:, k] >= SHARE_NOTE_MIN):
                ax.text(starts[i, k] + shares[i, k] / 2, i, f"{shares[i, k] * 100:.0f}%", ha="center", va="center",
                        fontsize=SHARE_NOTE_SIZE, color=_ink(color))
        for i, (note, total) in enumerate(zip(notes, totals)):
            if total > 0:
                ax.annotate(note, xy=(1, i), xycoords=("axes fraction", "data"), xytext=(4, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=9)
            else:
                ax.text(0.5, i, "no mistakes", ha="center", va="center", fontsize=9, color="0.35", style="italic",
                        bbox=dict(facecolor="white", edgecolor="none", pad=1))  # over the grid lines
        ax.set_xlim(0, 1)
        ax.set_ylim(max(n, 1) - 0.5, -0.5)  # the table's first variant on top
        ax.set_xticks(np.linspace(0, 1, 6), [f"{p:.0f}" for p in np.linspace(0, 100, 6)])
        ax.set_yticks(y, variants)
        ax.grid(axis="y", visible=False)
        ax.set(title=title, xlabel=xlabel)
        handles, _ = ax.get_legend_handles_labels()
        # under the plot, not beside it where the "n = " notes are; centred on it, inside the figure
        centre = min(max(left + plot_w / 2, layout.PAD + legend_w / 2), width - layout.PAD - legend_w / 2)
        fig.legend(handles, labels, loc="lower center", ncol=ncol, title=MISTAKES_LEGEND_TITLE,
                   bbox_to_anchor=(centre / width, layout.PAD / fig.get_figheight()), borderaxespad=0)
        layout.set_margins(fig, left=left, right=right, top=top, bottom=bottom)
    return fig


# ---------------------------------------------------------------- Δ vs baseline (forest plot)

VERDICT_COLORS = {"better": "#1a9850", "worse": "#d73027", "within noise": "#7f7f7f"}


def forest_plot(frame: pd.DataFrame, baseline: str, title: str) -> Figure:
    """Δ accuracy vs the baseline (percentage points) with its 95% interval, one row per variant
    in table order; colour = verdict after correction. A row whose interval crosses 0 is noise."""
    rows = frame[~frame["is_baseline"] & frame["delta"].notna()].iloc[::-1]
    xlabel = f"Δ validation accuracy vs {baseline} (percentage points, 95% CI)"
    legend_title = "verdict (Holm, α = 0.05)"
    with report_style():
        left = layout.PAD + layout.ticks_width(rows["variant"].astype(str))
        plot_w = max(5.5, layout.text_width([xlabel, title], layout.font_size("axes.labelsize")) + 0.2)
        right = 2 * layout.PAD + layout.legend_size(list(VERDICT_COLORS), title=legend_title)[0]
        top, bottom = layout.PAD + layout.axes_title(), layout.PAD + layout.axis_label() + layout.ticks_height()
        fig = Figure(figsize=(left + plot_w + right, top + bottom + 0.45 * max(2, len(rows))))
        ax = fig.subplots()
        y = np.arange(len(rows))
        for i, (_, r) in enumerate(rows.iterrows()):
            color = VERDICT_COLORS.get(r["verdict"], "#7f7f7f")
            lo, hi, d = 100 * r["delta_ci_low"], 100 * r["delta_ci_high"], 100 * r["delta"]
            ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", color=color, ms=7, capsize=4, lw=2)
        ax.axvline(0, color="black", lw=1)
        ax.set_ylim(-0.6, len(rows) - 0.4)  # half a row of room above and below: no interval on the frame
        ax.set_yticks(y, rows["variant"].tolist())
        ax.set(title=title, xlabel=xlabel)
        handles = [matplotlib.lines.Line2D([], [], color=c, marker="o", lw=2, label=k)
                   for k, c in VERDICT_COLORS.items()]
        # outside the axes: with one or two rows the legend would cover an interval
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), title=legend_title,
                  borderaxespad=layout.PAD * 72 / layout.font_size("legend.fontsize"))
        layout.set_margins(fig, left=left, right=right, top=top, bottom=bottom)
    return fig
