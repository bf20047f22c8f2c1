"""The class taxonomy: reading and checking the CSV (one line naming the row), LCA heights,
mistake severity, hierarchical distance@k and CRM, on small hand-computed trees."""

from __future__ import annotations

import numpy as np
import pytest

from bioclf.errors import BioclfError
from bioclf.taxonomy import (
    crm_ranking,
    hierarchical_distance_at_k,
    mistake_severity,
    read_taxonomy,
    top_k,
)

CLASSES = ["a1", "a2", "b1", "c1"]
TREE = "class,genus,family\nc1,C,F2\na1,A,F1\nb1,B,F1\na2,A,F1\n"  # rows in any order
# heights: same genus 1, same family 2, different families 3 (the root)
HEIGHTS = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 2, 0, 3], [3, 3, 3, 0]])


@pytest.fixture
def tax(tmp_path):
    path = tmp_path / "taxonomy.csv"
    path.write_text(TREE)
    return read_taxonomy(path, CLASSES)


def test_lca_heights_of_a_hand_drawn_tree(tax):
    assert tax.ranks == ("class", "genus", "family") and tax.classes == CLASSES
    np.testing.assert_array_equal(tax.lca_heights(), HEIGHTS)
    summary = tax.summary().set_index("rank")
    assert summary.loc["genus", "values"] == 3 and summary.loc["genus", "singletons"] == 2
    assert summary.loc["family", "values"] == 2 and summary.loc["family", "largest"] == 3


PROBS = np.array([[0.10, 0.50, 0.30, 0.10],   # a1 taken for a2: same genus, height 1
                  [0.20, 0.10, 0.32, 0.38],   # b1 taken for c1: other family, height 3
                  [0.05, 0.05, 0.10, 0.80]])  # c1 right
LABELS = np.array([0, 2, 3])


def test_severity_and_hierarchical_distance_by_hand():
    ranking = top_k(PROBS, 2)
    assert ranking.tolist() == [[1, 2], [3, 2], [3, 2]]
    assert mistake_severity(LABELS, ranking[:, 0], HEIGHTS) == pytest.approx((1 + 3) / 2)
    assert hierarchical_distance_at_k(LABELS, ranking, HEIGHTS, 1) == pytest.approx((1 + 3 + 0) / 3)
    assert hierarchical_distance_at_k(LABELS, ranking, HEIGHTS, 2) == pytest.approx((1.5 + 1.5 + 1.5) / 3)
    assert np.isnan(mistake_severity(LABELS, LABELS, HEIGHTS))


def test_crm_is_the_argmin_of_expected_cost():
    # image 1 by hand: cost(a1) = .1 + .64 + 1.14 = 1.88, cost(a2) = 1.98, cost(b1) = 1.74, cost(c1) = 1.86
    assert crm_ranking(PROBS, HEIGHTS)[1].tolist() == [2, 3, 0, 1]  # CRM corrects b1's mistake
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    brute = [min(range(4), key=lambda j: sum(p[c] * HEIGHTS[c, j] for c in range(4))) for p in probs]
    assert crm_ranking(probs, HEIGHTS)[:, 0].tolist() == brute


def test_per_rank_accuracy_severity_and_crm_of_a_run(tax):
    """The report's per-image scores (analysis.hierarchy.run_scores) of the hand-computed images."""
    from analysis.hierarchy import CRM, SOFTMAX, run_scores

    scores = run_scores(PROBS, LABELS, tax, HEIGHTS)
    plain, crm = scores[SOFTMAX], scores[CRM]
    assert plain.rank_correct["class"].mean() == pytest.approx(1 / 3)
    assert plain.rank_correct["genus"].mean() == pytest.approx(2 / 3)
    assert plain.rank_correct["family"].mean() == pytest.approx(2 / 3)
    assert plain.height1.tolist() == [1, 3, 0]  # severity 2, hdist@1 4/3
    assert crm.rank_correct["class"].mean() == pytest.approx(2 / 3)  # image 1 now right
    assert crm.height1.tolist() == [1, 0, 0]  # severity 1, hdist@1 1/3


def test_the_runs_own_prediction_wins_a_float16_tie():
    """val_probs.npz is float16: two classes can round to one value; top-1 is then the run's pred."""
    probs = np.array([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45]], dtype=np.float16)
    assert top_k(probs, 2).tolist() == [[0, 1], [1, 2]]
    assert top_k(probs, 2, first=np.array([1, 2])).tolist() == [[1, 0], [2, 1]]


@pytest.mark.parametrize("text, message", [
    ("class,genus\na1,A\na2,A\nb1,B\n", "class 'c1' of the dataset has no row"),
    ("class,genus\na1,A\n", "3 classes of the dataset have no row: 'a2', 'b1', 'c1'"),
    ("class,genus\na1,A\na2,A\nb1,B\nc1,C\nz9,Z\n", "row 6: 'z9' is not a class of the dataset"),
    ("class,genus\na1,A\na2,A\na1,B\nb1,B\nc1,C\n", "row 4: class 'a1' is listed twice (also row 2)"),
    ("class,genus,family\na1,A,F1\na2,A,F2\nb1,B,F1\nc1,C,F2\n", "row 3: genus 'A' has two family values"),
    ("class,genus\na1,A\na2,a1\nb1,B\nc1,C\n", "row 3: 'a1' is a genus here and a class in row 2"),
    ("class,genus\na1,A\na2,\nb1,B\nc1,C\n", "row 3: empty 'genus'"),
    ("species,genus\na1,A\n", "the header must name the ranks from the class upward"),
    ("class\na1\na2\nb1\nc1\n", "the header must name the ranks"),
])
def test_a_bad_taxonomy_is_one_line_naming_the_row(tmp_path, text, message):
    path = tmp_path / "taxonomy.csv"
    path.write_text(text)
    with pytest.raises(BioclfError) as err:
        read_taxonomy(path, CLASSES)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(BioclfError, match="no such taxonomy file"):
        read_taxonomy(tmp_path / "nope.csv", CLASSES)
