"""What the backbone registry holds, without importing torch: names, pooled feature widths,
trunk parameter counts and torchvision weight names; the head's size by formula.

So ``bioclf-exp validate``, ``list`` and ``run --dry-run`` check backbone and weights names
and print exact parameter counts in a fraction of a second. tests/test_models.py checks every
entry against torchvision (a build on the meta device and its weights enum): a torchvision
upgrade that changes one fails there, not silently here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bioclf.errors import BioclfError

if TYPE_CHECKING:  # type only: the schema imports this module
    from bioclf.spec.schema import HeadConfig, ModelConfig


@dataclass(frozen=True)
class Backbone:
    family: str  # "resnet": global pooling then .fc; "classifier": a Sequential .classifier after pooling
    features: int  # width of the pooled features the head sees
    trunk_params: int  # parameters without torchvision's ImageNet layer
    weights: tuple[str, ...]  # torchvision weight names (besides DEFAULT)


BACKBONES_INFO: dict[str, Backbone] = {
    "resnet18": Backbone("resnet", 512, 11176512, ("IMAGENET1K_V1",)),
    "resnet34": Backbone("resnet", 512, 21284672, ("IMAGENET1K_V1",)),
    "resnet50": Backbone("resnet", 2048, 23508032, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "resnet101": Backbone("resnet", 2048, 42500160, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "resnet152": Backbone("resnet", 2048, 58143808, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "resnext50_32x4d": Backbone("resnet", 2048, 22979904, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "resnext101_32x8d": Backbone("resnet", 2048, 86742336, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "resnext101_64x4d": Backbone("resnet", 2048, 81406272, ("IMAGENET1K_V1",)),
    "wide_resnet50_2": Backbone("resnet", 2048, 66834240, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "wide_resnet101_2": Backbone("resnet", 2048, 124837696, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
    "efficientnet_b0": Backbone("classifier", 1280, 4007548, ("IMAGENET1K_V1",)),
    "efficientnet_v2_s": Backbone("classifier", 1280, 20177488, ("IMAGENET1K_V1",)),
    "convnext_tiny": Backbone("classifier", 768, 27820128, ("IMAGENET1K_V1",)),
    "mobilenet_v3_large": Backbone("classifier", 1280, 4202032, ("IMAGENET1K_V1", "IMAGENET1K_V2")),
}


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int


def check_weights(backbone: str, name: str) -> None:
    """A torchvision weights name of ``backbone`` (or DEFAULT); BioclfError listing the valid ones."""
    valid = ("DEFAULT", *BACKBONES_INFO[backbone].weights)
    if name not in valid:
        raise BioclfError(f"model.pretrained: unknown weights {name!r} for {backbone}; "
                          f"valid: {', '.join(valid)}, or false")


def head_param_count(cfg: "HeadConfig", in_features: int, num_classes: int) -> int:
    """The head's parameter count by formula (weights + biases, BatchNorm weight + bias)."""
    if cfg.hidden_dim is None:
        return in_features * num_classes + num_classes
    h = cfg.hidden_dim
    count = in_features * h + h + h * num_classes + num_classes
    return count + (2 * h if cfg.batchnorm else 0)


def param_count(cfg: "ModelConfig", num_classes: int, rank_sizes: tuple[int, ...] = ()) -> ParamCount:
    """Exact parameter counts of backbone + head (every parameter trains). ``rank_sizes``: the
    extra outputs of a hierarchical head, each a Linear on the class output's input."""
    info = BACKBONES_INFO[cfg.backbone]
    total = info.trunk_params + head_param_count(cfg.head, info.features, num_classes)
    last_in = cfg.head.hidden_dim or info.features
    total += sum((last_in + 1) * size for size in rank_sizes)
    return ParamCount(total=total, trainable=total)


def head_rank_sizes(rank_weights: dict[str, float] | None, sizes: dict[str, int], ranks: tuple[str, ...]) -> tuple[int, ...]:
    """The extra outputs of a hierarchical head: the number of values of each rank named in
    ``rank_weights`` besides the class, in the taxonomy's rank order."""
    return tuple(sizes[rank] for rank in ranks[1:] if rank in (rank_weights or {}))


def check_param_budget(cfg: "ModelConfig", count: ParamCount) -> None:
    if count.total > cfg.max_params:
        raise BioclfError(
            f"model.max_params: {cfg.backbone} with this head has {count.total:,} parameters, "
            f"over the budget of {cfg.max_params:,}; pick a smaller backbone or raise model.max_params"
        )
