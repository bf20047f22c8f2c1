"""Figure builders on hand-made data: what is drawn is checked (line data, bar heights, marks,
image values, labels), and a saved file is a real PNG / PDF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.patches import Rectangle

from analysis import classwise, figures
from analysis.figures import Curves
from bioclf.taxonomy import Taxonomy


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


def test_frozen_style_and_palette_are_seaborns():
    """analysis.figures does not import seaborn (~1 s more per worker): its whitegrid rc dict and
    its ≤ 10-variant palette are seaborn 0.13's, written out; checked here where seaborn is installed."""
    sns = pytest.importorskip("seaborn")
    theirs = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=1.0)}
    assert theirs.pop("image.cmap") == "rocket"  # seaborn's own colormap: left out (every image names one)
    assert figures.SEABORN_WHITEGRID_NOTEBOOK == theirs
    ours = figures.SEABORN_WHITEGRID_NOTEBOOK
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}  # 1 is not 1.0
    for n in range(0, 11):
        expected = [tuple(map(float, c)) for c in sns.color_palette("tab10", max(1, n))]
        assert [tuple(map(float, c)) for c in figures.variant_colors(n)] == expected


def test_more_than_ten_variants_get_distinct_colours():
    for n in (11, 20, 50):
        colors = figures.variant_colors(n)
        assert len(set(colors)) == n and all(0 <= x <= 1 for c in colors for x in c)
    h = _history()
    curves = {"base": Curves(h)} | {f"v{i}": Curves(h) for i in range(12)}
    ax = figures.val_acc_overlay(curves, "base", "Validation").axes[0]
    assert len({_line(ax, f"v{i}").get_color() for i in range(12)}) == 12


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


def _wide_tree(n: int = 100) -> Taxonomy:
    """Genera of 3 classes, families of 20 with long names."""
    return Taxonomy(("class", "genus", "family"), pd.DataFrame({
        "class": [f"Species {i}" for i in range(n)], "genus": [f"g{i // 3}" for i in range(n)],
        "family": [f"Family-with-a-rather-long-name-{i // 20}" for i in range(n)]}))


def _tree_confusion(tree: Taxonomy):
    order, blocks = classwise.tree_order(tree)
    rates = classwise.row_normalise(np.eye(len(order)) + 0.1)
    return figures.confusion_heatmap(rates, [tree.classes[i] for i in order], "Confusion", blocks,
                                     classwise.block_values(tree, order, tree.ranks[-1]))


@pytest.mark.parametrize("case", ["curves", "curves_two_seeds", "overlay", "overlay_many_long", "bars_100",
                                  "bars_8_long", "confusion_100", "confusion_8", "forest", "forest_long", "grid_1",
                                  "grid_18_long", "confusion_tree_100", "confusion_tree_6", "mistakes_1",
                                  "mistakes_30_long"])
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
        "confusion_tree_100": lambda: _tree_confusion(_wide_tree()),
        "confusion_tree_6": lambda: _tree_confusion(TREE6),
        "mistakes_1": lambda: figures.mistake_height_bars(pd.DataFrame([[3, 1]], index=["base"], columns=[1, 2]),
                                                          ["class", "genus"], "Mistakes"),
        "mistakes_30_long": lambda: figures.mistake_height_bars(
            pd.DataFrame(np.arange(90).reshape(30, 3) % 7, index=[f"{LONG}-{i}" for i in range(30)], columns=[1, 2, 3]),
            ["class", "genus", "family"], f"Where the mistakes fall — {LONG}"),
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


# ---------------------------------------------------------------- the class tree

# 6 classes, genera interleaved in label order: family F1 = {Ga: 1, 4; Gc: 2}, F2 = {Gb: 0, 3; Gd: 5}
TREE6 = Taxonomy(("class", "genus", "family"), pd.DataFrame({
    "class": ["c0", "c1", "c2", "c3", "c4", "c5"], "genus": ["Gb", "Ga", "Gc", "Gb", "Ga", "Gd"],
    "family": ["F2", "F1", "F1", "F2", "F1", "F2"]}))


def test_tree_order_makes_each_group_contiguous_in_a_fixed_order():
    order, blocks = classwise.tree_order(TREE6)
    assert order.tolist() == [1, 4, 2, 0, 3, 5]  # family, then genus, then label
    assert blocks == [("genus", [(0, 2), (2, 3), (3, 5), (5, 6)]), ("family", [(0, 3), (3, 6)])]
    assert classwise.block_values(TREE6, order, "family") == ["F1", "F2"]
    assert classwise.block_values(TREE6, order, "genus") == ["Ga", "Gc", "Gb", "Gd"]
    # permuted, the LCA heights are constant on each block's square: 1 in a genus, 2 in a family
    heights = TREE6.lca_heights()[np.ix_(order, order)]
    assert (heights[3:5, 3:5] <= 1).all() and heights[0, 2] == 2 and heights[:3, 3:].min() == 3


