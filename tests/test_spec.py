"""Spec loading, inheritance, overrides, validation errors and hashing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from bioclf.errors import BioclfError
from bioclf.spec import expand_dotted, hash_config, load_suite, parse_set_overrides
from bioclf.spec.schema import RunConfig
from conftest import EXPERIMENTS, write_spec

# Each experiment file mirrors one table of the report; its row count is part of the contract.
TABLE_ROWS = {"base.yaml": 1, "arch_ablation.yaml": 8, "loss_ablation.yaml": 4, "aug_ablation.yaml": 10,
              "smoke.yaml": 3, "regularization_ablation.yaml": 7, "taxonomy_ablation.yaml": 6,
              "taxonomy_smoke.yaml": 6}


@pytest.mark.parametrize("name", sorted(TABLE_ROWS))
def test_every_experiment_validates_and_matches_its_table(name):
    suite = load_suite(EXPERIMENTS / name)
    assert len(suite.variants) == TABLE_ROWS[name]
    assert suite.baseline in suite.variants
    assert len({r.config_hash for r in suite.runs}) == len(suite.runs), "two rows of a table are the same config"
    first_line = (EXPERIMENTS / name).read_text().splitlines()[0]
    assert first_line.startswith(f"# {name}"), "every spec starts with a header comment naming what it mirrors"


def test_base_is_the_reports_recipe():
    cfg = load_suite(EXPERIMENTS / "base.yaml").runs[0].config
    assert cfg.model.backbone == "resnext101_32x8d" and cfg.model.pretrained == "IMAGENET1K_V2"
    assert (cfg.model.head.hidden_dim, cfg.model.head.dropout_in, cfg.model.head.dropout_hidden) == (512, 0.3, 0.5)
    assert cfg.model.head.batchnorm and cfg.loss.label_smoothing == 0.1
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 1e-3, 1e-4)
    assert (cfg.scheduler.name, cfg.scheduler.factor, cfg.scheduler.patience) == ("plateau", 0.2, 3)
    assert (cfg.early_stopping.patience, cfg.early_stopping.min_delta) == (10, 1e-5)
    assert cfg.data.batch_size == 64 and cfg.train.seed == 42 and cfg.model.max_params == 100_000_000
    names = [t["name"] for t in cfg.data.train_transforms]
    assert names == ["random_resized_crop", "horizontal_flip", "rotation", "color_jitter", "affine", "random_erasing"]


def test_aug_ablation_rows_differ_only_in_the_pipeline():
    suite = load_suite(EXPERIMENTS / "aug_ablation.yaml")
    for variant in suite.variants:
        assert set(suite.diff_from_baseline(variant)) <= {"data.train_transforms"}
    lengths = [len(suite.runs_of(v)[0].config.data.train_transforms) for v in list(suite.variants)[1:7]]
    assert lengths == [1, 2, 3, 4, 5, 6], "cumulative rows add one component each"


def test_extends_chain_deep_merges_and_lists_replace(tmp_path):
    write_spec(tmp_path, {"name": "a", "optimizer": {"lr": 0.5, "weight_decay": 0.1},
                          "data": {"train_transforms": ["horizontal_flip", "rotation"]}}, "a.yaml")
    write_spec(tmp_path, {"extends": "a.yaml", "optimizer": {"lr": 0.25}}, "b.yaml")
    c = write_spec(tmp_path, {"extends": "b.yaml", "name": "c", "data": {"train_transforms": ["vertical_flip"]}},
                   "c.yaml")
    cfg = load_suite(c).runs[0].config
    assert cfg.optimizer.lr == 0.25 and cfg.optimizer.weight_decay == 0.1
    assert [t["name"] for t in cfg.data.train_transforms] == ["vertical_flip"]
    assert load_suite(c).name == "c"


def test_extends_cycle_is_an_error(tmp_path):
    write_spec(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    write_spec(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(BioclfError, match="cycle"):
        load_suite(tmp_path / "a.yaml")


def test_variants_dotted_and_nested_overrides(tmp_path):
    path = write_spec(tmp_path, {"name": "x", "variants": {
        "a": {}, "b": {"loss.label_smoothing": 0.2}, "c": {"loss": {"label_smoothing": 0.05}}}})
    suite = load_suite(path)
    assert [r.config.loss.label_smoothing for r in suite.runs] == [0.1, 0.2, 0.05]
    assert suite.diff_from_baseline("b") == {"loss.label_smoothing": (0.1, 0.2)}


def test_set_override_is_validated(tmp_path):
    path = write_spec(tmp_path, {"name": "x"})
    with pytest.raises(BioclfError, match="batchnorm and dropout_hidden need a hidden layer"):
        load_suite(path, overrides=parse_set_overrides(["model.head.hidden_dim=null"]))


def test_set_override_reaches_every_variant(tmp_path):
    path = write_spec(tmp_path, {"name": "x", "variants": {"a": {}, "b": {"train.epochs": 7}}})
    suite = load_suite(path, overrides=parse_set_overrides(["train.epochs=2"]))
    assert [r.config.train.epochs for r in suite.runs] == [2, 2]


def test_seeds_expand_runs_variant_major(tmp_path):
    path = write_spec(tmp_path, {"name": "x", "seeds": [1, 2, 3], "variants": {"a": {}, "b": {"optimizer.lr": 0.1}}})
    suite = load_suite(path)
    assert [(r.variant, r.seed) for r in suite.runs] == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    assert [r.config.train.seed for r in suite.runs] == [1, 2, 3, 1, 2, 3]
    assert len(load_suite(path, seeds=[7]).runs) == 2


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"model": {"bakbone": "resnet18"}}, "unknown key 'model.bakbone' (did you mean 'backbone'"),
        ({"modle": {}}, "unknown key 'modle' (did you mean 'model'"),
        ({"model": {"backbone": "resnet19"}}, "model.backbone: unknown backbone 'resnet19'"),
        ({"model": {"backbone": "resnet18", "pretrained": "IMAGENET1K_V9"}}, "unknown weights 'IMAGENET1K_V9'"),
        ({"optimizer": {"name": "adamm"}}, "unknown optimizer 'adamm' (did you mean adam"),
        ({"scheduler": {"name": "cosin"}}, "unknown scheduler 'cosin'"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr: Input should be a valid number"),
        ({"train": {"epochs": 0}}, "train.epochs: Input should be greater than or equal to 1"),
        ({"data": {"train_transforms": ["rotaton"]}}, "unknown augmentation 'rotaton' (did you mean rotation"),
        ({"data": {"train_transforms": [{"name": "rotation", "degres": 3}]}}, "degres"),
        ({"data": {"source": "folder"}}, "data.root is required"),
        ({"variants": {"a": {"loss.label_smothing": 0.1}}}, "variants.a: unknown key 'loss.label_smothing'"),
        ({"baseline": "nope", "variants": {"a": {}}}, "baseline: 'nope' is not a variant"),
        ({"seeds": "42"}, "seeds: must be a non-empty list of integers"),
    ],
)
def test_validation_errors_name_the_key(tmp_path, spec, expected):
    path = write_spec(tmp_path, {"name": "bad", **spec})
    with pytest.raises(BioclfError) as info:
        load_suite(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message and "\n" not in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel:\n  backbone: [resnet18\n")
    with pytest.raises(BioclfError, match=r"broken.yaml: line \d+"):
        load_suite(path)


def test_missing_spec_file():
    with pytest.raises(BioclfError, match="spec file not found"):
        load_suite("does/not/exist.yaml")


def test_hash_is_stable_and_ignores_non_result_fields():
    a = RunConfig.model_validate({"optimizer": {"lr": 0.001, "weight_decay": 1e-4}, "data": {"num_workers": 0}})
    b = RunConfig.model_validate({"data": {"num_workers": 16, "pin_memory": False}, "train": {"device": "cpu"},
                                  "optimizer": {"weight_decay": 0.0001, "lr": 1e-3}})
    c = RunConfig.model_validate({"optimizer": {"lr": 2e-3}})
    assert hash_config(a) == hash_config(b) != hash_config(c)
    assert len(hash_config(a)) == 12


def test_hash_is_the_same_in_another_process():
    code = ("from bioclf.spec import load_suite; import sys; "
            f"print(load_suite({str(EXPERIMENTS / 'loss_ablation.yaml')!r}).runs[2].config_hash)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == load_suite(EXPERIMENTS / "loss_ablation.yaml").runs[2].config_hash


def test_relative_data_root_is_relative_to_the_spec(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    path = write_spec(sub, {"name": "x", "data": {"source": "folder", "root": "../photos"}})
    assert load_suite(path).runs[0].config.data.root == str((tmp_path / "photos").resolve())


def test_expand_dotted():
    assert expand_dotted({"a.b.c": 1, "a.d": 2, "e": {"f.g": 3}}) == {"a": {"b": {"c": 1}, "d": 2}, "e": {"f": {"g": 3}}}


def test_set_override_parse_errors():
    with pytest.raises(BioclfError, match="KEY=VALUE"):
        parse_set_overrides(["train.epochs"])
    assert parse_set_overrides(["a=1", "b=null", "c=[1, 2]", "d=x"]) == {"a": 1, "b": None, "c": [1, 2], "d": "x"}


def test_spec_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(BioclfError, match="invalid YAML"):
        load_suite(path)


def test_spec_text_is_yaml_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(BioclfError, match="must be a mapping"):
        load_suite(path)


def test_config_reference_doc_is_current():
    from bioclf.spec.reference import config_reference

    doc = (EXPERIMENTS.parent / "docs" / "config.md").read_text()
    assert doc.strip() == config_reference().strip(), "regenerate: python -m bioclf.spec.reference > docs/config.md"
