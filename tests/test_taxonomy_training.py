"""Training with a class tree: the taxonomy-aware losses (by hand), the hierarchical head, the
spec fields and their checks before training, the generated tree, and every row of
experiments/taxonomy_ablation.yaml trained tiny on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from bioclf.engine.hierarchy import HXELoss, RankHeadLoss, SoftLabelLoss, soft_label_matrix
from bioclf.errors import BioclfError
from bioclf.spec import expand_dotted, hash_config
from bioclf.spec.schema import RunConfig
from bioclf.taxonomy import read_taxonomy, synthetic_taxonomy
from conftest import EXPERIMENTS, TINY, write_spec

CLASSES = ["a1", "a2", "b1", "c1"]
TREE = "class,genus,family\na1,A,F1\na2,A,F1\nb1,B,F1\nc1,C,F2\n"  # heights as in test_taxonomy.py


@pytest.fixture
def tree(tmp_path):
    path = tmp_path / "taxonomy.csv"
    path.write_text(TREE)
    return read_taxonomy(path, CLASSES)


P = torch.tensor([[0.4, 0.2, 0.3, 0.1]])


def test_hxe_by_hand(tree):
    """Label a1: -log p(a1|A) - e^-a log p(A|F1) - e^-2a log p(F1|root), P(A) = .6, P(F1) = .9."""
    loss = HXELoss(tree, alpha=1.0, smoothing=0.0)(P.log(), torch.tensor([0]))
    by_hand = -math.log(0.4 / 0.6) - math.exp(-1) * math.log(0.6 / 0.9) - math.exp(-2) * math.log(0.9)
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_hxe_with_alpha_0_is_cross_entropy_label_smoothing_included(tree):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 2])
    for smoothing in (0.0, 0.1):
        hxe = HXELoss(tree, alpha=0.0, smoothing=smoothing)(logits, labels)
        assert hxe.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=smoothing).item(), rel=1e-5)


def test_soft_labels_by_hand(tree):
    """Target of a1 at beta 3: softmax(-3 * [0, 1, 2, 3] / 3); rows sum to 1; a huge beta is one-hot."""
    heights = torch.as_tensor(tree.lca_heights(), dtype=torch.float32)
    soft = soft_label_matrix(heights, 3.0)
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    expected = torch.softmax(-torch.tensor([0.0, 1.0, 2.0, 3.0]), 0)
    torch.testing.assert_close(soft[0], expected)
    loss = SoftLabelLoss(tree, beta=3.0, smoothing=0.0)(P.log(), torch.tensor([0]))
    assert loss.item() == pytest.approx(float(-(expected * P[0].log()).sum()), rel=1e-5)
    torch.testing.assert_close(soft_label_matrix(heights, 1e4), torch.eye(4))


@pytest.mark.parametrize("make", [lambda t: HXELoss(t, 0.5, 0.1), lambda t: SoftLabelLoss(t, 5.0, 0.1)])
def test_a_mixed_target_gets_the_mix_of_the_two_losses(tree, make):
    """MixUp hands the loss class probabilities: the loss of 0.3 a1 + 0.7 c1 is the same mix."""
    loss = make(tree)
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.1]])
    mixed = loss(logits, torch.tensor([[0.3, 0.0, 0.0, 0.7]]))
    apart = 0.3 * loss(logits, torch.tensor([0])) + 0.7 * loss(logits, torch.tensor([3]))
    assert mixed.item() == pytest.approx(apart.item(), rel=1e-5)


def test_hierarchical_head_outputs_and_its_loss(tree):
    from bioclf.models.heads import RankHead, flat_head, rank_sizes_of
    from bioclf.spec.schema import HeadConfig

    head = RankHead(flat_head(HeadConfig(hidden_dim=8), 6, 4), (3, 2))  # genus: 3 values, family: 2
    x = torch.randn(5, 6)
    assert head.train()(x).shape == (5, 4 + 3 + 2)
    assert head.eval()(x).shape == (5, 4)
    assert rank_sizes_of({f"head.{k}": v for k, v in head.state_dict().items()}) == (3, 2)

    weights = {"class": 1.0, "genus": 0.5, "family": 0.25}
    loss = RankHeadLoss(torch.nn.CrossEntropyLoss(), tree, weights, smoothing=0.0)
    logits, labels = torch.randn(5, 9), torch.tensor([0, 1, 2, 3, 1])
    genus, family = torch.tensor([0, 0, 1, 2, 0]), torch.tensor([0, 0, 0, 1, 0])
    by_hand = (F.cross_entropy(logits[:, :4], labels) + 0.5 * F.cross_entropy(logits[:, 4:7], genus)
               + 0.25 * F.cross_entropy(logits[:, 7:], family))
    assert loss(logits, labels).item() == pytest.approx(by_hand.item(), rel=1e-5)
    # evaluation sees the class logits only: the loss is the class output's
    assert loss(logits[:, :4], labels).item() == pytest.approx(F.cross_entropy(logits[:, :4], labels).item(), rel=1e-6)


def test_parameter_counts_by_formula_match_a_built_hierarchical_head(tmp_path, tree):
    from bioclf.inventory import extra_outputs
    from bioclf.models import build_model, count_params
    from bioclf.models.catalog import param_count

    csv = tmp_path / "taxonomy.csv"
    csv.write_text(TREE)
    weights = {"class": 1.0, "family": 0.2, "genus": 0.5}  # any order: outputs follow the tree
    for data in ({"source": "synthetic", "synthetic": {"num_classes": 10, "hierarchy": [3, 2]}},
                 {"source": "synthetic", "synthetic": {"num_classes": 4}, "taxonomy": str(csv)}):
        cfg = RunConfig.model_validate({"data": data, "model": {"backbone": "resnet18", "head": {
            "hidden_dim": 16, "rank_weights": weights}}})
        sizes = extra_outputs(cfg, cfg.data.synthetic.num_classes)
        assert sizes == ((4, 2) if "hierarchy" in data["synthetic"] else (3, 2))
        built = build_model(cfg.model, cfg.data.synthetic.num_classes, load_weights=False, rank_sizes=sizes)
        assert count_params(built).total == param_count(cfg.model, cfg.data.synthetic.num_classes, sizes).total


@pytest.mark.parametrize("over, message", [
    ({"loss": {"name": "hxe"}}, "loss.name: hxe needs a class taxonomy"),
    ({"model": {"head": {"rank_weights": {"class": 1.0}}}}, "model.head.rank_weights needs a class taxonomy"),
    ({"data": {"synthetic": {"hierarchy": [3]}}, "model": {"head": {"rank_weights": {"genus": 1.0}}}},
     "needs 'class'"),
    ({"data": {"synthetic": {"hierarchy": [3]}}, "model": {"head": {"rank_weights": {"class": 1, "family": 1}}}},
     "'family' is not a rank of the taxonomy (data.synthetic.hierarchy); its ranks: class, genus"),
    ({"data": {"synthetic": {"hierarchy": [1, 2]}}}, "at least 2"),
])
def test_tree_options_without_a_fitting_tree_are_refused(tmp_path, capsys, over, message):
    from bioclf.cli import main

    spec = write_spec(tmp_path, {**TINY, **{k: {**TINY.get(k, {}), **v} for k, v in over.items()},
                                 "variants": {"a": {}}, "baseline": "a"})
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_taxonomy_is_hashed_by_content(tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "moved.csv"
    one.write_text(TREE)
    two.write_text(TREE)
    cfg = lambda path: RunConfig.model_validate({"data": {"taxonomy": str(path)}})  # noqa: E731
    assert hash_config(cfg(one)) == hash_config(cfg(two)) != hash_config(RunConfig())
    two.write_text(TREE.replace("b1,B,F1", "b1,A,F1"))
    assert hash_config(cfg(one)) != hash_config(cfg(two))


def test_the_generated_tree_makes_siblings_look_alike():
    """Hue distance grows with the tree distance: siblings < genera of one family < families."""
    from bioclf.data.synthetic import class_look

    hierarchy = (3, 2)  # 12 classes: genera {0,1,2} {3,4,5} in family 0, {6,7,8} {9,10,11} in family 1
    hue = lambda c: class_look(c, hierarchy)[1][0]  # noqa: E731
    dist = lambda a, b: min(abs(hue(a) - hue(b)), 1 - abs(hue(a) - hue(b)))  # noqa: E731
    siblings = max(dist(0, 1), dist(0, 2), dist(9, 11))
    cousins = [dist(a, b) for a in range(3) for b in range(3, 6)]
    strangers = [dist(a, b) for a in range(6) for b in range(6, 12)]
    assert siblings <= 0.04 < min(cousins) and max(cousins) < 0.12 < min(strangers)
    assert len({class_look(c, hierarchy)[0] for c in range(3)}) == 3  # siblings differ by shape
    tree = synthetic_taxonomy(7, [3, 2])
    assert tree.ranks == ("class", "genus", "family")
    assert tree.table["genus"].tolist() == ["g0"] * 3 + ["g1"] * 3 + ["g2"]
    assert tree.table["family"].tolist() == ["f0"] * 6 + ["f1"]


def test_taxonomy_smoke_has_the_rows_of_the_taxonomy_ablation():
    rows = lambda name: yaml.safe_load((EXPERIMENTS / name).read_text())["variants"]  # noqa: E731
    assert rows("taxonomy_smoke.yaml") == rows("taxonomy_ablation.yaml")


def test_every_row_of_the_taxonomy_ablation_trains_tiny(tmp_path):
    """Each row over the tiny config with a generated 6-class tree trains an epoch; the tree is
    logged; a hierarchical head's checkpoint loads back for predict without the tree."""
    from bioclf.engine import train
    from bioclf.engine.checkpoint import load_checkpoint
    from bioclf.predict import load_model
    from recording import RecordingLogger
    from test_engine import tiny_config

    rows = yaml.safe_load((EXPERIMENTS / "taxonomy_ablation.yaml").read_text())["variants"]
    losses = {}
    for name, overrides in rows.items():
        over = expand_dotted(overrides)
        over["train"] = {"epochs": 1}
        over["data"] = {"synthetic": {"num_classes": 6, "hierarchy": [3, 2]}}
        cfg = tiny_config(**over)
        log = RecordingLogger()
        train(cfg, log, tmp_path / name, quiet=True)
        losses[name] = log.epochs[0][1]["train_loss"]
        assert math.isfinite(losses[name]), name
        logged = read_taxonomy(log.artifacts["taxonomy.csv"], [str(c) for c in range(6)])
        assert logged.table["genus"].tolist() == ["g0"] * 3 + ["g1"] * 3
    assert len(set(losses.values())) == len(rows)  # every row changed what was trained
    state = load_checkpoint(tmp_path / "rank_head" / "checkpoints" / "best.pt")
    model = load_model(cfg, 6, state, torch.device("cpu"), "run")
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 6)


