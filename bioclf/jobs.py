"""One run of a suite as a unit of work: ``Job`` (what to train and where to log it),
``Status`` and ``Outcome`` (what became of it), and ``run_job`` (skip, resume or train it).

Every executor (bioclf.executors: one process, data-parallel, Ray) calls ``run_job`` for each
job, so skipping, resuming, claims and failure isolation are one piece of code whatever runs
the suite. A Job is picklable: a Ray task receives it whole.
"""

from __future__ import annotations

import enum
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bioclf.claims import claim
from bioclf.engine import train
from bioclf.engine.distributed import current
from bioclf.errors import BioclfError, RunFailed
from bioclf.faults import kill_point
from bioclf.spec.loader import RunSpec
from bioclf.tracking import RunRecord, Tracker, contract

Printer = Callable[[str], None]


class Status(str, enum.Enum):
    """What became of a job. A str, so it prints, compares and pickles as its value."""

    FINISHED = "finished"  # trained to the end in this call
    SKIPPED = "skipped"  # a FINISHED run with the same config hash was in the store
    BUSY = "busy"  # another process holds the claim on this config: it is training it
    FAILED = "failed"  # the run raised; recorded FAILED with its error (a rerun starts it anew)
    KILLED = "killed"  # interrupted or its worker lost; KILLED in the store (a rerun resumes it)
    CANCELLED = "cancelled"  # never finished because the suite stopped (--fail-fast, Ctrl-C on Ray)

    def __str__(self) -> str:
        return self.value

    @property
    def is_failure(self) -> bool:
        return self in (Status.FAILED, Status.KILLED, Status.CANCELLED)


@dataclass(frozen=True)
class Job:
    """One variant x seed of a suite, with everything needed to run it anywhere.

    ``params``: the child run's params (flattened config and parameter counts); ``skipped``:
    image paths the data scan leaves out (data.on_bad_image: skip) and ``skipped_text`` their
    list as logged; ``fingerprint``: the dataset's bioclf.datacheck.DatasetFingerprint."""

    index: int  # 0-based position in the suite (DDP followers find the run by it)
    label: str  # "[i/n] variant seed s", the prefix of every console line about it
    run: RunSpec
    params: dict
    base_dir: Path
    fingerprint: object
    tracking_uri: str
    experiment_id: str
    parent_id: str
    suite_hash: str
    skipped: frozenset[str] = frozenset()
    skipped_text: str = ""
    diff: str = ""  # what the variant changes from the baseline, in one line (tag bioclf.diff)
    force: bool = False
    quiet: bool = False
    # evaluation.folds: the groups of duplicate images the split keeps in one fold (absolute paths)
    fold_groups: tuple[tuple[str, ...], ...] = ()


@dataclass
class Outcome:
    variant: str
    seed: int
    config_hash: str
    status: Status
    run_id: str | None = None
    best_val_acc: float | None = None
    error: str | None = None
    fold: int | None = None  # evaluation.folds: the fold the run held out

    @classmethod
    def of(cls, job: Job, status: Status, run_id: str | None = None, best_val_acc: float | None = None,
           error: str | None = None) -> "Outcome":
        return cls(job.run.variant, job.run.seed, job.run.config_hash, status, run_id, best_val_acc, error,
                   job.run.fold)


# Called with (job, its work folder) just before training starts: under DDP rank 0 tells the
# other ranks to train it too.
BeforeTrain = Callable[[Job, Path], None]


def run_job(job: Job, tracker: Tracker | None = None, echo: Printer = print,
            before_train: BeforeTrain | None = None) -> Outcome:
    """Skip, resume or train ``job`` (module docstring), holding the claim on its config."""
    tracker = tracker or Tracker(job.tracking_uri)
    work_root = tracker.work_root()
    with claim(work_root / "claims", tracker.claim_key(job.run.config_hash)) as mine:
        if not mine:
            echo(f"{job.label}: skipped, another bioclf-exp process is training this config ({job.run.config_hash})")
            return Outcome.of(job, Status.BUSY)
        adopt_legacy_runs(job, tracker, echo)
        previous = tracker.find_variant_runs(job.experiment_id, job.run.config_hash)
        done = [r for r in previous if r.status == "FINISHED"]
        if done and not job.force:
            _retire(previous, done[0].run_id, tracker, work_root)  # a finished config resumes nothing
            return _skip(job, done[0], echo)
        run_id = _open_run(job, tracker, previous, work_root, echo)
        return _train_claimed(job, tracker, run_id, work_root / run_id, echo, before_train)


def adopt_legacy_runs(job: Job, tracker: Tracker, echo: Printer) -> None:
    """Runs of an earlier config hash version with this config get its current hash."""
    run = job.run
    if run.legacy_hash and run.legacy_hash != run.config_hash:
        adopted = tracker.adopt_legacy(job.experiment_id, run.legacy_hash, run.config_hash)
        if adopted:
            echo(f"{job.label}: {adopted} run(s) of an earlier release have the same config; "
                 f"re-tagged {run.legacy_hash} -> {run.config_hash}")


def _skip(job: Job, done: RunRecord, echo: Printer) -> Outcome:
    digest = job.fingerprint.digest
    if done.data_fingerprint and done.data_fingerprint != digest:
        echo(f"{job.label}: warning: finished run {done.run_id} was trained on other data "
             f"(fingerprint {done.data_fingerprint}, now {digest}); --force trains it again")
    echo(f"{job.label}: skipped, finished run {done.run_id} has the same config ({job.run.config_hash})")
    return Outcome.of(job, Status.SKIPPED, done.run_id, done.best_val_acc)


