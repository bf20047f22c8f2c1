"""Backbone registry, heads, parameter counting and the weights rule."""

from bioclf.models.backbones import BACKBONES, build_backbone, weights_enum
from bioclf.models.build import (
    Classifier,
    ParamCount,
    build_model,
    check_param_budget,
    count_params,
    model_param_count,
    resolve_weights,
)
from bioclf.models.heads import build_head, head_param_count

__all__ = [
    "BACKBONES",
    "Classifier",
    "ParamCount",
    "build_backbone",
    "build_head",
    "build_model",
    "check_param_budget",
    "count_params",
    "head_param_count",
    "model_param_count",
    "resolve_weights",
    "weights_enum",
]
