"""Backbone registry, heads, parameter counting and the weights rule.

- catalog: names, feature widths, trunk sizes and weight names of the backbones, and exact
  parameter counts by formula (no torch: specs validate and list fast);
- backbones: the registry of builders (torchvision); heads; build: the classifier, the
  parameter budget and the weights rule.
"""

from __future__ import annotations

from bioclf.lazy import lazy_exports

# name -> the module that defines it. Imported on first use (PEP 562): the catalog is
# importable without torch.
_WHERE = {
    "BACKBONES": "bioclf.models.backbones",
    "build_backbone": "bioclf.models.backbones",
    "weights_enum": "bioclf.models.backbones",
    "Classifier": "bioclf.models.build",
    "build_model": "bioclf.models.build",
    "check_param_budget": "bioclf.models.catalog",
    "count_params": "bioclf.models.build",
    "model_param_count": "bioclf.models.build",
    "resolve_weights": "bioclf.models.build",
    "build_head": "bioclf.models.heads",
    "BACKBONES_INFO": "bioclf.models.catalog",
    "ParamCount": "bioclf.models.catalog",
    "head_param_count": "bioclf.models.catalog",
    "param_count": "bioclf.models.catalog",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _WHERE)
