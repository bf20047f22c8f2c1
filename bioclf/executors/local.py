"""The suite's jobs one after the other in this process, and under torchrun (DDP) the
protocol that keeps the other ranks training the same job in step with rank 0.

Rank 0 alone decides (skip / resume / new run) and talks to MLflow; before it trains a job it
sends ``Train`` to the others, after a job it skipped it sends ``Next``, and ``Stop`` at the
end (bioclf.engine.distributed.Dist.broadcast). The other ranks run ``follow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bioclf.engine import NullLogger, train
from bioclf.engine.distributed import Dist, current
from bioclf.errors import RunFailed
from bioclf.jobs import Job, Outcome, Printer, Status, run_job
from bioclf.spec.loader import RunSpec
from bioclf.tracking import Tracker


@dataclass(frozen=True)
class Train:
    """Rank 0 trains job ``index`` in ``workdir`` now, leaving out ``skipped`` images (and, for a
    fold run, splitting with the same duplicate groups): train it too."""

    index: int
    workdir: str
    skipped: frozenset[str]
    fold_groups: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Next:
    """Rank 0 did not train the last job (skipped, or another process has it)."""


@dataclass(frozen=True)
class Stop:
    """The suite is over."""


class LocalExecutor:
    """``run(jobs)``: each job in turn, here; under DDP with the other ranks (``follow``)."""

    def __init__(self, tracker: Tracker, *, fail_fast: bool = False, echo: Printer = print, ctx: Dist | None = None):
        self.tracker, self.fail_fast, self.echo = tracker, fail_fast, echo
        self.ctx = ctx or current()

    def _announce(self, job: Job, workdir: Path) -> None:
        self.ctx.broadcast(Train(job.index, str(workdir), job.skipped, job.fold_groups))

    def run(self, jobs: list[Job]) -> list[Outcome]:
        outcomes = []
        for job in jobs:
            outcome = run_job(job, self.tracker, self.echo, before_train=self._announce)
            outcomes.append(outcome)
            if outcome.status in (Status.SKIPPED, Status.BUSY):
                self.ctx.broadcast(Next())
            if outcome.status == Status.FAILED and self.fail_fast:
                self.echo("stopping: --fail-fast")
                break
        self.ctx.broadcast(Stop())
        return outcomes


def follow(runs: list[RunSpec], base_dir: Path, ctx: Dist) -> None:
    """A rank other than 0: train each of ``runs`` (the suite's, in job order) that rank 0 trains, in step with it, logging nothing.

    A RunFailed (a NaN loss, an empty loader: decided after an all-reduce, so every rank
    raises it at the same point) is rank 0's to record, and the suite goes on. Any other
    error ends this process, and torchrun then stops the job: rank 0 marks its run KILLED
    (the same command resumes it), or FAILED for bad input."""
    while True:
        message = ctx.broadcast(None)
        if isinstance(message, Stop):
            return
        if not isinstance(message, Train):
            continue
        try:
            train(runs[message.index].config, NullLogger(), Path(message.workdir), quiet=True, base_dir=base_dir,
                  resume=True, exclude=message.skipped, fold_groups=message.fold_groups)
        except RunFailed:
            pass
