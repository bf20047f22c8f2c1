"""Data-parallel training across processes (torch.distributed + DDP), launched by torchrun.

``torchrun --nproc-per-node N -m bioclf.cli run SPEC`` (or ``bioclf-exp run SPEC --nproc N``,
which launches that) starts N copies of the CLI. ``init_from_env`` joins them into one process
group: NCCL when every process has its own CUDA device, gloo otherwise (CPU, tested here with
two processes). Then ``current()`` tells the trainer and the runner who they are.

The rules every rank follows (docs/distributed.md):

- rank 0 alone decides (skip / resume / new run), talks to MLflow and writes checkpoints and
  artifacts; it sends each decision to the others (``Dist.on_main``), so no rank ever waits in
  a collective the others skipped;
- ``data.batch_size`` is per process: one optimizer step consumes ``world x batch_size`` images;
- the training set is split by DistributedSampler (padded so every rank takes the same number
  of steps); the validation set is sharded without padding and gathered, so every val metric is
  over the whole val set, in its original order, on every rank;
- train loss / accuracy / images per second are summed over ranks once per epoch (never per
  step: that would sync every step).
"""

from __future__ import annotations

import datetime
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from bioclf.errors import BioclfError

T = TypeVar("T")

# Long enough for a rank to wait while rank 0 scans a big dataset or a slow server answers.
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("BIOCLF_DIST_TIMEOUT_MIN", "60")))


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` run on rank 0 only; its exception re-raised on every rank, so the other
        ranks never wait for a rank 0 that has given up. ``fn()``'s value on rank 0, None on
        the others."""
        if not self.enabled:
            return fn()
        outcome: tuple[str, Any] = ("ok", None)
        value = None
        if self.is_main:
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                outcome = ("error", _picklable(exc))
        kind, error = self.broadcast(outcome)
        if kind == "error":
            raise error
        return value

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (gloo and NCCL both take int64 and float64)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP sends them at the
        start of each training forward only, so after an epoch's last step each rank holds its
        own; evaluation and the saved checkpoint must use the same ones."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def current() -> Dist:
    """This process's place in the process group (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment (no-op without one).

    NCCL when CUDA is used and there is a device per local rank; gloo otherwise. Each CUDA
    rank is pinned to ``cuda:LOCAL_RANK`` before anything allocates on the device.
    """
    if not launched_by_torchrun():
        return Dist()
    if dist.is_initialized():
        return current()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if use_cuda and per_node > torch.cuda.device_count():
        # Every rank decides alike (same numbers), so all stop here rather than mixing backends.
        raise BioclfError(f"{per_node} processes per node but {torch.cuda.device_count()} CUDA device(s): "
                          f"use --nproc {torch.cuda.device_count()} (one process per GPU), or train.device: cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train_device(device: torch.device, ctx: Dist) -> torch.device:
    """Under DDP a CUDA run uses this rank's own device."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def reseed_for_epoch(seed: int, epoch: int, ctx: Dist, loader_generator: torch.Generator | None = None) -> None:
    """Under DDP every rank draws its own augmentation and dropout randomness, a function of
    (seed, epoch, rank) alone: a resumed run continues exactly, on any rank, with no RNG state
    to save per rank (with loader workers: as exactly as a single process, whose persistent
    workers are reseeded on resume). The loader's generator, which seeds the workers, too:
    a resume restores rank 0's into every rank. (The model is initialised before this from
    the shared seed, and DDP copies rank 0's weights to every rank anyway.)"""
    import random

    import numpy as np

    mixed = (seed * 1_000_003 + epoch * 7_919 + ctx.rank) % 2**63
    random.seed(mixed)
    np.random.seed(mixed % 2**32)
    torch.manual_seed(mixed)
    if loader_generator is not None:
        loader_generator.manual_seed(mixed + 1)
