"""Train one run: data, model, loss, optimizer, scheduler, epochs, evaluation, artifacts.

``train(cfg, logger, workdir)`` is the whole job of one variant x seed. It reports through
``logger`` (see ``bioclf.engine.logger``) and writes its files into ``workdir``:

    config.yaml, history.csv, classes.csv, predictions/val.csv,
    checkpoints/best.pt (model of the best epoch), checkpoints/last.pt (everything resume needs)
"""

from __future__ import annotations

import ast
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import yaml
from tqdm.auto import tqdm

from bioclf.data import DataBundle, build_loaders, check_num_classes
from bioclf.data.folds import FoldPlan
from bioclf.engine.checkpoint import load_checkpoint, save_atomic
from bioclf.engine.device import amp_dtype, autocast, resolve_device, seed_everything
from bioclf.engine.distributed import Dist, current, reseed_for_epoch, train_device
from bioclf.engine.early_stopping import EarlyStopping
from bioclf.engine.ema import Ema
from bioclf.engine.evaluate import EvalOutput, evaluate
from bioclf.engine.logger import RunLogger
from bioclf.engine.mixing import build_batch_mix
from bioclf.engine.metrics import macro_scores, predictions_frame
from bioclf.engine.resources import (
    file_mb,
    gpu_peak_mb,
    host_name,
    inference_ms_per_image,
    machine_load,
    peak_rss_mb,
    release,
    reset_gpu_peak,
    reset_peak_rss,
    shutdown_loader,
)
from bioclf.engine.optim import build_loss, build_optimizer, build_scheduler, current_lr, step_scheduler
from bioclf.errors import BioclfError, RunFailed
from bioclf.faults import kill_point
from bioclf.models import build_model, check_param_budget, count_params
from bioclf.models.catalog import head_rank_sizes
from bioclf.taxonomy import Taxonomy, run_taxonomy
from bioclf.tracking import contract

if TYPE_CHECKING:  # type only: the engine takes a config, it does not import the schema
    from bioclf.spec.schema import RunConfig


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    summary: dict[str, float]
    history: pd.DataFrame
    num_params: int
    num_trainable_params: int
    files: dict[str, object] = field(default_factory=dict)  # history, predictions: Path; checkpoints: list


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _optimizer_step(loss, model, opt, scaler, clip: float | None) -> None:
    opt.zero_grad(set_to_none=True)
    if scaler is not None:  # fp16: scale the loss so small gradients survive, unscale before clipping
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()