def test_a_taxonomy_that_does_not_fit_stops_the_suite_before_anything_is_written(tmp_path, capsys):
    from bioclf.cli import main

    bad = tmp_path / "taxonomy.csv"
    bad.write_text("class,genus\n0,g0\n1,g0\n2,g1\n")  # class 3 of the 4 has no row
    spec = write_spec(tmp_path, {**TINY, "data": {**TINY["data"], "taxonomy": "taxonomy.csv"},
                                 "loss": {"name": "hxe"}, "variants": {"a": {}}, "baseline": "a"})
    store = tmp_path / "store"
    assert main(["run", str(spec), "--quiet", "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err
    assert "data.taxonomy:" in err and "class '3' of the dataset has no row" in err and "Traceback" not in err
    assert not (store / "mlflow.db").exists()


def test_check_data_shows_the_tree(tmp_path, capsys):
    from bioclf.cli import main
    from test_checkdata import make_dataset

    root = make_dataset(tmp_path / "data", classes=4, train=2, val=1, test=0)  # class folders 0..3
    tree_file = tmp_path / "taxonomy.csv"
    tree_file.write_text("class,genus,family\n0,A,F1\n1,A,F1\n2,B,F1\n3,C,F2\n")
    assert main(["check-data", str(root), "--quiet", "--no-cache", "--taxonomy", str(tree_file)]) == 0
    out = capsys.readouterr().out
    assert "taxonomy: class -> genus -> family: 4 classes; 3 genus values, 2 with one class; " \
           "2 family values, 1 with one class" in out
    tree_file.write_text("class,genus,family\n0,A,F1\n1,A,F1\n2,B,F1\n")
    assert main(["check-data", str(root), "--quiet", "--no-cache", "--taxonomy", str(tree_file)]) == 2
    assert "class '3' of the dataset has no row" in capsys.readouterr().err


def test_run_taxonomy_names_the_key(tmp_path):
    from bioclf.taxonomy import run_taxonomy

    path = tmp_path / "t.csv"
    path.write_text(TREE)
    cfg = RunConfig.model_validate({"data": {"taxonomy": str(path)},
                                    "model": {"head": {"rank_weights": {"class": 1, "order": 1}}}})
    with pytest.raises(BioclfError, match="'order' is not a rank of the taxonomy"):
        run_taxonomy(cfg, CLASSES)
    with pytest.raises(BioclfError, match="^data.taxonomy: .*'a1' is not a class of the dataset"):
        run_taxonomy(cfg, ["x", *CLASSES[1:]])
    assert np.array_equal(run_taxonomy(RunConfig.model_validate({"data": {"taxonomy": str(path)}}), CLASSES)
                          .lca_heights()[0], [0, 1, 2, 3])
