"""Variants across a Ray cluster: ``bioclf-exp run SPEC --executor ray [--address ADDR]``.

The driver (the machine running bioclf-exp) does what a local run does first: preflight,
data checks and the suite's parent run. Then each variant x seed becomes one Ray task with
``--cpus-per-run`` / ``--gpus-per-run`` as its resource request; Ray's scheduler places them
(several at once where resources allow). A task runs the same ``bioclf.jobs.run_job`` as a local
suite, so skip, resume, claims and failure isolation are the same code; the child run logs
straight to the tracking server from the worker. What a task prints (its start, its epoch
lines, its end) reaches the driver's terminal through Ray's log forwarding.

A worker process or node that dies mid-run: Ray retries the task (``--max-retries``,
default 1); the retry finds the interrupted run and resumes it from its last checkpoint when
the work folder is visible there (same node, or ``$BIOCLF_WORK_DIR`` on a shared file
system), else starts it anew and marks the old one KILLED. When the retries are spent the
driver marks the run KILLED with the error as a tag: the same command resumes it. No run is
left RUNNING by a lost worker, and none is trained twice concurrently (claims).

Requirements: ``pip install -e '.[ray]'`` on the driver and on every node, the spec's data
paths valid on every node, and a tracking URI every node reaches (``http://`` server; a
``sqlite:///`` path works for a one-machine cluster only).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from bioclf.errors import BioclfError
from bioclf.jobs import Job, Outcome, Status, run_job
from bioclf.tracking import Tracker


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local cluster for this suite (and stop it after)
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 1  # per task, on worker / node death (not on a run's own failure)
    num_cpus: int | None = None  # size of a local cluster (default: all CPUs)


def require_ray():
    # Ray merges similar log lines of different workers by default: epoch lines of different
    # variants would be folded together. Read when ray is first imported.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise BioclfError("--executor ray needs Ray, an optional extra: pip install -e '.[ray]' "
                          "(or pip install ray)") from None
    return ray


def _run_task(job: Job) -> Outcome:
    """One job on a Ray worker: the local runner's code, against the shared store."""
    return run_job(job, echo=lambda line: print(line, flush=True))


def _check_resources(ray, options: RayOptions) -> None:
    total = ray.cluster_resources()
    for flag, want, key in (("--cpus-per-run", options.cpus_per_run, "CPU"),
                            ("--gpus-per-run", options.gpus_per_run, "GPU")):
        have = total.get(key, 0.0)
        if want > have:
            raise BioclfError(f"{flag} {want:g}: the Ray cluster has {have:g} {key}(s) in all; no run could start")


@contextmanager
def connected(options: RayOptions):
    """Ray connected (or a local cluster started) and checked for the resources one run asks
    for; a cluster started here is stopped on the way out. One started by the caller is used
    as it is."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=options.address, num_cpus=options.num_cpus if options.address is None else None,
                     include_dashboard=False, log_to_driver=True, configure_logging=True, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = options.address or "a local cluster"
            raise BioclfError(f"--executor ray: could not connect to {where}: {str(exc).splitlines()[0]}") from None
    try:
        _check_resources(ray, options)
        yield ray
    finally:
        if started_here:
            ray.shutdown()


class RayExecutor:
    """``run(jobs)``: every job a Ray task on the cluster ``connected`` joined; outcomes in job order."""

    def __init__(self, tracker: Tracker, options: RayOptions, *, fail_fast: bool = False,
                 echo: Callable[[str], None] = print):
        self.tracker, self.options, self.fail_fast, self.echo = tracker, options, fail_fast, echo

    def run(self, jobs: list[Job]) -> list[Outcome]:
        ray, options, echo = require_ray(), self.options, self.echo
        if options.address and self.tracker.uri.startswith("sqlite:"):
            echo(f"warning: {self.tracker.uri} is a file on this machine: workers on other nodes cannot log to it "
                 "(use an http:// tracking server, docs/distributed.md)")
        task = ray.remote(_run_task).options(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run,
                                             max_retries=options.max_retries, retry_exceptions=False)
        pending = {task.remote(job): job for job in jobs}
        resources = f"{options.cpus_per_run:g} CPU" + (f", {options.gpus_per_run:g} GPU" if options.gpus_per_run else "")
        echo(f"ray: {len(jobs)} run(s) submitted ({resources} each) to {options.address or 'a local cluster'}")
        outcomes: dict[int, Outcome] = {}
        try:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                outcomes[job.index] = self._collect(ray, ref, job)
                if outcomes[job.index].status == Status.FAILED and self.fail_fast and pending:
                    echo("stopping: --fail-fast (cancelling the runs not finished)")
                    self._cancel(ray, pending, outcomes, "--fail-fast")
        except BaseException:  # Ctrl-C, or the driver itself failing: stop the tasks, mark their runs
            self._cancel(ray, pending, outcomes, "the driver stopped")
            raise
        return [outcomes[i] for i in sorted(outcomes)]

    def _collect(self, ray, ref, job: Job) -> Outcome:
        """A finished task's Outcome; a task that raised (its own code failed outside training)
        is a failed run; a task whose worker was lost is a killed run."""
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return Outcome.of(job, Status.CANCELLED, error="cancelled")
        except ray.exceptions.RayTaskError as exc:  # raised by run_job itself (not the worker dying)
            cause = getattr(exc, "cause", None) or exc
            first = str(cause).splitlines()[0] if str(cause) else ""
            message, details = f"{type(cause).__name__}: {first}", str(exc)
            run_id = self._mark_running(job, lambda rid: self.tracker.fail(rid, message, details))
            self.echo(f"{job.label}: FAILED: {message}")
            return Outcome.of(job, Status.FAILED, run_id, error=message)
        except ray.exceptions.RayError as exc:  # worker / node lost after the retries
            retries = self.options.max_retries
            message = (f"the Ray worker running it died ({type(exc).__name__}; {retries} retr"
                       f"{'y' if retries == 1 else 'ies'}); rerun the same command to resume it")
            run_id = self._mark_running(job, lambda rid: self.tracker.mark_killed(rid, message))
            self.echo(f"{job.label}: KILLED: {message}")
            return Outcome.of(job, Status.KILLED, run_id, error=message)

    def _cancel(self, ray, pending: dict, outcomes: dict, reason: str) -> None:
        """Cancel the tasks not finished. A running task gets a KeyboardInterrupt (not SIGKILL), so
        it marks its run KILLED itself, resumable; whatever none of them got to mark is marked
        here. A task that finished meanwhile keeps its outcome."""
        refs = list(pending)
        for ref in refs:
            ray.cancel(ref, force=False)
        ray.wait(refs, num_returns=len(refs), timeout=60)
        for ref in refs:
            job = pending.pop(ref)
            try:
                outcomes[job.index] = ray.get(ref, timeout=0)
                continue
            except Exception:  # noqa: BLE001 - cancelled, interrupted or lost: all the same here
                pass
            message = f"cancelled ({reason}); rerun the same command to resume it"
            run_id = self._mark_running(job, lambda rid: self.tracker.mark_killed(rid, message))
            outcomes[job.index] = Outcome.of(job, Status.CANCELLED, run_id, error=reason)

    def _mark_running(self, job: Job, mark: Callable[[str], None]) -> str | None:
        """``mark`` every run of the job still RUNNING (its worker will never end it); the first id."""
        found = [r.run_id for r in self.tracker.find_variant_runs(job.experiment_id, job.run.config_hash)
                 if r.status == "RUNNING"]
        for run_id in found:
            mark(run_id)
        return found[0] if found else None
