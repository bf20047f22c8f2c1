"""Evaluate a model on a labelled loader: loss, top-1, top-5 and every per-image output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

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


# Test-time augmentation: the softmax averaged over views of each image. flip: the image and its
# mirror; five_crop: its four corners and centre, each FIVE_CROP_SCALE of the side, resized back.
TTA_MODES = ("none", "flip", "five_crop")
FIVE_CROP_SCALE = 0.875  # torchvision's FiveCrop(224) of a Resize(256) image sees the same share


def five_crops(images: torch.Tensor, scale: float = FIVE_CROP_SCALE) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of a (N, C, H, W) batch, each ``scale`` of the
    side, resized back to (H, W) (bilinear): the evaluated image's views, on its device."""
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    corners = ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2))
    return [torch.nn.functional.interpolate(images[..., t:t + ch, left:left + cw], size=(h, w), mode="bilinear",
                                            align_corners=False) for t, left in corners]


def tta_views(images: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a batch that ``tta`` averages over (``TTA_MODES``); the batch alone for none."""
    if tta == "flip":
        return [images, torch.flip(images, dims=[3])]
    if tta == "five_crop":
        return five_crops(images)
    return [images]


def forward_batches(model: nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None = None,
                    channels_last: bool = False, batch_transform: Callable | None = None,
                    tta: str = "none") -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """The one inference loop: for every batch ``(images, second)`` of ``loader``, the fp32
    logits of each view (``tta_views``: the image, its mirror, or its five crops) and ``second`` (labels
    when evaluating, dataset indices when predicting), in loader order. Call under no_grad.

    ``batch_transform``: the loader's batch stage (DataBundle.eval_batch_transform); it moves
    the batch to ``device`` and finishes it (bytes or uint8 -> normalised float). None: only move."""
    model.eval()
    memory_format = torch.channels_last if channels_last and device.type == "cuda" else None
    for images, second in loader:
        if batch_transform is not None:
            images = batch_transform(images, device, memory_format)
        else:
            images = images.to(device, non_blocking=True)
            if memory_format is not None:
                images = images.contiguous(memory_format=memory_format)
        with autocast(device, dtype):
            views = [model(view) for view in tta_views(images, tta)]
        yield [logits.float() for logits in views], second


def views_softmax(views: list[torch.Tensor]) -> torch.Tensor:
    """The softmax of one view's logits, or the mean of the views' softmaxes (``tta``)."""
    if len(views) == 1:
        return torch.softmax(views[0], 1)
    return torch.stack([torch.softmax(v, 1) for v in views]).mean(0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    batch_transform: Callable | None = None,
    tta: str = "none",
) -> EvalOutput:
    """Loss, top-1, top-5 and the per-image softmax of ``model`` on a labelled ``loader``.
    ``tta``: see ``TTA_MODES``; with several views the softmax is their mean and the loss is
    that of the mean (its log taken as logits: log-softmax leaves log-probabilities unchanged)."""
    probs, labels = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for views, target in forward_batches(model, loader, device, dtype, channels_last, batch_transform, tta):
        target = target.to(device, non_blocking=True)
        p = views_softmax(views)
        logits = views[0] if len(views) == 1 else torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
        # Label smoothing is part of the training objective; it stays in val_loss so that the
        # plateau scheduler and early stopping watch the same quantity the report plotted.
        loss_sum += loss_fn(logits, target).double() * target.shape[0]
        probs.append(p.cpu())
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


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device, dtype: torch.dtype | None = None,
                  channels_last: bool = False, batch_transform: Callable | None = None, tta: str = "none",
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, C) float32 softmax of every image of an unlabelled ``loader`` whose batches are
    ``(images, dataset indices)``, in dataset order; with ``tta``, averaged over the views.
    ``on_batch(n)`` after each batch (a progress bar)."""
    chunks, indices = [], []
    for views, index in forward_batches(model, loader, device, dtype, channels_last, batch_transform, tta):
        probs = views_softmax(views)
        chunks.append(probs.cpu().numpy().astype(np.float32))
        indices.append(np.asarray(index))
        if on_batch is not None:
            on_batch(len(index))
    if not chunks:
        return np.zeros((0, 0), np.float32)
    order = np.argsort(np.concatenate(indices), kind="stable")
    return np.concatenate(chunks)[order]


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