def test_tree_order_sorts_numbered_names_as_numbers_and_refuses_a_non_tree():
    tree = Taxonomy(("class", "genus"), pd.DataFrame({"class": list("abcd"), "genus": ["g10", "g2", "g10", "g1"]}))
    order, blocks = classwise.tree_order(tree)
    assert order.tolist() == [3, 1, 0, 2] and blocks == [("genus", [(0, 1), (1, 2), (2, 4)])]
    two_families = Taxonomy(("class", "genus", "family"), pd.DataFrame(
        {"class": list("abc"), "genus": ["G", "G", "H"], "family": ["F1", "F2", "F1"]}))
    with pytest.raises(ValueError, match="genus"):
        classwise.tree_order(two_families)


def _rows_of_bars(ax) -> dict[int, list[float]]:
    """Segment widths per bar row (0 = top), left to right."""
    rows: dict[int, list[tuple[float, float]]] = {}
    for patch in ax.patches:
        rows.setdefault(round(patch.get_y() + patch.get_height() / 2), []).append((patch.get_x(), patch.get_width()))
    return {row: [w for _, w in sorted(segments)] for row, segments in rows.items()}


def test_mistake_height_bars_are_shares_of_each_variants_mistakes():
    counts = pd.DataFrame([[6, 3, 1], [0, 0, 0], [1, 0, 3], [19, 1, 0]], index=["a", "none", "c", "d"],
                          columns=[1, 2, 3])
    fig = figures.mistake_height_bars(counts, ["class", "genus", "family"], "Mistakes")
    ax = fig.axes[0]
    rows = _rows_of_bars(ax)
    np.testing.assert_allclose(rows[0], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(rows[1], [0, 0, 0])  # an empty bar
    np.testing.assert_allclose(rows[2], [0.25, 0, 0.75])
    np.testing.assert_allclose(rows[3], [0.95, 0.05, 0])
    for row in (0, 2, 3):
        assert sum(rows[row]) == pytest.approx(1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "none", "c", "d"] and ax.yaxis_inverted()
    texts = [t.get_text() for t in ax.texts]
    assert [t for t in texts if t.startswith("n = ")] == ["n = 10", "n = 4", "n = 20"]
    assert "no mistakes" in texts
    # shares of 8% and more are written in their segment; the 5% of d is not
    assert sorted(t for t in texts if t.endswith("%")) == sorted(["60%", "30%", "10%", "25%", "75%", "95%"])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["same genus", "same family", "only the root"]
    # light to dark: the lower two classes meet, the lighter their colour
    lightness = [sum(ax.patches[k * len(counts)].get_facecolor()[:3]) for k in range(3)]
    assert lightness == sorted(lightness, reverse=True)


def test_mistake_height_bars_grow_with_the_variants():
    small = figures.mistake_height_bars(pd.DataFrame([[1, 1]], index=["v"], columns=[1, 2]), ["class", "genus"], "m")
    big = figures.mistake_height_bars(pd.DataFrame(np.ones((30, 2), int), index=[f"v{i}" for i in range(30)],
                                                   columns=[1, 2]), ["class", "genus"], "m")
    assert big.get_figheight() > small.get_figheight() + 10 * figures.MISTAKE_ROW
    assert len(big.axes[0].patches) == 60


def test_confusion_heatmap_outlines_each_group_of_the_tree():
    order, blocks = classwise.tree_order(TREE6)
    rates = classwise.row_normalise(np.eye(6) + 0.1)[np.ix_(order, order)]
    names = [TREE6.classes[i] for i in order]
    fig = figures.confusion_heatmap(rates, names, "c", blocks, classwise.block_values(TREE6, order, "family"))
    ax = fig.axes[0]
    squares = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(squares) == len(ax.patches) == 6  # 4 genera + 2 families
    extents = sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in squares)
    expected = sorted((a - 0.5, a - 0.5, b - a, b - a) for _, spans in blocks for a, b in spans)
    assert extents == expected
    width = {(p.get_x(), p.get_width()): p.get_linewidth() for p in squares}
    assert width[(-0.5, 3)] > width[(-0.5, 2)]  # the family's square drawn thicker than its genus'
    texts = [t.get_text() for t in ax.texts]
    assert "F1" in texts and "F2" in texts
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["family", "genus"]

    # genera as the top rank: a group of one class is outlined but not named
    genus_only = figures.confusion_heatmap(rates, names, "c", blocks[:1], ["Ga", "Gc", "Gb", "Gd"])
    named = {t.get_text() for t in genus_only.axes[0].texts} & {"Ga", "Gc", "Gb", "Gd"}
    assert named == {"Ga", "Gb"} and len(genus_only.axes[0].patches) == 4

    plain = figures.confusion_heatmap(rates, names, "c")
    assert len(plain.axes[0].patches) == 0 and plain.legends == []


def test_confusion_heatmap_names_no_group_when_there_are_too_many():
    tree = Taxonomy(("class", "genus"), pd.DataFrame({"class": [str(i) for i in range(64)],
                                                      "genus": [f"g{i // 2}" for i in range(64)]}))
    order, blocks = classwise.tree_order(tree)
    values = classwise.block_values(tree, order, "genus")
    fig = figures.confusion_heatmap(np.eye(64), [str(i) for i in order], "c", blocks, values)
    assert len(fig.axes[0].patches) == 32 and not {t.get_text() for t in fig.axes[0].texts} & set(values)
    with pytest.raises(ValueError, match="block names"):
        figures.confusion_heatmap(np.eye(64), [str(i) for i in order], "c", blocks, values[:3])
