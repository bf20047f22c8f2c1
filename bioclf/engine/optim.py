"""Loss, optimizer and LR-scheduler registries.

Schedulers are stepped once per epoch by the trainer (``step_scheduler``); ReduceLROnPlateau
gets the monitored validation metric. (The report's code stepped its plateau scheduler twice per
epoch, which halves its effective patience; one step per epoch is what its text describes.)

Importing this module does not import torch: the schema validates names against these
registries (``bioclf-exp validate`` stays fast); each builder imports torch when it runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bioclf.registry import Registry

if TYPE_CHECKING:  # types only: the schema imports these registries
    import torch

    import torch.nn as nn

    from bioclf.spec.schema import LossConfig, OptimizerConfig, SchedulerConfig
    from bioclf.taxonomy import Taxonomy

LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@LOSSES.register("cross_entropy")
def cross_entropy(cfg: LossConfig, tree: Taxonomy | None) -> nn.Module:
    import torch.nn as nn

    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


@LOSSES.register("soft_labels")
def soft_labels(cfg: LossConfig, tree: Taxonomy | None) -> nn.Module:
    from bioclf.engine.hierarchy import SoftLabelLoss

    return SoftLabelLoss(_needs(tree, cfg), cfg.soft_labels_beta, cfg.label_smoothing)


@LOSSES.register("hxe")
def hxe(cfg: LossConfig, tree: Taxonomy | None) -> nn.Module:
    from bioclf.engine.hierarchy import HXELoss

    return HXELoss(_needs(tree, cfg), cfg.hxe_alpha, cfg.label_smoothing)


def _needs(tree: Taxonomy | None, cfg: LossConfig) -> Taxonomy:
    if tree is None:  # the schema refuses such a config; this guards direct calls
        raise ValueError(f"loss {cfg.name} needs a class taxonomy (data.taxonomy)")
    return tree


def build_loss(cfg: LossConfig, tree: Taxonomy | None = None,
               rank_weights: dict[str, float] | None = None) -> nn.Module:
    """The run's loss; with ``rank_weights`` (model.head.rank_weights), the hierarchical head's
    sum over its outputs, the class output's term being this loss."""
    loss = LOSSES.get(cfg.name)(cfg, tree)
    if rank_weights is None:
        return loss
    from bioclf.engine.hierarchy import RankHeadLoss

    return RankHeadLoss(loss, _needs(tree, cfg), rank_weights, cfg.label_smoothing)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # No weight decay on biases and normalisation parameters (1-d tensors): decaying a
    # BatchNorm scale towards 0 fights the normalisation and costs accuracy for nothing.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@OPTIMIZERS.register("adamw")
def adamw(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)


@OPTIMIZERS.register("adam")
def adam(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)


@OPTIMIZERS.register("sgd")
def sgd(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
    )


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(model, cfg)


@SCHEDULERS.register("plateau")
def plateau(opt, cfg: SchedulerConfig, epochs: int):
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience, threshold=cfg.threshold, min_lr=cfg.min_lr
    )


@SCHEDULERS.register("cosine")
def cosine(opt, cfg: SchedulerConfig, epochs: int):
    import torch

    base = opt.param_groups[0]["lr"]
    floor = cfg.min_lr / base if base > 0 else 0.0

    def factor(epoch: int) -> float:  # epoch = number of scheduler steps taken so far
        if epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        span = max(1, epochs - cfg.warmup_epochs)
        progress = min(1.0, (epoch - cfg.warmup_epochs) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@SCHEDULERS.register("step")
def step(opt, cfg: SchedulerConfig, epochs: int):
    import torch

    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)


@SCHEDULERS.register("none")
def constant(opt, cfg: SchedulerConfig, epochs: int):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def build_scheduler(opt: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int):
    return SCHEDULERS.get(cfg.name)(opt, cfg, epochs)


def step_scheduler(scheduler, metrics: dict[str, float], cfg: SchedulerConfig) -> None:
    """One step per epoch; ReduceLROnPlateau needs the monitored metric."""
    import torch

    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metrics[cfg.monitor])
    else:
        scheduler.step()


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])
