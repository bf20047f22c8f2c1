"""The backbone registry: torchvision classification models without their ImageNet head.

Each entry builds the torchvision model, takes out its classifier, and says how many pooled
features come out, so any head can be put on top. Weights come through torchvision's weights
API (its cache under ``torch.hub.get_dir()``); see ``resolve_weights`` for the offline rule.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
import torchvision.models as tvm

from bioclf.errors import BioclfError
from bioclf.models.catalog import BACKBONES_INFO
from bioclf.registry import Registry

BACKBONES = Registry("backbone")


def _register_resnet_family(name: str) -> None:
    # The ResNet family (incl. ResNeXt and Wide ResNet) ends in .fc after global pooling.
    @BACKBONES.register(name)
    def build(weights=None) -> tuple[nn.Module, int]:
        model = tvm.get_model(name, weights=weights)
        features = model.fc.in_features
        model.fc = nn.Identity()
        return model, features


for _name in (name for name, info in BACKBONES_INFO.items() if info.family == "resnet"):
    _register_resnet_family(_name)


def _register_classifier_family(name: str) -> None:
    # EfficientNet / ConvNeXt / MobileNet put a Sequential classifier after pooling (+ flatten);
    # its last Linear is the ImageNet layer we replace. Anything before it (LayerNorm2d,
    # Flatten, Dropout) is kept because the features need it.
    @BACKBONES.register(name)
    def build(weights=None) -> tuple[nn.Module, int]:
        model = tvm.get_model(name, weights=weights)
        last = model.classifier[-1]
        model.classifier[-1] = nn.Identity()
        return model, last.in_features


for _name in (name for name, info in BACKBONES_INFO.items() if info.family == "classifier"):
    _register_classifier_family(_name)


def weights_enum(backbone: str, name: str):
    """The torchvision weights entry ``name`` (e.g. ``IMAGENET1K_V2``, ``DEFAULT``) of a backbone."""
    enum = tvm.get_model_weights(backbone)
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ", ".join(["DEFAULT", *[w.name for w in enum]])
        raise BioclfError(f"unknown weights {name!r} for {backbone}; valid: {valid}, or false") from None


def build_backbone(name: str, weights=None) -> tuple[nn.Module, int]:
    builder: Callable = BACKBONES.get(name)
    return builder(weights=weights)