def train_one_epoch(
    model: nn.Module,
    data: DataBundle,
    loss_fn: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    device: torch.device,
    dtype: torch.dtype | None,
    cfg: RunConfig,
    bar: tqdm,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over the training loader. Never reads a device value inside the loop (that
    would sync the GPU every step): loss and accuracy sums stay on the device until the end,
    and the progress bar shows host-side throughput only.

    ``data_time_s`` is the time spent waiting for the loader; ``compute_time_s`` the rest of
    the epoch's wall time (on a GPU the host runs ahead, so a loader stall shows as data time
    only when the GPU queue has drained: a large data share means the loader is the bottleneck).
    Under DDP the loss, accuracy and images/s are over all ranks (one all-reduce per epoch);
    the times are rank 0's; ``train_steps`` is the optimizer steps of the epoch.
    ``after_step``: called after each optimizer step (the weights' EMA).
    """
    model.train()
    memory_format = torch.channels_last if cfg.model.channels_last and device.type == "cuda" else None
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = steps = 0
    start = time.perf_counter()
    loader = _WaitClock(data.train)
    mix = build_batch_mix(cfg.data, data.num_classes)
    for images, labels in loader:
        images = data.train_batch_transform(images, device, memory_format)
        labels = labels.to(device, non_blocking=True)
        targets = labels
        if mix is not None:  # probabilities; accuracy against each image's dominant class
            images, targets = mix(images, labels)
            labels = targets.argmax(1)
        with autocast(device, dtype):
            logits = model(images)
            loss = loss_fn(logits, targets)
        _optimizer_step(loss, model, opt, scaler, cfg.train.grad_clip_norm)
        if after_step is not None:
            after_step()
        batch = labels.shape[0]
        loss_sum += loss.detach().double() * batch
        # A hierarchical head also returns its ranks' logits after the class ones (RankHead).
        correct += (logits.detach()[:, :data.num_classes].argmax(1) == labels).sum()
        seen += batch
        steps += 1
        bar.update(batch)
        kill_point("batch")
    return _epoch_metrics(loss_sum, correct, seen, steps, start, loader.waited, device)


class _WaitClock:
    """Iterates a loader and adds up the time spent waiting for its batches (``waited``)."""

    def __init__(self, loader):
        self.loader, self.waited = loader, 0.0

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            wait = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.waited += time.perf_counter() - wait
            yield batch


def _epoch_metrics(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, steps: int, start: float,
                   data_time: float, device: torch.device) -> dict[str, float]:
    """The epoch's training metrics, summed over ranks (the epoch's one all-reduce and its one
    device sync); a RunFailed when no batch came or the loss is not finite."""
    totals = current().sum_(torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=device,
                                                                                 dtype=torch.float64)]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    loss_total, correct_total, seen = totals.tolist()
    if seen == 0:
        raise RunFailed("the training loader gave no batch (is the train split smaller than one batch?)")
    train_loss = loss_total / seen
    if not math.isfinite(train_loss):
        raise RunFailed(f"training loss became {train_loss} (NaN/inf): lower optimizer.lr or set train.grad_clip_norm")
    return {
        "train_loss": train_loss,
        "train_acc": correct_total / seen,
        "train_images_per_s": seen / elapsed if elapsed > 0 else float("nan"),
        "train_steps": float(steps),
        "data_time_s": data_time,
        "compute_time_s": elapsed - data_time,
    }


def start_tags(data: DataBundle) -> dict[str, str]:
    """Where the run (last) started: the host, data.pipeline as resolved on this device, and
    where each component ran."""
    return {contract.HOST: host_name(), contract.DATA_PIPELINE: data.pipeline,
            contract.TRAIN_STAGES: data.stages.get("train", ""), contract.EVAL_STAGES: data.stages.get("eval", "")}


def _write_history(history: list[dict], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(history)
    frame.to_csv(path, index=False)
    return frame


def _write_classes(data: DataBundle, path: Path) -> None:
    pd.DataFrame(
        {"label": range(data.num_classes), "folder": data.classes, "name": data.class_names}
    ).to_csv(path, index=False)


def _rng_state(data: DataBundle) -> dict:
    """Every RNG a resumed run needs to continue as if it had never stopped (exact on CPU with
    num_workers 0; with workers, the shuffling order resumes exactly, the workers' augmentation
    streams are reseeded)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
        "loader": data.train.generator.get_state() if data.train.generator is not None else None,
    }


def _restore_rng(state: dict, data: DataBundle) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(state["python"]))
    if state["loader"] is not None and data.train.generator is not None:
        data.train.generator.set_state(state["loader"])


@dataclass
class _Progress:
    """What the epoch loop carries from one epoch to the next (and across a resume)."""

    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best: EvalOutput | None = None  # in memory only; rebuilt from best.pt after a resume


def _save_last(path: Path, model, opt, scheduler, scaler, stopper, progress: _Progress, data, cfg,
               ema: Ema | None = None) -> None:
    save_atomic(
        {"model": model.state_dict(), "ema": ema.state_dict() if ema else None,
         "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict(),
         "scaler": scaler.state_dict() if scaler else None, "early_stopping": stopper.state_dict(),
         "epoch": len(progress.history), "history": progress.history, "best_epoch": progress.best_epoch,
         "best_value": progress.best_value, "rng": _rng_state(data), "config": cfg.model_dump(mode="json")},
        path,
    )


def _resume(path: Path, model, opt, scheduler, scaler, stopper, data, device, ema: Ema | None = None) -> _Progress:
    state = load_checkpoint(path, map_location=device)
    model.load_state_dict(state["model"])
    if ema is not None:
        if state.get("ema") is None:
            raise RunFailed(f"{path} was written without train.ema: it cannot continue an EMA run")
        ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    _restore_rng(state["rng"], data)
    return _Progress(history=list(state["history"]), best_value=state["best_value"], best_epoch=state["best_epoch"])


def _best_from_checkpoint(workdir: Path, eval_model, model, data, loss_fn, device, dtype, cfg) -> EvalOutput:
    """The best epoch's evaluation, recomputed from best.pt (needed after a resume)."""
    current().barrier()  # rank 0 wrote best.pt; every rank reads it
    state = load_checkpoint(workdir / contract.BEST_CHECKPOINT, map_location=device)
    model.load_state_dict(state["model"])
    return evaluate(eval_model, data.val, loss_fn, device, dtype, channels_last=cfg.model.channels_last,
                    batch_transform=data.eval_batch_transform, tta=cfg.evaluation.tta)


