"""Evaluate a model on a labelled loader: loss, top-1, top-5 and every per-image output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from bioclf.engine.device import autocast
from bioclf.engine.distributed import current
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
    batch_transform: Callable | None = None,
) -> EvalOutput:
    """``batch_transform``: the loader's batch stage (DataBundle.eval_batch_transform); it moves
    the batch to ``device`` and finishes it (uint8 -> normalised float). None: only move."""
    model.eval()
    memory_format = torch.channels_last if channels_last and device.type == "cuda" else None
    probs, labels = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for images, target in loader:
        if batch_transform is not None:
            images = batch_transform(images, device, memory_format)
        else:
            images = images.to(device, non_blocking=True)
            if memory_format is not None:
                images = images.contiguous(memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(images)
        logits = logits.float()
        # Label smoothing is part of the training objective; it stays in val_loss so that the
        # plateau scheduler and early stopping watch the same quantity the report plotted.
        loss_sum += loss_fn(logits, target).double() * target.shape[0]
        probs.append(torch.softmax(logits, 1).cpu())
        labels.append(target.cpu())
    p = torch.cat(probs).numpy().astype(np.float32) if probs else np.zeros((0, 0), np.float32)
    y = torch.cat(labels).numpy().astype(np.int64) if labels else np.zeros(0, np.int64)
    loss_total = loss_sum.item()
    ctx = current()
    if ctx.enabled:  # data-parallel: each rank scored a shard; every rank gets the whole val set
        p, y, loss_total = _gather_shards(ctx, loader, p, y, loss_total)
    return EvalOutput(
        loss=loss_total / max(1, len(y)),
        acc=float((p.argmax(1) == y).mean()) if len(y) else float("nan"),
        top5=topk_accuracy(p, y, 5) if len(y) else float("nan"),
        probs=p,
        labels=y,
        paths=sample_paths(loader.dataset),
    )


def _gather_shards(ctx, loader: DataLoader, p: np.ndarray, y: np.ndarray, loss: float):
    """Every rank's (probabilities, labels, loss sum) put back in dataset order. The val
    sampler is ``range(rank, n, world)`` (no padding), so each image is counted once."""
    order = np.asarray(list(loader.sampler), dtype=np.int64)
    parts = ctx.gather((order, p, y, loss))
    n = sum(len(o) for o, *_ in parts)
    width = max(part[1].shape[1] for part in parts)
    probs = np.zeros((n, width), np.float32)
    labels = np.zeros(n, np.int64)
    for o, pp, yy, _ in parts:
        if len(o):
            probs[o], labels[o] = pp, yy
    return probs, labels, sum(part[3] for part in parts)
