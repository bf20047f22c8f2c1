"""Table 7's numbers (analysis.hierarchy): per-image scores agree with bioclf.taxonomy's
measures, and the Δ vs the baseline is paired, Holm-corrected and decides what it should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import hierarchy, stats, tables
from bioclf.taxonomy import Taxonomy, crm_ranking, hierarchical_distance_at_k, mistake_severity, top_k

# 8 classes: genera of 2, families of 4 (heights: same genus 1, same family 2, else the root 3)
TREE = Taxonomy(("class", "genus", "family"), pd.DataFrame({
    "class": [str(c) for c in range(8)], "genus": [f"g{c // 2}" for c in range(8)],
    "family": [f"f{c // 4}" for c in range(8)]}))


def _probs(labels: np.ndarray, predicted: np.ndarray, rng) -> np.ndarray:
    """A softmax whose argmax is ``predicted`` and whose next classes are random."""
    probs = rng.dirichlet(np.ones(8), size=len(labels)) * 0.4
    probs[np.arange(len(labels)), predicted] += 0.6
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def _run(variant, seed, run_id):
    return {"variant": variant, "seed": seed, "run_id": run_id, "status": "FINISHED"}


def _suite(predicted_by_variant: dict[str, np.ndarray], labels: np.ndarray, seeds=(0,)):
    rng = np.random.default_rng(0)
    runs, probs, preds = [], {}, {}
    paths = [f"val/{i:04d}.png" for i in range(len(labels))]
    for variant, predicted in predicted_by_variant.items():
        for seed in seeds:
            run_id = f"{variant}-{seed}"
            runs.append(_run(variant, seed, run_id))
            probs[run_id] = _probs(labels, predicted, rng)
            preds[run_id] = pd.DataFrame({"path": paths, "label": labels, "pred": predicted})
    return pd.DataFrame(runs), probs, preds


def test_scores_agree_with_the_measures_of_bioclf_taxonomy():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 120)
    predicted = np.where(rng.random(120) < 0.6, labels, rng.integers(0, 8, 120))
    runs, probs, preds = _suite({"a": predicted}, labels)
    scores, skipped = hierarchy.collect(runs, probs, preds, TREE)
    row = hierarchy.summary_frame(scores, TREE, ["a"]).set_index("ranking")
    heights = TREE.lca_heights()
    assert not skipped
    for name, ranked in ((hierarchy.SOFTMAX, top_k(probs["a-0"], 5, predicted)),
                         (hierarchy.CRM, crm_ranking(probs["a-0"], heights))):
        top1 = ranked[:, 0]
        expected = {f"{rank}_acc": np.mean(TREE.at_rank(top1, rank) == TREE.at_rank(labels, rank))
                    for rank in TREE.ranks}
        expected.update({"mistake_severity": mistake_severity(labels, top1, heights),
                         "hdist@1": hierarchical_distance_at_k(labels, ranked, heights, 1),
                         "hdist@5": hierarchical_distance_at_k(labels, ranked, heights, 5)})
        for key, value in expected.items():
            assert row.loc[name, key] == pytest.approx(value, abs=1e-12), (name, key)
    assert row.loc[hierarchy.SOFTMAX, "class_acc"] == np.mean(predicted == labels)  # the run's own accuracy
    counts = hierarchy.height_counts(scores, ["a"], 3)
    heights = TREE.lca_heights()[labels, predicted]
    assert counts.loc["a"].tolist() == [int((heights == h).sum()) for h in (1, 2, 3)]
    assert row.loc[hierarchy.SOFTMAX, "mistakes"] == counts.loc["a"].sum()


def test_runs_are_paired_by_image_path_not_row_order():
    labels = np.arange(8).repeat(5)
    runs, probs, preds = _suite({"base": labels.copy(), "same": labels.copy()}, labels)
    order = np.random.default_rng(0).permutation(len(labels))  # the second run wrote its rows shuffled
    probs["same-0"], preds["same-0"] = probs["same-0"][order], preds["same-0"].iloc[order].reset_index(drop=True)
    scores, _ = hierarchy.collect(runs, probs, preds, TREE)
    deltas = hierarchy.delta_frame(scores, "base", ["base", "same"]).set_index(["variant", "ranking"])
    row = deltas.loc[("same", hierarchy.SOFTMAX)]
    assert row["acc_delta"] == 0 and row["hdist@1_delta"] == 0 and row["hdist@1_p"] == 1.0


def test_better_mistakes_are_found_and_equal_accuracy_stays_within_noise():
    """Same images right, but one variant's mistakes stay in the genus and the baseline's cross
    families: severity and hdist@1 are 'better', top-1 is within noise, on 3 paired seeds."""
    n = 400
    labels = np.arange(n) % 8
    wrong = np.arange(n) % 4 == 0  # a quarter wrong in both
    sibling = labels ^ 1  # same genus
    far = (labels + 4) % 8  # other family
    base = np.where(wrong, far, labels)
    near = np.where(wrong, sibling, labels)
    runs, probs, preds = _suite({"ce": base, "near": near}, labels, seeds=(0, 1, 2))
    scores, _ = hierarchy.collect(runs, probs, preds, TREE)
    deltas = hierarchy.delta_frame(scores, "ce", ["ce", "near"]).set_index(["variant", "ranking"])
    row = deltas.loc[("near", hierarchy.SOFTMAX)]
    assert row["acc_delta"] == 0 and row["acc_verdict"] == stats.NOISE
    assert row["mistake_severity_delta"] == pytest.approx(1 - 3) and row["mistake_severity_verdict"] == stats.BETTER
    assert row["hdist@1_delta"] == pytest.approx(0.25 * (1 - 3)) and row["hdist@1_verdict"] == stats.BETTER
    assert row["hdist@1_low"] <= row["hdist@1_delta"] <= row["hdist@1_high"] < 0
    assert set(deltas.index) == {("ce", hierarchy.CRM), ("near", hierarchy.SOFTMAX), ("near", hierarchy.CRM)}
    # Holm per measure over the three rows: the smallest p-value is multiplied by 3
    smallest = deltas["hdist@1_p"].idxmin()
    assert deltas.loc[smallest, "hdist@1_p_holm"] == pytest.approx(min(1.0, 3 * deltas.loc[smallest, "hdist@1_p"]))

    table = tables.taxonomy_delta_table(deltas.reset_index(), "ce")
    cells = table.data.set_index(["variant", "ranking"]).loc[("near", hierarchy.SOFTMAX)]
    assert cells["mistake_severity_cell"].startswith("-2.00 [") and cells["mistake_severity_cell"].endswith("better")
    assert cells["acc_cell"].startswith("+0.0 [")


def test_paired_scores_delta_on_correctness_is_the_ablation_tables_test():
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 300)) < 0.7, rng.random((2, 300)) < 0.75
    delta, low, high, p = stats.paired_scores_delta(a, b, seed=5)
    assert (delta, low, high) == pytest.approx(stats.paired_bootstrap_delta(a, b, seed=5))
    assert p == stats.sign_flip_exact(a, b)


def test_paired_ratio_delta():
    num_a, den_a = np.array([3, 0, 3, 0]), np.array([1, 0, 1, 0])  # two mistakes at height 3
    num_b, den_b = np.array([1, 0, 2, 0]), np.array([1, 0, 1, 0])  # the same two, at 1 and 2
    delta, low, high, p = stats.paired_ratio_delta(num_a, den_a, num_b, den_b, seed=0)
    assert delta == pytest.approx(1.5 - 3) and low <= delta <= high
    same = stats.paired_ratio_delta(num_a, den_a, num_a, den_a, seed=0)
    assert same[0] == 0 and same[3] == 1.0
    assert np.isnan(stats.paired_ratio_delta(num_a, den_a * 0, num_b, den_b)[0])