def _archive(workdir: Path, cfg: RunConfig, epochs: int) -> list[Path]:
    """The model files a finished run keeps (``checkpoint.keep``), in ``checkpoint.dtype``."""
    ckpt_dir = workdir / contract.CHECKPOINTS_DIR
    keep = cfg.checkpoint.keep
    if keep == "none":
        return []
    files = [workdir / contract.BEST_CHECKPOINT]
    if keep == "all":
        files += [ckpt_dir / f"epoch_{e:03d}.pt" for e in range(1, epochs + 1) if (ckpt_dir / f"epoch_{e:03d}.pt").exists()]
    if cfg.checkpoint.dtype == "fp16":
        files = [_half_copy(f, workdir / "archive") for f in files]
    if keep in ("best+last", "all"):
        files.append(workdir / contract.LAST_CHECKPOINT)  # resume state: always full precision
    return files


def _half_copy(path: Path, folder: Path) -> Path:
    state = load_checkpoint(path)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return save_atomic(state, folder / path.name)


def train(
    cfg: RunConfig,
    logger: RunLogger,
    workdir: Path,
    *,
    quiet: bool = False,
    base_dir: Path | None = None,
    resume: bool = False,
    exclude: frozenset[str] = frozenset(),
    fold_groups: tuple[tuple[str, ...], ...] = (),
) -> TrainResult:
    """Train one run to the end (epochs or early stop) and report it.

    With ``resume``, continue from ``workdir/checkpoints/last.pt`` when it exists: epochs
    already in the checkpoint are replayed to ``logger`` (which skips steps it already has),
    then training goes on from the next epoch. ``exclude``: image paths to leave out (the
    bad-image scan's skip list). Raises RunFailed on a non-finite loss and BioclfError on bad
    input (data, weights, budget). Worker processes and memory are released on every exit.
    """
    ctx = current()
    device = train_device(resolve_device(cfg.train.device), ctx)
    if ctx.enabled and cfg.train.sync_batchnorm and device.type != "cuda":
        raise BioclfError("train.sync_batchnorm: SyncBatchNorm needs CUDA devices (one per process); "
                          "set it to false for CPU (gloo) runs")
    reset_peak_rss()
    reset_gpu_peak(device)
    data = None
    try:
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark and not cfg.train.deterministic
        data = build_loaders(cfg.data, seed=cfg.train.seed, device_type=device.type, base_dir=base_dir,
                             exclude=exclude, batch_transforms=True, rank=ctx.rank, world=ctx.world,
                             fold=fold_plan(cfg, fold_groups))
        check_num_classes(cfg.data, data.num_classes)
        tree = run_taxonomy(cfg, data.classes)
        return _train(cfg, logger, Path(workdir), data, device, quiet=quiet, resume=resume, tree=tree)
    finally:
        if data is not None:
            shutdown_loader(data.train)
            shutdown_loader(data.val)
        del data
        release(device)


def fold_plan(cfg: RunConfig, groups: tuple[tuple[str, ...], ...] = ()) -> FoldPlan | None:
    """The fold this run holds out (evaluation.folds), with the duplicate groups to keep together."""
    evaluation = cfg.evaluation
    if evaluation.folds is None:
        return None
    if evaluation.fold is None:
        raise BioclfError("evaluation.folds: a run needs its evaluation.fold (0..K-1); a suite sets it for each of "
                          "its K runs (bioclf-exp run)")
    return FoldPlan(evaluation.folds, evaluation.fold, evaluation.fold_seed, groups)


@dataclass
class _Parts:
    """What a run trains with: the model (plain, as stepped, as evaluated) and its optimisation."""

    model: nn.Module
    step_model: nn.Module
    eval_model: nn.Module
    counts: object
    dtype: torch.dtype | None
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler | None
    stopper: EarlyStopping
    ema: Ema | None = None  # train.ema: the averaged weights, which are evaluated and kept

    @property
    def scored_model(self) -> nn.Module:
        """The model every validation runs: the average when there is one."""
        return self.ema.module if self.ema is not None else self.eval_model

    @property
    def kept_model(self) -> nn.Module:
        """The weights a checkpoint keeps (plain module, no compile / DDP wrapper)."""
        return self.ema.module if self.ema is not None else self.model

    def save_last(self, path: Path, progress: "_Progress", data: DataBundle, cfg: RunConfig) -> None:
        _save_last(path, self.model, self.opt, self.scheduler, self.scaler, self.stopper, progress, data, cfg,
                   self.ema)


