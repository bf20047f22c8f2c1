"""K-fold out-of-fold evaluation: the split (every labelled image held out exactly once, classes
stratified, duplicates kept together, seeded), the suite's K runs per variant x seed, the checks
before training, and the report pooling the folds into one row over every labelled image."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from bioclf.data.folds import FoldPlan, assign_folds, check_fold_counts, fold_datasets, group_ids
from bioclf.errors import BioclfError
from bioclf.spec import load_suite
from conftest import TINY, write_spec


def test_every_image_is_held_out_once_per_class_in_every_fold():
    labels = np.repeat(np.arange(5), [10, 7, 5, 12, 6])
    folds = assign_folds(labels, np.arange(len(labels)), 5, seed=0)
    assert sorted(Counter(folds.tolist())) == [0, 1, 2, 3, 4] and (folds >= 0).all()  # one fold per image
    for c in range(5):  # stratified: every class in every fold
        assert set(folds[labels == c]) == set(range(5))
    assert np.array_equal(folds, assign_folds(labels, np.arange(len(labels)), 5, seed=0))  # seeded
    assert not np.array_equal(folds, assign_folds(labels, np.arange(len(labels)), 5, seed=1))


def test_duplicate_groups_stay_inside_one_fold():
    paths = [f"/d/{split}/{c}/{i}.jpg" for split in ("train", "val") for c in range(3) for i in range(6)]
    labels = np.array([c for _ in ("train", "val") for c in range(3) for _ in range(6)])
    twins = (("/d/train/0/0.jpg", "/d/val/0/3.jpg"), ("/d/train/1/2.jpg", "/d/./val/1/2.jpg", "/d/train/1/4.jpg"))
    ids = group_ids(paths, twins)
    assert ids[paths.index("/d/train/0/0.jpg")] == ids[paths.index("/d/val/0/3.jpg")]
    assert len(set(ids)) == len(paths) - 1 - 2  # two groups: 2 and 3 paths (normalised)
    for seed in range(5):
        folds = assign_folds(labels, ids, 3, seed)
        for group in twins:
            assert len({folds[paths.index(p.replace('/./', '/'))] for p in group}) == 1


def test_a_class_smaller_than_the_folds_is_one_line():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 3)
    check_fold_counts(labels, ["a", "b", "c"], 2)
    with pytest.raises(BioclfError, match=r"^evaluation.folds: 3 folds need at least 3 labelled images \(train \+ "
                                          r"val\) of every class; class 'b' has 2: lower evaluation.folds$"):
        check_fold_counts(labels, ["a", "b", "c"], 3)


def test_the_fold_datasets_partition_train_and_val_with_the_right_transforms():
    from bioclf.data.synthetic import SyntheticDataset
    from bioclf.spec.schema import SyntheticConfig

    cfg = SyntheticConfig(num_classes=3, train_per_class=5, val_per_class=2, image_size=8)
    train_tf, eval_tf = (lambda img: ("train", img.size)), (lambda img: ("eval", img.size))
    parts = {(split, name): SyntheticDataset(cfg, split, tf) for split in ("train", "val")
             for name, tf in (("train", train_tf), ("eval", eval_tf))}
    held_out = []
    for fold in range(3):
        train, held = fold_datasets((parts["train", "train"], parts["val", "train"]),
                                    (parts["train", "eval"], parts["val", "eval"]), FoldPlan(3, fold))
        rows = train.fold_rows
        train_paths, held_paths = {p for p, _ in train.samples}, {p for p, _ in held.samples}
        assert not train_paths & held_paths and len(train_paths | held_paths) == 21
        assert {p for p, _, f in rows if f == fold} == held_paths
        assert train[0][0][0] == "train" and held[0][0][0] == "eval"
        assert held.targets == [label for _, label in held.samples]
        held_out += held_paths
    assert len(held_out) == len(set(held_out)) == 21  # every labelled image held out exactly once


def test_the_suite_trains_k_runs_per_variant_and_seed(tmp_path):
    spec = write_spec(tmp_path, {**TINY, "variants": {"a": {}, "b": {"loss.label_smoothing": 0.0}}, "seeds": [0, 1]})
    suite = load_suite(spec, overrides={"evaluation.folds": 3})
    assert [(r.variant, r.seed, r.fold) for r in suite.runs[:4]] == [("a", 0, 0), ("a", 0, 1), ("a", 0, 2), ("a", 1, 0)]
    assert len(suite.runs) == 12 and len({r.config_hash for r in suite.runs}) == 12
    assert suite.runs[0].name == "a seed 0 fold 0"
    plain = load_suite(spec)
    assert {r.config_hash for r in plain.runs}.isdisjoint(r.config_hash for r in suite.runs)
    one = load_suite(spec, overrides={"evaluation.folds": 3, "evaluation.fold": 2})
    assert [r.fold for r in one.runs] == [2, 2, 2, 2]
    with pytest.raises(BioclfError, match="evaluation.fold: 3 needs evaluation.folds above it"):
        load_suite(spec, overrides={"evaluation.folds": 3, "evaluation.fold": 3})


def test_folds_larger_than_a_class_stop_the_suite_before_anything_is_written(tmp_path, capsys):
    from bioclf.cli import main

    spec = write_spec(tmp_path, {**TINY, "variants": {"a": {}}})  # 24 + 8 images per class
    store = tmp_path / "store"
    assert main(["run", str(spec), "--folds", "40", "--quiet", "--tracking-uri", f"sqlite:///{store / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert "evaluation.folds: 40 folds need at least 40 labelled images (train + val) of every class; class '0' " \
           "has 32" in err and "Traceback" not in err
    assert not (store / "m.db").exists()
    assert main(["run", str(spec), "--folds", "1", "--dry-run"]) == 2
    assert "--folds '1': expected an integer of at least 2" in capsys.readouterr().err


def test_folder_duplicates_found_by_the_data_check_reach_the_split(tmp_path):
    import shutil

    from bioclf.runner import check_data
    from test_checkdata import make_dataset

    root = make_dataset(tmp_path / "data", classes=2, train=4, val=2, test=0)
    shutil.copy(root / "train/0/img0001.jpg", root / "val/0/leak.jpg")
    spec = write_spec(tmp_path, {"name": "f", "data": {"source": "folder", "root": str(root), "num_workers": 0},
                                 "model": {"backbone": "resnet18"}, "evaluation": {"folds": 2}})
    runs = load_suite(spec).runs
    _, _, groups = check_data(runs, spec.parent, echo=lambda line: None)
    (found,) = groups.values()
    assert [sorted(g) for g in found] == [sorted([str(root / "train/0/img0001.jpg"), str(root / "val/0/leak.jpg")])]


def test_a_folds_suite_end_to_end_and_its_report_on_every_labelled_image(tmp_path, capsys):
    """Two variants x 2 folds train; a rerun skips them all; the report pools each variant's
    folds: its accuracy is over all 4 x (24 + 8) images, the folds' split is logged."""
    from mlflow.tracking import MlflowClient

    from analysis.cli import main as report
    from bioclf.cli import main

    spec = write_spec(tmp_path, {**TINY, "train": {"epochs": 1},
                                 "variants": {"a": {}, "b": {"loss.label_smoothing": 0.0}}})
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    args = ["run", str(spec), "--folds", "2", "--quiet", "--tracking-uri", uri]
    assert main(args) == 0
    assert main(args) == 0 and "4 run(s): 0 trained, 4 already finished" in capsys.readouterr().out
    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "tiny"]
    children = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'")
    assert sorted((r.data.tags["bioclf.variant"], r.data.tags["bioclf.fold"]) for r in children) == \
        [("a", "0"), ("a", "1"), ("b", "0"), ("b", "1")]
    split = pd.read_csv(client.download_artifacts(children[0].info.run_id, "folds.csv", str(tmp_path)))
    assert len(split) == 128 and sorted(split["fold"].unique()) == [0, 1] and split["path"].is_unique

    out = tmp_path / "reports"
    assert report(["--tracking-uri", uri, "--out", str(out), "--no-log"]) == 0
    ablation = pd.read_csv(out / "tiny" / "tables" / "ablation.csv").set_index("variant")
    folds = pd.read_csv(out / "tiny" / "tables" / "table3b_folds.csv").set_index("variant")
    assert list(folds["n_folds"]) == [2, 2]
    for variant in ("a", "b"):
        runs = [r for r in children if r.data.tags["bioclf.variant"] == variant]
        correct = sum(r.data.metrics["best_val_acc"] * len(split[split["fold"] == int(r.data.tags["bioclf.fold"])])
                      for r in runs)
        assert ablation.loc[variant, "val_acc_mean"] == pytest.approx(correct / 128, abs=1e-9)
    assert "percentile bootstrap over the 128 validation images" in (out / "tiny" / "tables" / "ablation.md").read_text()
    assert "Out-of-fold evaluation (2 folds)" in (out / "tiny" / "index.md").read_text()


