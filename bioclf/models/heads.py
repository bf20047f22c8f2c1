"""Classification heads: every row of the architecture table is one HeadConfig."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn as nn


if TYPE_CHECKING:  # type only: the schema does not depend on torch
    from bioclf.spec.schema import HeadConfig


def build_head(cfg: "HeadConfig", in_features: int, num_classes: int) -> nn.Sequential:
    """Dropout(in) -> Linear -> ReLU -> [BatchNorm1d] -> Dropout(hidden) -> Linear.

    A dropout of 0 is not added as a module, so a state_dict's keys say what the head is.
    The report's head is hidden_dim 512, dropout_in 0.3, dropout_hidden 0.5, batchnorm on.
    """
    layers: list[nn.Module] = []
    if cfg.dropout_in > 0:
        layers.append(nn.Dropout(cfg.dropout_in))
    if cfg.hidden_dim is None:
        layers.append(nn.Linear(in_features, num_classes))
        return nn.Sequential(*layers)
    layers += [nn.Linear(in_features, cfg.hidden_dim), nn.ReLU(inplace=True)]
    if cfg.batchnorm:
        layers.append(nn.BatchNorm1d(cfg.hidden_dim))
    if cfg.dropout_hidden > 0:
        layers.append(nn.Dropout(cfg.dropout_hidden))
    layers.append(nn.Linear(cfg.hidden_dim, num_classes))
    return nn.Sequential(*layers)
