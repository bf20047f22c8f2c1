"""MixUp / CutMix of the training batch (torchvision.transforms.v2), after the batch stage: on
the device the batch is already on, so a GPU run mixes on the GPU.

Targets become class probabilities (``num_classes`` wide) for every batch, mixed or not, so
the loss sees one kind of target; cross-entropy takes them as they are (label smoothing still
applies). Training accuracy is then measured against each image's dominant class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # type only: the engine takes a config, it does not import the schema
    from bioclf.spec.schema import DataConfig


class BatchMix:
    """``(images, labels) -> (images, targets)``: one of the configured mixes per batch (equal
    chance when both are on), applied with its probability ``p``; targets are probabilities."""

    def __init__(self, num_classes: int, mixup=None, cutmix=None):
        from torchvision.transforms import v2

        self.num_classes = num_classes
        self.choices = [(make(alpha=cfg.alpha, num_classes=num_classes), cfg.p)
                        for make, cfg in ((v2.MixUp, mixup), (v2.CutMix, cutmix)) if cfg is not None]
        if not self.choices:
            raise ValueError("BatchMix needs mixup or cutmix")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Host-side draws (torch's global generator, saved and restored with a resume): no device sync.
        pick = int(torch.randint(len(self.choices), ())) if len(self.choices) > 1 else 0
        mix, p = self.choices[pick]
        if p >= 1.0 or float(torch.rand(())) < p:
            images, targets = mix(images, labels)
            return images, targets.float()
        return images, torch.nn.functional.one_hot(labels, self.num_classes).float()


def build_batch_mix(data: DataConfig, num_classes: int) -> BatchMix | None:
    """The run's batch mixing, or None when neither data.mixup nor data.cutmix is set."""
    if data.mixup is None and data.cutmix is None:
        return None
    return BatchMix(num_classes, data.mixup, data.cutmix)
