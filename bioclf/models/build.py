"""Backbone + head = the classifier; exact parameter counts; the parameter budget; weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from bioclf.errors import BioclfError
from bioclf.netutil import socket_timeout
from bioclf.models.backbones import build_backbone, weights_enum
from bioclf.models.catalog import ParamCount, param_count
from bioclf.models.heads import build_head

if TYPE_CHECKING:  # type only: the schema does not depend on torch
    from bioclf.spec.schema import ModelConfig


class Classifier(nn.Module):
    """``head(backbone(x))``: the backbone returns pooled features (its ImageNet layer removed)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.backbone(x), 1))




def count_params(model: nn.Module) -> ParamCount:
    params = list(model.parameters())
    return ParamCount(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
    )


def build_model(cfg: "ModelConfig", num_classes: int, *, load_weights: bool = True,
                rank_sizes: tuple[int, ...] = ()) -> Classifier:
    """The classifier of a run. ``load_weights=False`` builds the architecture only (for
    counting parameters, or before a checkpoint is loaded). ``rank_sizes``: the extra outputs of
    a hierarchical head (``head_rank_sizes``)."""
    weights = resolve_weights(cfg) if (cfg.pretrained and load_weights) else None
    backbone, features = build_backbone(cfg.backbone, weights=weights)
    return Classifier(backbone, build_head(cfg.head, features, num_classes, rank_sizes))


def model_param_count(cfg: "ModelConfig", num_classes: int, rank_sizes: tuple[int, ...] = ()) -> ParamCount:
    """Exact counts by the catalog's formula (no model built; tests compare it with a build)."""
    return param_count(cfg, num_classes, rank_sizes)


def weights_cache_path(weights) -> Path:
    """Where torchvision's weights API caches this file (torch hub's checkpoint folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def resolve_weights(cfg: "ModelConfig", download_timeout_s: float = 20.0):
    """The weights enum of ``cfg.pretrained``, made sure to be in the local cache.

    Fetches it when it is missing and the network allows; otherwise fails with a message
    that says where to put the file or how to train without it. Called before training.
    """
    weights = weights_enum(cfg.backbone, str(cfg.pretrained))
    path = weights_cache_path(weights)
    if path.exists():
        return weights
    try:
        with socket_timeout(download_timeout_s):
            torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=False)
    except Exception as exc:  # noqa: BLE001 - any network/IO failure means "not available"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BioclfError(
            f"model.pretrained: {cfg.backbone} weights {weights.name} are not cached at {path} "
            f"and could not be downloaded ({reason}); download {weights.url} into {path.parent} "
            f"on a connected machine (or set TORCH_HOME), or set model.pretrained: false"
        ) from None
    return weights
