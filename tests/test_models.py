"""Backbone registry, heads, exact parameter counts, budget and the offline weights rule."""

from __future__ import annotations

import pytest
import torch

from bioclf.errors import BioclfError
from bioclf.models import (
    BACKBONES,
    build_head,
    build_model,
    check_param_budget,
    count_params,
    head_param_count,
    model_param_count,
    resolve_weights,
)
from bioclf.spec.schema import HeadConfig, ModelConfig

REQUIRED = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
            "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2"]


def test_registry_has_the_required_backbones():
    assert set(REQUIRED) <= set(BACKBONES.names())


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_and_gives_logits(name):
    cfg = ModelConfig(backbone=name, head=HeadConfig(hidden_dim=32))
    if name in ("resnet18", "resnet34", "efficientnet_b0", "mobilenet_v3_large"):
        model = build_model(cfg, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 7)
    else:  # large backbones: the architecture on the meta device (no weights allocated)
        with torch.device("meta"):
            model = build_model(cfg, num_classes=7).eval()
            out = model(torch.empty(2, 3, 64, 64))
        assert tuple(out.shape) == (2, 7)


def test_report_head_counts_by_hand():
    # Dropout -> Linear(2048,512) -> ReLU -> BN(512) -> Dropout -> Linear(512,100)
    head = build_head(HeadConfig(), 2048, 100)
    by_hand = (2048 * 512 + 512) + (2 * 512) + (512 * 100 + 100)
    assert count_params(head).total == by_hand == head_param_count(HeadConfig(), 2048, 100) == 1_101_412
    assert [type(m).__name__ for m in head] == ["Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]


def test_plain_linear_head_has_no_extra_modules():
    head = build_head(HeadConfig(hidden_dim=None, dropout_in=0, dropout_hidden=0, batchnorm=False), 2048, 100)
    assert [type(m).__name__ for m in head] == ["Linear"] and count_params(head).total == 2048 * 100 + 100


def test_resnext101_with_the_report_head_is_87_8m():
    count = model_param_count(ModelConfig(backbone="resnext101_32x8d"), 100)
    # torchvision's ResNeXt101_32x8d has 88,791,336 parameters with its 1000-class fc.
    assert count.total == 88_791_336 - (2048 * 1000 + 1000) + 1_101_412 == 87_843_748
    assert count.trainable == count.total


def test_formula_count_equals_real_count():
    cfg = ModelConfig(backbone="resnet18", head=HeadConfig(hidden_dim=64))
    assert model_param_count(cfg, 10) == count_params(build_model(cfg, 10))


@pytest.mark.parametrize("name", BACKBONES.names())
def test_the_catalog_matches_torchvision(name):
    """Feature width, trunk size and weight names of every backbone, against a build on the
    meta device and torchvision's weights enum (a torchvision upgrade that moves one fails here)."""
    import torchvision.models as tvm

    from bioclf.models.backbones import build_backbone
    from bioclf.models.catalog import BACKBONES_INFO

    info = BACKBONES_INFO[name]
    with torch.device("meta"):
        trunk, features = build_backbone(name)
    assert (features, count_params(trunk).total) == (info.features, info.trunk_params)
    assert info.weights == tuple(w.name for w in tvm.get_model_weights(name))
    for head in (HeadConfig(), HeadConfig(hidden_dim=None, dropout_in=0, dropout_hidden=0, batchnorm=False)):
        cfg = ModelConfig(backbone=name, head=head)
        with torch.device("meta"):
            built = count_params(build_model(cfg, 13))
        assert model_param_count(cfg, 13) == built


def test_the_registry_and_the_catalog_hold_the_same_backbones():
    from bioclf.models.catalog import BACKBONES_INFO

    assert sorted(BACKBONES_INFO) == BACKBONES.names()


def test_unknown_weights_list_the_valid_ones():
    from bioclf.errors import BioclfError as Error
    from bioclf.spec.loader import validate_config

    with pytest.raises(Error, match="unknown weights 'IMAGENET1K_V3' for resnet50; valid: DEFAULT, IMAGENET1K_V1, "
                                    "IMAGENET1K_V2, or false"):
        validate_config({"model": {"backbone": "resnet50", "pretrained": "IMAGENET1K_V3"}}, "spec.yaml")


def test_budget_error_states_both_numbers():
    cfg = ModelConfig(backbone="resnet50", max_params=1_000_000)
    with pytest.raises(BioclfError) as info:
        check_param_budget(cfg, model_param_count(cfg, 100))
    assert "24,609,444" in str(info.value) and "1,000,000" in str(info.value)


def test_missing_weights_offline_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BioclfError) as info:
        resolve_weights(ModelConfig(backbone="resnet18", pretrained="IMAGENET1K_V1"))
    message = str(info.value)
    assert "not cached" in message and "pretrained: false" in message and str(tmp_path / "hub") in message


def test_cached_weights_are_found_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cfg = ModelConfig(backbone="resnet18", pretrained="IMAGENET1K_V1")
    weights = resolve_weights.__globals__["weights_enum"]("resnet18", "IMAGENET1K_V1")
    target = tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")

    def fail(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    assert resolve_weights(cfg).name == "IMAGENET1K_V1"
