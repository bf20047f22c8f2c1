"""The report's figures from plain DataFrames / arrays: matplotlib (object API, Agg, never
pyplot's global state or ``show``) styled by seaborn. Every figure has a title, axis labels with
units, and stays readable at 100 classes (thinned ticks, no per-cell numbers).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.lines
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.classwise import weakest_classes
from analysis.history import Curves, lr_drops  # noqa: F401 - Curves: figures.Curves as before

ANNOTATE_MAX_CLASSES = 20  # confusion cells carry their % up to this many classes
TICKS_ALL_MAX_CLASSES = 30  # every class gets a tick label up to this many classes
TRAIN, VAL = "#1f77b4", "#ff7f0e"


@contextmanager
def report_style():
    """seaborn's whitegrid look at a size readable without zooming, for the figures built inside."""
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=1.0),
          "axes.titleweight": "bold", "figure.titlesize": 14, "figure.titleweight": "bold",
          "legend.fontsize": 9, "legend.framealpha": 0.9}
    with matplotlib.rc_context(rc):
        yield


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
        fig = Figure(figsize=(12, 4.6), layout="constrained")
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
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=10)
        fig.suptitle(title)
    return fig


def val_acc_overlay(curves: dict[str, Curves], baseline: str, title: str) -> Figure:
    """Validation accuracy per epoch of every variant on one axis; baseline in black."""
    with report_style():
        fig = Figure(figsize=(11, 5.5), layout="constrained")
        ax = fig.subplots()
        others = [v for v in curves if v != baseline]
        palette = sns.color_palette("tab10" if len(others) <= 10 else "husl", max(1, len(others)))
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
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=ncol, title="variant (★ best epoch)")
    return fig


# ---------------------------------------------------------------- Figure 2: per-class accuracy


