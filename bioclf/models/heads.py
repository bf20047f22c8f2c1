"""Classification heads: every row of the architecture table is one HeadConfig."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn


if TYPE_CHECKING:  # type only: the schema does not depend on torch
    from bioclf.spec.schema import HeadConfig


def build_head(cfg: "HeadConfig", in_features: int, num_classes: int,
               rank_sizes: tuple[int, ...] = ()) -> nn.Module:
    """The head of ``cfg``; with ``rank_sizes`` (model.head.rank_weights: the number of values of
    each extra rank, in the taxonomy's order) a RankHead around it."""
    head = flat_head(cfg, in_features, num_classes)
    return RankHead(head, rank_sizes) if rank_sizes else head


class RankHead(nn.Module):
    """A hierarchical head: the flat head's layers up to its last Linear are shared, and besides
    the class output there is one Linear per extra rank on the same features.

    In training, ``forward`` returns the class logits followed by each rank's logits (one
    ``(N, C + sum(rank_sizes))`` tensor, which RankHeadLoss splits); in eval mode only the class
    logits, so evaluation, EMA, TTA and predict see an ordinary classifier.
    """

    def __init__(self, head: nn.Sequential, rank_sizes: tuple[int, ...]):
        super().__init__()
        self.shared = nn.Sequential(*list(head)[:-1])
        self.classes = head[-1]
        self.ranks = nn.ModuleList(nn.Linear(self.classes.in_features, size) for size in rank_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.shared(x)
        logits = self.classes(z)
        if not self.training:
            return logits
        return torch.cat([logits, *(out(z) for out in self.ranks)], 1)


def rank_sizes_of(state_dict: dict) -> tuple[int, ...]:
    """The extra outputs of the hierarchical head a model state_dict holds (() for a flat head):
    a checkpoint is enough to rebuild its model, without the taxonomy file."""
    sizes, i = [], 0
    while (weight := state_dict.get(f"head.ranks.{i}.weight")) is not None:
        sizes.append(int(weight.shape[0]))
        i += 1
    return tuple(sizes)


def flat_head(cfg: "HeadConfig", in_features: int, num_classes: int) -> nn.Sequential:
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
