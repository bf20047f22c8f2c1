"""Figure margins from measured text, instead of matplotlib's constrained layout.

constrained layout finds the margins by drawing the whole figure once more before it is saved:
25-40% of each figure's cost here (benchmarks/README.md, section 4), paid once per figure of a
50-variant report. The report's figures have little text of unknown size (class and variant
names, tick labels, legends); it is measured here with the Agg renderer's font metrics (a few
microseconds a string) and the margins are set in inches from it. ``tests/test_report_figures.py``
checks on every figure that no text falls outside it.

Sizes are in inches throughout; fonts are those of the rc context the caller is in
(``figures.report_style``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable

import matplotlib
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

PAD = 0.12  # between a text block and the figure's edge or the next block


@lru_cache(maxsize=1)
def _renderer() -> RendererAgg:
    return RendererAgg(1, 1, 72)  # at 72 dpi a pixel is a point


def font_size(rc_key: str) -> float:
    """Points of an rc font size (``"xtick.labelsize"``), which may be a name such as "medium"."""
    return FontProperties(size=matplotlib.rcParams[rc_key]).get_size_in_points()


def line_height(size: float, lines: int = 1) -> float:
    return lines * size * 1.25 / 72


def text_width(texts: Iterable[str], size: float) -> float:
    """The widest of ``texts`` at ``size`` points (0 when there are none); a multi-line text
    counts its longest line."""
    prop = FontProperties(size=size)
    widths = [_renderer().get_text_width_height_descent(line, prop, ismath=False)[0]
              for text in texts for line in str(text).split("\n")]
    return max(widths, default=0.0) / 72


def ticks_width(texts: Iterable[str], rc_key: str = "ytick.labelsize") -> float:
    """Room for tick labels beside an axis: the widest label plus the tick pad."""
    return text_width(texts, font_size(rc_key)) + matplotlib.rcParams["ytick.major.pad"] / 72 + 0.04


def ticks_height(rc_key: str = "xtick.labelsize") -> float:
    """Room for one line of tick labels under an axis."""
    return line_height(font_size(rc_key)) + matplotlib.rcParams["xtick.major.pad"] / 72 + 0.04


def axis_label() -> float:
    """Room for an axis label (x under, y beside)."""
    return line_height(font_size("axes.labelsize")) + matplotlib.rcParams["axes.labelpad"] / 72


def axes_title(lines: int = 1) -> float:
    return line_height(font_size("axes.titlesize"), lines) + matplotlib.rcParams["axes.titlepad"] / 72


def suptitle(text: str) -> float:
    return line_height(font_size("figure.titlesize"), text.count("\n") + 1) + PAD


def add_suptitle(fig: Figure, text: str) -> float:
    """The figure's title, PAD under its top edge (matplotlib's default is 2% of the height,
    too far on a tall figure); returns the room it takes (``suptitle``)."""
    fig.suptitle(text, y=1 - PAD / fig.get_figheight(), va="top")
    return suptitle(text)


def legend_size(labels: list[str], ncol: int = 1, title: str | None = None,
                size: float | None = None) -> tuple[float, float]:
    """(width, height) of a legend of ``labels`` in ``ncol`` columns, with matplotlib's rc spacing;
    ``size``: its font size when not the rc one."""
    rc = matplotlib.rcParams
    size = size or font_size("legend.fontsize")
    em = size / 72
    ncol = max(1, min(ncol, len(labels) or 1))
    rows = math.ceil(len(labels) / ncol) if labels else 0
    columns = [labels[i * rows:(i + 1) * rows] for i in range(ncol)]  # matplotlib fills column by column
    width = sum((rc["legend.handlelength"] + rc["legend.handletextpad"]) * em + text_width(col, size)
                for col in columns)
    width += (ncol - 1) * rc["legend.columnspacing"] * em
    height = rows * line_height(size) + max(0, rows - 1) * rc["legend.labelspacing"] * em
    if title:
        title_size = font_size("legend.title_fontsize")
        width = max(width, text_width([title], title_size))
        height += line_height(title_size)
    frame = 2 * rc["legend.borderpad"] * em + 0.05
    return width + frame, height + frame


def set_margins(fig: Figure, left: float, right: float, bottom: float, top: float,
                wspace: float | None = None, hspace: float | None = None) -> None:
    """Place the figure's subplot grid ``left``/``right``/``bottom``/``top`` inches from its
    edges, ``wspace``/``hspace`` inches apart."""
    width, height = fig.get_size_inches()
    params = dict(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    grid = fig.axes[0].get_subplotspec().get_gridspec() if fig.axes else None
    if grid is not None and wspace is not None and grid.ncols > 1:
        axes_w = (width - left - right - (grid.ncols - 1) * wspace) / grid.ncols
        params["wspace"] = wspace / axes_w
    if grid is not None and hspace is not None and grid.nrows > 1:
        axes_h = (height - bottom - top - (grid.nrows - 1) * hspace) / grid.nrows
        params["hspace"] = hspace / axes_h
    fig.subplots_adjust(**params)
