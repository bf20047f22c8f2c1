"""Figure builders on hand-made data: what is drawn is checked (line data, bar heights, marks,
image values, labels), and a saved file is a real PNG / PDF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_per_class_bars_at_100_classes_label_only_the_weakest():
    per = _per_class(100)
    fig = figures.per_class_bars(per, 10, "Per-class accuracy")
    top, bottom = fig.axes
    heights = [p.get_height() for p in top.patches]
    np.testing.assert_allclose(heights, per["accuracy"].fillna(0) * 100)
    sorted_heights = [p.get_height() for p in bottom.patches]
    assert sorted_heights == sorted(sorted_heights)
    weakest = set(classwise.weakest_classes(per, 10)["name"])
    for ax in (top, bottom):
        assert {t.get_text() for t in ax.texts if t.get_text().startswith("sp")} == weakest
        assert sum(p.get_facecolor()[0] > 0.8 for p in ax.patches) == 10  # red bars
        assert all(t.get_text() == "" for t in ax.get_xticklabels())


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
