"""Figure builders on hand-made data: what is drawn is checked (line data, bar heights, marks,
image values, labels), and a saved file is a real PNG / PDF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection

from analysis import classwise, figures
from analysis.figures import Curves


def _history() -> pd.DataFrame:
    e = np.arange(1, 11)
    return pd.DataFrame({"epoch": e, "train_loss": 2 / e, "val_loss": 2.5 / e, "train_acc": e / 11,
                         "val_acc": e / 12, "lr": [1e-3] * 4 + [2e-4] * 4 + [4e-5] * 2})


def _line(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_training_curves_draw_train_val_and_mark_drops_best_and_early_stop():
    h = _history()
    fig = figures.training_curves([Curves(h, seed=0, best_epoch=7, stopped_early=True)], "Training curves — x")
    ax_loss, ax_acc = fig.axes
    np.testing.assert_allclose(_line(ax_acc, "validation").get_ydata(), h["val_acc"] * 100)
    np.testing.assert_allclose(_line(ax_loss, "train").get_ydata(), h["train_loss"])
    assert ax_acc.get_ylabel() == "Accuracy (%)" and ax_loss.get_xlabel() == "Epoch"
    drops = [line.get_xdata()[0] for line in ax_acc.get_lines() if line.get_linestyle() == ":"]
    assert drops == [5, 9]
    star = _line(ax_acc, "best epoch (7)")
    assert star.get_xdata()[0] == 7 and star.get_ydata()[0] == pytest.approx(7 / 12 * 100)
    assert _line(ax_acc, "early stop (epoch 10)").get_xdata()[0] == 10
    assert fig._suptitle.get_text() == "Training curves — x"


def test_other_seeds_are_drawn_faint():
    h = _history()
    fig = figures.training_curves([Curves(h, 0, 7), Curves(h.assign(val_acc=h["val_acc"] / 2), 1, 3)], "t")
    faint = _line(fig.axes[1], "other seeds: validation")
    assert faint.get_alpha() < 1
    np.testing.assert_allclose(faint.get_ydata(), h["val_acc"] / 2 * 100)


def test_overlay_has_one_line_per_variant_baseline_in_black():
    h = _history()
    fig = figures.val_acc_overlay({"base": Curves(h, best_epoch=10), "a": Curves(h.assign(val_acc=0.5), best_epoch=1)},
                                  "base", "Validation accuracy")
    ax = fig.axes[0]
    base = _line(ax, "base (baseline)")
    assert base.get_color() == "black"
    np.testing.assert_allclose(_line(ax, "a").get_ydata(), [50.0] * 10)
    assert ax.get_ylabel() == "Validation accuracy (%)"


def _per_class(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = np.diag(rng.integers(0, 4, n)) + rng.integers(0, 2, (n, n))
    return classwise.per_class_accuracy(counts, [f"sp{i:03d}" for i in range(n)])


def _bars(ax):
    return next(c for c in ax.collections if isinstance(c, PolyCollection))


def _bar_heights(ax) -> list[float]:
    return [float(path.vertices[:, 1].max()) for path in _bars(ax).get_paths()]


def test_per_class_bars_at_100_classes_label_only_the_weakest():
    per = _per_class(100)
    fig = figures.per_class_bars(per, 10, "Per-class accuracy")
    top, bottom = fig.axes
    np.testing.assert_allclose(_bar_heights(top), per["accuracy"].fillna(0) * 100)
    sorted_heights = _bar_heights(bottom)
    assert sorted_heights == sorted(sorted_heights)
    weakest = set(classwise.weakest_classes(per, 10)["name"])
    for ax in (top, bottom):
        assert {t.get_text() for t in ax.texts if t.get_text().startswith("sp")} == weakest
        assert sum(color[0] > 0.8 for color in _bars(ax).get_facecolors()) == 10  # red bars
        assert all(t.get_text() == "" for t in ax.get_xticklabels())
    (whiskers,) = [c for c in top.collections if isinstance(c, LineCollection)]  # each class's 95% interval
    ends = np.array([seg[:, 1] for seg in whiskers.get_segments()])
    np.testing.assert_allclose(ends, per[["acc_ci_low", "acc_ci_high"]].fillna(0).to_numpy() * 100)


def test_per_class_bars_at_few_classes_name_every_bar():
    per = _per_class(8, seed=1)
    fig = figures.per_class_bars(per, 10, "t")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(per["name"])


def test_confusion_heatmap_values_and_readability():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, (100, 100)) + np.eye(100, dtype=int) * 20
    rates = classwise.row_normalise(counts)
    names = [f"Species {i}" for i in range(100)]
    fig = figures.confusion_heatmap(rates, names, "Confusion")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), rates * 100)
    assert len(ax.texts) == 0  # no per-cell numbers at 100 classes
    assert 0 < len(ax.get_xticklabels()) <= 26
    assert ax.get_xlabel() == "Predicted class" and ax.get_ylabel() == "True class"
    assert "%" in fig.axes[1].get_ylabel()  # the colour bar says its unit

    small = figures.confusion_heatmap(classwise.row_normalise(np.array([[3, 1], [0, 4]])), ["a", "b"], "c")
    assert sorted(t.get_text() for t in small.axes[0].texts) == ["100", "25", "75"]


def test_save_figure_writes_real_png_and_pdf(tmp_path):
    fig = figures.training_curves([Curves(_history(), 0, 7)], "t")
    png, pdf = figures.save_figure(fig, tmp_path, "curves", ("png", "pdf"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    width = int.from_bytes(png.read_bytes()[16:20], "big")
    assert width >= 1000  # legible without zooming


def _outside(fig) -> list[str]:
    """Sides on which something drawn (tick labels, titles, legends, notes) passes the figure's edge."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches, what was drawn
    width, height = fig.get_size_inches()
    slack = 1 / fig.dpi  # a pixel of rounding
    return [side for side, out in [("left", drawn.x0 < -slack), ("right", drawn.x1 > width + slack),
                                   ("bottom", drawn.y0 < -slack), ("top", drawn.y1 > height + slack)] if out]