def _open_run(job: Job, tracker: Tracker, previous: list[RunRecord], work_root: Path, echo: Printer) -> str:
    """The MLflow run this job trains in, and the data it reads logged on it. Returns its id.

    An interrupted run (RUNNING or KILLED) is continued: from its last checkpoint when its work
    folder has one, else from epoch 1 when the store has no epoch of it yet (killed before its
    first checkpoint), so a suite keeps one child run per variant x seed whatever the kill
    point. Otherwise (``force``, or epochs logged by a worker whose folder is not visible here) a
    new run. Every other interrupted run of the config is KILLED and its scratch folder removed:
    it will never resume."""
    interrupted = [r for r in previous if r.status in ("RUNNING", "KILLED")]
    run_id = None if job.force else _continuable(interrupted, tracker, work_root)
    if run_id is not None:
        tracker.resume_variant(run_id, job.params)
        if (work_root / run_id / contract.LAST_CHECKPOINT).exists():
            echo(f"{job.label}: resuming run {run_id} from its last checkpoint")
        else:
            shutil.rmtree(work_root / run_id, ignore_errors=True)  # a best.pt of a lost epoch, at most
            echo(f"{job.label}: restarting run {run_id} from epoch 1 (it stopped before its first checkpoint)")
    else:
        run_id = tracker.start_variant(job.experiment_id, job.parent_id, variant=job.run.variant, seed=job.run.seed,
                                       config_hash=job.run.config_hash, suite_hash=job.suite_hash, params=job.params,
                                       diff=job.diff, fold=job.run.fold)
        kill_point("run_created")
        echo(f"{job.label}: training (run {run_id})")
    _retire(interrupted, run_id, tracker, work_root)
    tracker.log_dataset_input(run_id, job.fingerprint)
    if job.skipped:
        tracker.log_skipped_images(run_id, job.skipped_text, len(job.skipped))
    return run_id


def _retire(runs: list[RunRecord], keep: str, tracker: Tracker, work_root: Path) -> None:
    """Every interrupted run of ``runs`` but ``keep`` will never resume: KILLED if still RUNNING
    (we hold the claim, so nobody is training it any more), its scratch folder removed."""
    for stale in runs:
        if stale.run_id != keep and stale.status in ("RUNNING", "KILLED"):
            if stale.status == "RUNNING":
                tracker.finish(stale.run_id, "KILLED")
            shutil.rmtree(work_root / stale.run_id, ignore_errors=True)


def _continuable(interrupted: list[RunRecord], tracker: Tracker, work_root: Path) -> str | None:
    """The newest interrupted run that can go on: one with a checkpoint here, else one that
    logged no epoch yet (it restarts from epoch 1)."""
    for run in interrupted:
        if (work_root / run.run_id / contract.LAST_CHECKPOINT).exists():
            return run.run_id
    for run in interrupted:
        if not tracker.logged_epochs(run.run_id):
            return run.run_id
    return None


def _train_claimed(job: Job, tracker: Tracker, run_id: str, workdir: Path, echo: Printer,
                   before_train: BeforeTrain | None) -> Outcome:
    label, ctx = job.label, current()
    try:
        if before_train is not None:
            before_train(job, workdir)
        res = train(job.run.config, tracker.run_logger(run_id), workdir, quiet=job.quiet, base_dir=job.base_dir,
                    resume=True, exclude=job.skipped, fold_groups=job.fold_groups)
    except KeyboardInterrupt:
        tracker.finish(run_id, "KILLED")
        echo(f"{label}: interrupted; run {run_id} marked KILLED, rerun the same command to resume it")
        raise
    except Exception as exc:  # noqa: BLE001 - one variant's failure must not sink the suite
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if ctx.enabled and not isinstance(exc, (RunFailed, BioclfError)):
            # Under DDP only a RunFailed (raised on every rank alike, after an all-reduce) lets
            # the suite go on; anything else may have left the other ranks inside a collective.
            # End the job; like a kill, the same command resumes the run from its last epoch.
            tracker.mark_killed(run_id, f"{type(exc).__name__}: {message}")
            echo(f"{label}: KILLED: {message}; rerun the same command to resume it")
            raise
        tracker.fail(run_id, f"{type(exc).__name__}: {message}", traceback.format_exc())
        shutil.rmtree(workdir, ignore_errors=True)  # a failed run is retried as a new run, never resumed
        echo(f"{label}: FAILED: {message}")
        if ctx.enabled and not isinstance(exc, RunFailed):
            raise  # bad input (BioclfError): this rank's alone, maybe; end the DDP job
        return Outcome.of(job, Status.FAILED, run_id, error=message)
    tracker.finish(run_id, "FINISHED")
    kept = res.files["checkpoints"]
    kept_text = ", ".join(p.name for p in kept) if kept else "no model files"
    kept_mb = sum(p.stat().st_size for p in kept) / 1e6
    shutil.rmtree(workdir, ignore_errors=True)  # what the checkpoint policy keeps is in the store now
    acc = res.summary["best_val_acc"]
    echo(f"{label}: finished, best val acc {acc:.4f} at epoch {res.best_epoch} ({res.epochs_run} epochs); "
         f"kept {kept_text} ({kept_mb:.1f} MB, checkpoint.keep: {job.run.config.checkpoint.keep}) "
         f"in {tracker.artifact_uri(run_id)}/{contract.CHECKPOINTS_DIR}")
    return Outcome.of(job, Status.FINISHED, run_id, acc)