def _bars(ax, frame: pd.DataFrame, weak: set[int], title: str, mean: float) -> None:
    n = len(frame)
    x = np.arange(n)
    acc = frame["accuracy"].fillna(0).to_numpy() * 100
    colors = ["#d62728" if label in weak else "#4c72b0" for label in frame["label"]]
    ax.bar(x, acc, color=colors, width=0.85 if n > TICKS_ALL_MAX_CLASSES else 0.7)
    ax.axhline(mean * 100, color="0.3", ls="--", lw=1.2)
    ax.annotate(f"mean\n{mean * 100:.1f}%", xy=(1, mean * 100), xycoords=("axes fraction", "data"),
                xytext=(4, 0), textcoords="offset points", va="center", fontsize=9, color="0.3")
    ax.set(title=title, ylabel="Accuracy (%)", ylim=(0, 112), xlim=(-0.7, n - 0.3))
    if n <= TICKS_ALL_MAX_CLASSES:  # few classes: every bar named and valued
        ax.set_xticks(x, frame["name"], rotation=90 if frame["name"].str.len().max() > 3 else 0)
        for xi, value in zip(x, acc):
            ax.text(xi, value + 1.5, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
        return
    ax.set_xticks([])  # at 100 classes only the weakest get their name, written above their bar
    for xi, label, name, value in zip(x, frame["label"], frame["name"], acc):
        if label in weak:
            ax.text(xi, value + 1.5, str(name), rotation=90, ha="center", va="bottom", fontsize=8, color="#d62728")


def per_class_bars(per_class: pd.DataFrame, k: int, title: str) -> Figure:
    """Two panels: classes in label order, then sorted by accuracy; the k weakest in red."""
    present = per_class[per_class["images"] > 0]
    weak = set(weakest_classes(per_class, k)["label"])
    mean = float(present["accuracy"].mean()) if len(present) else 0.0
    n = len(per_class)
    with report_style():
        fig = Figure(figsize=(max(10.0, min(20.0, 0.17 * n + 4)), 9), layout="constrained")
        top, bottom = fig.subplots(2, 1)
        _bars(top, per_class, weak, "By class label", mean)
        top.set_xlabel("Class (label order)" if n <= TICKS_ALL_MAX_CLASSES else f"Class (label order, {n} classes)")
        ranked = per_class.sort_values(["accuracy", "images", "label"], ascending=[True, False, True],
                                       na_position="last")
        _bars(bottom, ranked, weak, "Sorted by accuracy", mean)
        bottom.set_xlabel("Class (weakest first)")
        fig.suptitle(f"{title}\n{len(weak)} weakest classes in red; dashed: mean over classes")
    return fig


# ---------------------------------------------------------------- Figure 3: confusion matrix


def _thinned_ticks(n: int) -> np.ndarray:
    step = 1 if n <= TICKS_ALL_MAX_CLASSES else math.ceil(n / 25)
    return np.arange(0, n, step)


def confusion_heatmap(rates: np.ndarray, names: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix in % of each true class. Above 20 classes the colour scale
    is square-root (small confusions stay visible next to a bright diagonal) and cells carry no
    numbers; above 30 only every n-th class is labelled."""
    n = len(rates)
    big = n > ANNOTATE_MAX_CLASSES
    norm = PowerNorm(0.5, vmin=0, vmax=100) if big else Normalize(0, 100)
    side = 6.5 if n <= 10 else 8 if n <= ANNOTATE_MAX_CLASSES else 10
    with report_style():
        fig = Figure(figsize=(side + 1.5, side), layout="constrained")
        ax = fig.subplots()
        ax.grid(False)
        image = ax.imshow(rates * 100, cmap="Blues", norm=norm, interpolation="nearest", aspect="equal")
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label("% of the true class's images" + (" (square-root scale)" if big else ""))
        if not big:
            for i, j in zip(*np.nonzero(rates)):
                value = rates[i, j] * 100
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=9 if n <= 10 else 7,
                        color="white" if value > 55 else "black")
        ticks = _thinned_ticks(n)
        long_names = max((len(names[t]) for t in ticks), default=0) > 3
        ax.set_xticks(ticks, [names[t] for t in ticks], rotation=90 if long_names else 0)
        ax.set_yticks(ticks, [names[t] for t in ticks])
        ax.tick_params(labelsize=9 if n <= TICKS_ALL_MAX_CLASSES else 8)
        ax.set(title=title, xlabel="Predicted class", ylabel="True class")
    return fig


# ---------------------------------------------------------------- Δ vs baseline (forest plot)

VERDICT_COLORS = {"better": "#1a9850", "worse": "#d73027", "within noise": "#7f7f7f"}


def forest_plot(frame: pd.DataFrame, baseline: str, title: str) -> Figure:
    """Δ accuracy vs the baseline (percentage points) with its 95% interval, one row per variant
    in table order; colour = verdict after correction. A row whose interval crosses 0 is noise."""
    rows = frame[~frame["is_baseline"] & frame["delta"].notna()].iloc[::-1]
    with report_style():
        fig = Figure(figsize=(9, 1.2 + 0.45 * max(1, len(rows))), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(rows))
        for i, (_, r) in enumerate(rows.iterrows()):
            color = VERDICT_COLORS.get(r["verdict"], "#7f7f7f")
            lo, hi, d = 100 * r["delta_ci_low"], 100 * r["delta_ci_high"], 100 * r["delta"]
            ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", color=color, ms=7, capsize=4, lw=2)
        ax.axvline(0, color="black", lw=1)
        ax.set_yticks(y, rows["variant"].tolist())
        ax.set(title=title, xlabel=f"Δ validation accuracy vs {baseline} (percentage points, 95% CI)")
        handles = [matplotlib.lines.Line2D([], [], color=c, marker="o", lw=2, label=k)
                   for k, c in VERDICT_COLORS.items()]
        # outside the axes: with one or two rows the legend would cover an interval
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="verdict (Holm, α = 0.05)")
    return fig