LONG = "a-rather-long-variant-name-with-a-suffix"


@pytest.mark.parametrize("case", ["curves", "curves_two_seeds", "overlay", "overlay_many_long", "bars_100",
                                  "bars_8_long", "confusion_100", "confusion_8", "forest", "forest_long", "grid_1",
                                  "grid_18_long"])
def test_every_figure_keeps_its_text_inside(case):
    """Margins are computed from measured text, not solved by a layout engine: no tick label,
    title, legend or note may fall off the figure, with short or long names."""
    h = _history()
    long_names = [f"Genus-species-{i:02d} long-name" for i in range(8)]
    per8 = classwise.per_class_accuracy(np.eye(8, dtype=int) * 3 + 1, long_names)
    delta = pd.DataFrame({"variant": ["base", "a", LONG], "is_baseline": [True, False, False],
                          "delta": [0, 0.02, -0.05], "delta_ci_low": [0, -0.01, -0.08],
                          "delta_ci_high": [0, 0.05, -0.02], "verdict": ["", "within noise", "worse"]})
    fig = {
        "curves": lambda: figures.training_curves([Curves(h, 0, 7, stopped_early=True)], "Training curves — x"),
        "curves_two_seeds": lambda: figures.training_curves([Curves(h, 0, 7), Curves(h, 1, 3)], f"t — {LONG}"),
        "overlay": lambda: figures.val_acc_overlay({"base": Curves(h, best_epoch=10)}, "base", "Validation"),
        "overlay_many_long": lambda: figures.val_acc_overlay(
            {f"{LONG}-{i}": Curves(h.assign(val_acc=i / 30), best_epoch=3) for i in range(25)}, f"{LONG}-0", "v"),
        "bars_100": lambda: figures.per_class_bars(_per_class(100), 10, "Per-class accuracy"),
        "bars_8_long": lambda: figures.per_class_bars(per8, 3, "Per-class accuracy"),
        "confusion_100": lambda: figures.confusion_heatmap(classwise.row_normalise(np.eye(100) + 0.1),
                                                           [f"Species {i}" for i in range(100)], "Confusion"),
        "confusion_8": lambda: figures.confusion_heatmap(classwise.row_normalise(np.eye(8) + 0.1), long_names, "c"),
        "forest": lambda: figures.forest_plot(delta.iloc[:2], "base", "Δ vs baseline"),
        "forest_long": lambda: figures.forest_plot(delta, "base", "Δ vs baseline"),
        "grid_1": lambda: figures.curves_grid({"base": Curves(h, 0, 7)}, "base", "Training curves"),
        "grid_18_long": lambda: figures.curves_grid({f"{LONG}-{i}": Curves(h, 0, 7, stopped_early=i == 3)
                                                     for i in range(18)}, f"{LONG}-0", f"Training curves — {LONG}"),
    }[case]()
    assert _outside(fig) == []


def test_curves_grid_draws_one_panel_per_variant_with_its_marks():
    h = _history()
    curves = {f"v{i}": Curves(h.assign(val_acc=h["val_acc"] * (1 - i / 10)), 0, best_epoch=i + 2,
                              stopped_early=i == 4) for i in range(6)}
    fig = figures.curves_grid(curves, "v0", "Training curves")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["v0 (baseline)", "v1", "v2", "v3", "v4", "v5"]
    assert len(fig.axes) == 8  # 4 columns x 2 rows, the two unused hidden
    for i, ax in enumerate(panels):
        np.testing.assert_allclose(_line(ax, "validation").get_ydata(), h["val_acc"] * (1 - i / 10) * 100)
        assert _line(ax, "best epoch").get_xdata()[0] == i + 2
        assert any(line.get_label() == "early stop" for line in ax.get_lines()) == (i == 4)
    # the panel above an unused cell shows the epochs under it
    assert panels[2].xaxis.get_tick_params()["labelbottom"] and panels[2].get_xlabel() == "Epoch"
    assert panels[0].get_ylabel() == "Accuracy (%)" and panels[1].get_ylabel() == ""