def _train(cfg: RunConfig, logger: RunLogger, workdir: Path, data: DataBundle, device: torch.device, *,
           quiet: bool, resume: bool, tree: Taxonomy | None = None) -> TrainResult:
    # Under DDP every rank trains and evaluates; rank 0 alone writes files and logs (module
    # docstring of bioclf.engine.distributed). Decisions that depend on files come from rank 0.
    ctx = current()
    if ctx.is_main:
        (workdir / contract.CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        (workdir / contract.PREDICTIONS_DIR).mkdir(exist_ok=True)
    parts = _build_parts(cfg, data, device, ctx, tree)
    if ctx.enabled and cfg.data.resize_cache:  # any rank may have built part of the cache
        data.resized_now = int(ctx.sum_(torch.tensor(float(data.resized_now), device=device,
                                                     dtype=torch.float64)).item())
    if ctx.is_main:  # on every start: a resumed run may continue on another kind of device
        logger.log_tags(start_tags(data))
    progress = _start(cfg, logger, workdir, data, parts, device, resume, ctx, tree)

    show = cfg.train.progress and not quiet and ctx.is_main
    stopper = parts.stopper
    stopped_early = bool(progress.history) and stopper.cfg.enabled and stopper.bad_epochs >= stopper.cfg.patience
    for epoch in range(len(progress.history) + 1, cfg.train.epochs + 1):
        if stopped_early:
            break
        stopped_early = _run_epoch(epoch, cfg, logger, workdir, data, parts, device, progress, show, ctx)

    if progress.best is None:  # resumed: the best epoch's outputs are on disk, not in memory
        progress.best = _best_from_checkpoint(workdir, parts.eval_model, parts.model, data, parts.loss_fn, device,
                                              parts.dtype, cfg)
    if not ctx.is_main:  # the other ranks' part ends here: rank 0 writes and logs the results
        return TrainResult(best_epoch=progress.best_epoch, epochs_run=len(progress.history),
                           stopped_early=stopped_early, summary={"best_val_acc": progress.best.acc},
                           history=pd.DataFrame(progress.history), num_params=parts.counts.total,
                           num_trainable_params=parts.counts.trainable, files={"checkpoints": []})
    return _finish(cfg, logger, workdir, data, parts.kept_model, device, parts.dtype, progress, parts.counts,
                   stopped_early)


def _build_parts(cfg: RunConfig, data: DataBundle, device: torch.device, ctx: Dist,
                 tree: Taxonomy | None = None) -> _Parts:
    """The model (budget checked, on the device, wrapped for DDP / compile) and its optimisation.
    ``tree``: the run's taxonomy (taxonomy-aware losses, a hierarchical head), or None."""
    rank_weights = cfg.model.head.rank_weights
    rank_sizes = head_rank_sizes(rank_weights, tree.rank_sizes(), tree.ranks) if tree is not None else ()
    model = build_model(cfg.model, data.num_classes, rank_sizes=rank_sizes)
    counts = count_params(model)
    check_param_budget(cfg.model, counts)
    if ctx.enabled and cfg.train.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.model.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    step_model, eval_model = _wrap(model, cfg, device, ctx)
    dtype = amp_dtype(cfg.train.amp, device)
    opt = build_optimizer(model, cfg.optimizer)
    return _Parts(model=model, step_model=step_model, eval_model=eval_model, counts=counts, dtype=dtype,
                  loss_fn=build_loss(cfg.loss, tree, rank_weights).to(device), opt=opt,
                  scheduler=build_scheduler(opt, cfg.scheduler, cfg.train.epochs),
                  scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
                  stopper=EarlyStopping(cfg.early_stopping),
                  ema=Ema(model, cfg.train.ema.decay, cfg.train.ema.warmup) if cfg.train.ema else None)


def _start(cfg: RunConfig, logger: RunLogger, workdir: Path, data: DataBundle, parts: _Parts, device: torch.device,
           resume: bool, ctx: Dist, tree: Taxonomy | None = None) -> _Progress:
    """The progress to continue from: the last checkpoint's (its epochs replayed to the logger,
    which skips those the store has), else a fresh start (config and classes logged)."""
    last_path = workdir / contract.LAST_CHECKPOINT
    if ctx.broadcast(resume and last_path.exists()):
        progress = _resume(last_path, parts.model, parts.opt, parts.scheduler, parts.scaler, parts.stopper, data,
                           device, parts.ema)
        for row in progress.history:  # fill epochs logged to the checkpoint but not to the store
            logger.log_epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
        return progress
    if ctx.is_main:
        (workdir / contract.CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        _write_classes(data, workdir / contract.CLASSES)
        logger.log_artifact(workdir / contract.CONFIG)
        logger.log_artifact(workdir / contract.CLASSES)
        if tree is not None:  # the tree the run trained with, for the report (data.taxonomy may move)
            logger.log_artifact(tree.write_csv(workdir / contract.TAXONOMY))
        if data.fold_rows is not None:  # the split every fold run of the suite shares
            pd.DataFrame(data.fold_rows, columns=["path", "label", "fold"]).to_csv(workdir / contract.FOLDS,
                                                                                  index=False)
            logger.log_artifact(workdir / contract.FOLDS)
    return _Progress()


def _run_epoch(epoch: int, cfg: RunConfig, logger: RunLogger, workdir: Path, data: DataBundle, parts: _Parts,
               device: torch.device, progress: _Progress, show: bool, ctx: Dist) -> bool:
    """Train and validate one epoch, keep its checkpoints, step the scheduler, log it. Returns
    whether early stopping ends the run here."""
    epoch_start = time.perf_counter()
    if ctx.enabled:
        reseed_for_epoch(cfg.train.seed, epoch, ctx, data.train.generator)
        data.train.sampler.set_epoch(epoch)
    lr = current_lr(parts.opt)  # the LR this epoch trains with; a drop shows from the next epoch
    n_train = len(data.train.sampler) if ctx.enabled else len(data.train.dataset)
    with tqdm(total=n_train, desc=f"epoch {epoch}/{cfg.train.epochs}", unit="img", leave=False,
              disable=None if show else True, file=sys.stderr, dynamic_ncols=True) as bar:
        metrics = train_one_epoch(parts.step_model, data, parts.loss_fn, parts.opt, parts.scaler, device,
                                  parts.dtype, cfg, bar, after_step=parts.ema.update if parts.ema else None)
    ctx.sync_buffers(parts.model)
    if parts.ema is not None:  # the average follows each rank's own BatchNorm statistics: rank 0's for all
        ctx.sync_buffers(parts.ema.module)
    val = evaluate(parts.scored_model, data.val, parts.loss_fn, device, parts.dtype,
                   channels_last=cfg.model.channels_last, batch_transform=data.eval_batch_transform,
                   tta=cfg.evaluation.tta)
    metrics.update(val_loss=val.loss, val_acc=val.acc, val_top5_acc=val.top5, lr=lr)
    metrics["epoch_time_s"] = time.perf_counter() - epoch_start
    metrics.update(machine_load())
    progress.history.append({"epoch": epoch, **metrics})
    _keep_checkpoints(epoch, cfg, workdir, data, parts.kept_model, metrics, val, progress, ctx.is_main)
    step_scheduler(parts.scheduler, metrics, cfg.scheduler)
    stopped_early = parts.stopper.step(metrics) and epoch < cfg.train.epochs
    # The checkpoint is written before the epoch is logged: a kill in between leaves an
    # epoch the store lacks, which a resume replays; never one it has twice. The console
    # line comes last, so an epoch shown is an epoch kept.
    if ctx.is_main:
        parts.save_last(workdir / contract.LAST_CHECKPOINT, progress, data, cfg)
    logger.log_epoch(epoch, metrics)
    if show:
        tqdm.write(
            f"epoch {epoch:>3}  train loss {metrics['train_loss']:.4f} acc {metrics['train_acc']:.3f}  "
            f"val loss {val.loss:.4f} acc {val.acc:.3f} top5 {val.top5:.3f}  lr {lr:.2e}  "
            f"{metrics['train_images_per_s']:.0f} img/s" + ("  *" if progress.best_epoch == epoch else ""),
            file=sys.stderr,
        )
    kill_point("epoch_logged")
    return stopped_early


def _keep_checkpoints(epoch: int, cfg: RunConfig, workdir: Path, data: DataBundle, model: nn.Module,
                      metrics: dict, val: EvalOutput, progress: _Progress, main: bool) -> None:
    """A new best epoch becomes best.pt (and the progress's best); with keep: all, every epoch is kept."""
    model_state = {"model": model.state_dict(), "config": cfg.model_dump(mode="json"), "classes": data.classes,
                   "class_names": data.class_names, "epoch": epoch, "metrics": metrics}
    if _better(metrics[cfg.train.select_best], progress.best_value, cfg.train.select_best):
        progress.best, progress.best_value, progress.best_epoch = val, metrics[cfg.train.select_best], epoch
        if main:
            save_atomic(model_state, workdir / contract.BEST_CHECKPOINT)
    if cfg.checkpoint.keep == "all" and main:
        save_atomic(model_state, workdir / contract.CHECKPOINTS_DIR / f"epoch_{epoch:03d}.pt")


def _wrap(model: nn.Module, cfg: RunConfig, device: torch.device, ctx: Dist) -> tuple[nn.Module, nn.Module]:
    """(model to train, model to evaluate). Compiled or not, wrapped in DDP or not, checkpoints
    hold the plain module's state_dict (no "_orig_mod." / "module." keys). Under DDP the val
    shards can differ by one batch between ranks, so evaluation runs the plain module (DDP's
    forward may sync buffers: a collective that a rank with one batch fewer would never join)."""
    if not ctx.enabled:
        step_model = torch.compile(model) if cfg.train.compile else model
        return step_model, step_model
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # Not compiled for evaluation: a second compilation would cost more than it saves there.
    return (torch.compile(ddp) if cfg.train.compile else ddp), model


def _finish(cfg: RunConfig, logger: RunLogger, workdir: Path, data: DataBundle, model: nn.Module,
            device: torch.device, dtype, progress: _Progress, counts, stopped_early: bool) -> TrainResult:
    """Rank 0: history, predictions, archived checkpoints, the summary metrics and artifacts."""
    best = progress.best
    history_frame = _write_history(progress.history, workdir / contract.HISTORY)
    predictions_frame(best.paths, best.labels, best.probs).to_csv(workdir / contract.PREDICTIONS, index=False)
    np.savez_compressed(workdir / contract.VAL_PROBS, probs=best.probs.astype(np.float16))
    archived = _archive(workdir, cfg, len(progress.history))
    image_shape = tuple(data.eval_input(device).shape[1:])
    summary = {
        "best_val_acc": best.acc,
        "best_val_top5_acc": best.top5,
        "best_val_loss": best.loss,
        **macro_scores(best.labels, best.probs.argmax(1)),
        "best_epoch": float(progress.best_epoch),
        "epochs_run": float(len(progress.history)),
        "stopped_early": float(stopped_early),
        "train_time_s": float(sum(row["epoch_time_s"] for row in progress.history)),
        # The report's computational table: memory, model file, latency per image at batch 16.
        "peak_rss_mb": peak_rss_mb(),
        "checkpoint_mb": file_mb(archived[0] if archived else workdir / contract.BEST_CHECKPOINT),
        "inference_ms_per_image": inference_ms_per_image(model, image_shape, device, dtype),
    }
    if (gpu := gpu_peak_mb(device)) is not None:
        summary["peak_gpu_mem_mb"] = gpu
    if cfg.data.resize_cache:
        # 0 for every variant after the first shows the suite decoded the dataset once.
        summary["resize_cache_built_images"] = float(data.resized_now)
    logger.log_summary(summary)
    kill_point("summary_logged")
    logger.log_artifact(workdir / contract.HISTORY)
    logger.log_artifact(workdir / contract.PREDICTIONS, contract.PREDICTIONS_DIR)
    logger.log_artifact(workdir / contract.VAL_PROBS, contract.PREDICTIONS_DIR)
    for path in archived:
        logger.log_artifact(path, contract.CHECKPOINTS_DIR)
    return TrainResult(
        best_epoch=progress.best_epoch,
        epochs_run=len(progress.history),
        stopped_early=stopped_early,
        summary=summary,
        history=history_frame,
        num_params=counts.total,
        num_trainable_params=counts.trainable,
        files={"history": workdir / contract.HISTORY, "predictions": workdir / contract.PREDICTIONS,
               "checkpoints": archived},
    )