def test_pooling_a_suite_with_a_missing_fold_leaves_the_row_unfinished():
    from analysis.folds import fold_spread, pool_folds
    from analysis.suite import SuiteData

    def run(variant, fold, status="FINISHED", acc=0.5):
        return {"variant": variant, "seed": 0, "fold": fold, "run_id": f"{variant}{fold}", "status": status,
                "best_val_acc": acc, "train_time_s": 10.0, "params.evaluation.folds": "2"}

    def preds(offset):
        return pd.DataFrame({"path": [f"p{offset + i}" for i in range(4)], "label": [0, 1, 0, 1],
                             "pred": [0, 1, 1, 1], "top5": ["0 1", "1 0", "1 0", "1 0"]})

    runs = pd.DataFrame([run("a", 0, acc=0.75), run("a", 1, acc=0.75), run("b", 0)])  # b's fold 1 never ran
    data = SuiteData("e", "s", "uri", "a", ["a", "b"], runs, pd.DataFrame(),
                     predictions={"a0": preds(0), "a1": preds(4), "b0": preds(0)})
    pooled = pool_folds(data)
    rows = pooled.runs.set_index("variant")
    assert rows.loc["a", "status"] == "FINISHED" and rows.loc["a", "best_val_acc"] == 0.75
    assert rows.loc["a", "train_time_s"] == 20.0 and len(pooled.predictions["a0"]) == 8
    assert rows.loc["b", "status"] == "NOT RUN" and np.isnan(rows.loc["b", "best_val_acc"])
    assert "b0" not in pooled.predictions  # a partial row is not tested against the baseline
    spread = fold_spread(pooled.fold_runs, ["a", "b"]).set_index("variant")
    assert spread.loc["a", "fold_accs"] == "75.0 / 75.0" and spread.loc["a", "n_folds"] == 2


def test_a_fold_run_resumes_as_if_never_interrupted(tmp_path):
    """A fold run is a run: killed after epoch 2 and resumed, it ends where an uninterrupted one does,
    on the same held-out fold."""
    from test_engine import tiny_config
    from test_resume import uninterrupted_and_resumed

    cfg = tiny_config(train={"epochs": 3}, evaluation={"folds": 3, "fold": 1})
    reference, resumed = uninterrupted_and_resumed(cfg, tmp_path)
    assert [e for e, _ in resumed.epochs] == [1, 2, 3]
    assert resumed.summary["best_val_acc"] == pytest.approx(reference.summary["best_val_acc"])
    held = pd.read_csv(resumed.artifacts["predictions/val.csv"])["path"]
    split = pd.read_csv(reference.artifacts["folds.csv"])
    assert sorted(held) == sorted(split.loc[split["fold"] == 1, "path"])
