"""The torch side of a class taxonomy (bioclf.taxonomy): losses that know the tree, and the
loss of a head with one output per rank.

Every loss here takes the trainer's targets as they come: class labels ``(N,)`` or class
probabilities ``(N, C)`` (MixUp / CutMix). Each is linear in the target distribution, so a mixed
target gets the mix of the two labels' losses; label smoothing mixes the target with the uniform
distribution first, as ``nn.CrossEntropyLoss(label_smoothing=...)`` does.

- ``SoftLabelLoss``: cross-entropy against ``softmax(-beta * H[y] / H.max())``, H the LCA
  heights (Bertinetto et al., "Making Better Mistakes", CVPR 2020, "soft labels").
- ``HXELoss``: hierarchical cross-entropy (same paper): ``p(class)`` factorised along the path to
  the root, ``p(c) = prod_l p(a_l | a_(l+1))``, each factor's ``-log`` weighted by
  ``exp(-alpha * l)`` (l = the height of the node below the edge). alpha = 0 is plain
  cross-entropy; larger alpha puts more weight on getting the coarse ranks right.
- ``RankHeadLoss``: a hierarchical head's loss, the weighted sum over its outputs.

Computed in fp32 outside autocast: group probabilities are sums of class probabilities, and
their logs are where half precision loses the small ones. Cost: a few (N, C) x (C, G) products
per step, nothing next to the backbone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:  # types only
    from bioclf.taxonomy import Taxonomy


def target_distribution(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(N, C) float32 target distribution of labels or probabilities, label smoothing applied."""
    if targets.dim() == 1:
        dist = F.one_hot(targets.long(), num_classes).float()
    else:
        dist = targets.float()
    return dist * (1.0 - smoothing) + smoothing / num_classes if smoothing > 0 else dist


def membership(tree: "Taxonomy", rank: str) -> np.ndarray:
    """(C, G) 0/1 matrix: class c belongs to value g of ``rank`` (values in order of first appearance)."""
    codes = tree.at_rank(np.arange(len(tree.classes)), rank)
    out = np.zeros((len(codes), int(codes.max()) + 1), np.float32)
    out[np.arange(len(codes)), codes] = 1.0
    return out


def _fp32(logits: torch.Tensor):
    return torch.autocast(device_type=logits.device.type, enabled=False)


class SoftLabelLoss(nn.Module):
    def __init__(self, tree: "Taxonomy", beta: float, smoothing: float):
        super().__init__()
        heights = torch.as_tensor(tree.lca_heights(), dtype=torch.float32)
        self.register_buffer("soft", soft_label_matrix(heights, beta), persistent=False)
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with _fp32(logits):
            dist = target_distribution(targets, self.soft.shape[0], 0.0) @ self.soft
            return F.cross_entropy(logits.float(), dist, label_smoothing=self.smoothing)


def soft_label_matrix(heights: torch.Tensor, beta: float) -> torch.Tensor:
    """Row y: the soft target of class y, ``softmax(-beta * H[y] / H.max())`` (rows sum to 1)."""
    return torch.softmax(-beta * heights / heights.max().clamp_min(1.0), dim=1)


class HXELoss(nn.Module):
    def __init__(self, tree: "Taxonomy", alpha: float, smoothing: float):
        super().__init__()
        self.levels = len(tree.ranks)  # class, genus, ...; the root above the last
        for level, rank in enumerate(tree.ranks[1:], start=1):
            m = membership(tree, rank)
            self.register_buffer(f"member{level}", torch.as_tensor(m), persistent=False)
            self.register_buffer(f"code{level}", torch.as_tensor(m.argmax(1), dtype=torch.long), persistent=False)
        self.weights = [float(np.exp(-alpha * level)) for level in range(self.levels)]
        self.smoothing = smoothing

    def per_class(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, C): the loss each image would have if its label were class c."""
        log_p = torch.log_softmax(logits.float(), 1)
        p = log_p.exp()
        tiny = torch.finfo(torch.float32).tiny
        below = log_p  # log P(ancestor at this level), per class: level 0 is the class itself
        loss = torch.zeros_like(log_p)
        for level in range(self.levels):
            if level + 1 < self.levels:
                group = p @ getattr(self, f"member{level + 1}")
                above = torch.log(group.clamp_min(tiny))[:, getattr(self, f"code{level + 1}")]
            else:
                above = torch.zeros_like(log_p)  # the root: probability 1
            loss = loss + self.weights[level] * (above - below)  # -log p(node | parent)
            below = above
        return loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with _fp32(logits):
            dist = target_distribution(targets, logits.shape[1], self.smoothing)
            return (dist * self.per_class(logits)).sum(1).mean()


class RankHeadLoss(nn.Module):
    """A hierarchical head's loss: ``w_class * class_loss + sum_r w_r * CE(rank r's output, target
    mapped to rank r)``. The head returns the class logits followed by each rank's logits
    (bioclf.models.heads.RankHead, in training); given the class logits alone (evaluation), the
    loss is the class output's, so val_loss means the same with or without the extra outputs."""

    def __init__(self, class_loss: nn.Module, tree: "Taxonomy", weights: dict[str, float], smoothing: float):
        super().__init__()
        self.class_loss = class_loss
        self.num_classes = len(tree.classes)
        self.class_weight = float(weights["class"])
        self.ranks = [rank for rank in tree.ranks[1:] if rank in weights]
        self.rank_weights = [float(weights[rank]) for rank in self.ranks]
        for i, rank in enumerate(self.ranks):
            self.register_buffer(f"member{i}", torch.as_tensor(membership(tree, rank)), persistent=False)
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        if logits.shape[1] == c:
            return self.class_loss(logits, targets)
        total = self.class_weight * self.class_loss(logits[:, :c], targets)
        with _fp32(logits):
            dist = target_distribution(targets, c, 0.0)
            start = c
            for i, weight in enumerate(self.rank_weights):
                member = getattr(self, f"member{i}")
                stop = start + member.shape[1]
                total = total + weight * F.cross_entropy(logits[:, start:stop].float(), dist @ member,
                                                         label_smoothing=self.smoothing)
                start = stop
        return total
