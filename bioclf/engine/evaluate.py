"""Evaluate a model on a labelled loader: loss, top-1, top-5 and every per-image output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from bioclf.engine.device import autocast
from bioclf.engine.metrics import topk_accuracy


@dataclass
class EvalOutput:
    loss: float
    acc: float
    top5: float
    probs: np.ndarray  # (N, C) float32 softmax probabilities
    labels: np.ndarray  # (N,) int64
    paths: list[str]


def sample_paths(dataset) -> list[str]:
    """Paths in loader order (the evaluation loader is never shuffled)."""
    return [str(s[0] if isinstance(s, (tuple, list)) else s) for s in dataset.samples]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> EvalOutput:
    model.eval()
    use_cl = channels_last and device.type == "cuda"
    probs, labels = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        if use_cl:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(images)
        logits = logits.float()
        # Label smoothing is part of the training objective; it stays in val_loss so that the
        # plateau scheduler and early stopping watch the same quantity the report plotted.
        loss_sum += loss_fn(logits, target).double() * target.shape[0]
        probs.append(torch.softmax(logits, 1).cpu())
        labels.append(target.cpu())
    p = torch.cat(probs).numpy().astype(np.float32)
    y = torch.cat(labels).numpy().astype(np.int64)
    return EvalOutput(
        loss=loss_sum.item() / max(1, len(y)),
        acc=float((p.argmax(1) == y).mean()) if len(y) else float("nan"),
        top5=topk_accuracy(p, y, 5) if len(y) else float("nan"),
        probs=p,
        labels=y,
        paths=sample_paths(loader.dataset),
    )
