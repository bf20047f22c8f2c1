"""Variants across a Ray cluster: ``bioclf-exp run SPEC --executor ray [--address ADDR]``.

The driver (the machine running bioclf-exp) does what a local run does first: preflight,
data checks and the suite's parent run. Then each variant x seed becomes one Ray task with
``--cpus-per-run`` / ``--gpus-per-run`` as its resource request; Ray's scheduler places them
(several at once where resources allow). A task runs the same ``runner._run_one`` as a local
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
from pathlib import Path
from typing import Callable

from bioclf.errors import BioclfError


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


def _run_task(tracking_uri: str, exp_id: str, parent_id: str, suite, run, count, force: bool, quiet: bool,
              label: str, base_dir: Path, scan, fingerprint, index: int):
    """One variant x seed on a Ray worker: the local runner's code, against the shared store."""
    from bioclf.runner import _run_one
    from bioclf.tracking import Tracker

    def echo(line: str) -> None:
        print(line, flush=True)

    return _run_one(Tracker(tracking_uri), exp_id, parent_id, suite, run, count, force, quiet, echo, label,
                    base_dir, scan, fingerprint, index)


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


def run_on_ray(tracker, exp_id: str, parent_id: str, suite, jobs: list[tuple], options: RayOptions, *,
               force: bool, quiet: bool, fail_fast: bool, echo: Callable[[str], None]) -> list:
    """Run ``jobs`` (label, run, count, base_dir, scan, fingerprint, index) as Ray tasks on the
    cluster ``connected`` joined; RunOutcomes in job order."""
    from bioclf.runner import RunOutcome

    ray = require_ray()
    if options.address and tracker.uri.startswith("sqlite:"):
        echo(f"warning: {tracker.uri} is a file on this machine: workers on other nodes cannot log to it "
             "(use an http:// tracking server, docs/distributed.md)")
    task = ray.remote(_run_task).options(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run,
                                         max_retries=options.max_retries, retry_exceptions=False)
    pending = {}
    for label, run, count, base_dir, scan, fingerprint, index in jobs:
        ref = task.remote(tracker.uri, exp_id, parent_id, suite, run, count, force, quiet, label, base_dir,
                          scan, fingerprint, index)
        pending[ref] = (index, label, run)
    resources = f"{options.cpus_per_run:g} CPU" + (f", {options.gpus_per_run:g} GPU" if options.gpus_per_run else "")
    echo(f"ray: {len(jobs)} run(s) submitted ({resources} each) to {options.address or 'a local cluster'}")
    outcomes: dict[int, RunOutcome] = {}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            index, label, run = pending.pop(ref)
            outcomes[index] = _collect(ray, ref, tracker, exp_id, run, label, options, echo)
            if outcomes[index].status == "failed" and fail_fast and pending:
                echo("stopping: --fail-fast (cancelling the runs not finished)")
                _cancel(ray, pending, tracker, exp_id, outcomes, "--fail-fast")
    except BaseException:  # Ctrl-C, or the driver itself failing: stop the tasks, mark their runs
        _cancel(ray, pending, tracker, exp_id, outcomes, "the driver stopped")
        raise
    return [outcomes[i] for i in sorted(outcomes)]


def _collect(ray, ref, tracker, exp_id: str, run, label: str, options: RayOptions, echo):
    """A finished task's RunOutcome; a task that raised (its own code failed outside training)
    is a failed run; a task whose worker was lost is a killed run."""
    from bioclf.runner import RunOutcome

    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return RunOutcome(run.variant, run.seed, run.config_hash, "cancelled", error="cancelled")
    except ray.exceptions.RayTaskError as exc:  # raised by _run_one itself (not the worker dying)
        cause = getattr(exc, "cause", None) or exc
        first = str(cause).splitlines()[0] if str(cause) else ""
        message = f"{type(cause).__name__}: {first}"
        run_id = None
        for found in _running(tracker, exp_id, run):
            run_id = run_id or found.info.run_id
            tracker.fail(found.info.run_id, message, str(exc))
        echo(f"{label}: FAILED: {message}")
        return RunOutcome(run.variant, run.seed, run.config_hash, "failed", run_id, error=message)
    except ray.exceptions.RayError as exc:  # worker / node lost after the retries
        outcome = _lost(tracker, exp_id, run, exc, options.max_retries)
        echo(f"{label}: KILLED: {outcome.error}")
        return outcome


def _cancel(ray, pending: dict, tracker, exp_id: str, outcomes: dict, reason: str) -> None:
    """Cancel the tasks not finished. A running task gets a KeyboardInterrupt (not SIGKILL), so
    it marks its run KILLED itself, resumable; whatever none of them got to mark is marked
    here. A task that finished meanwhile keeps its outcome."""
    from bioclf.runner import RunOutcome

    refs = list(pending)
    for ref in refs:
        ray.cancel(ref, force=False)
    ray.wait(refs, num_returns=len(refs), timeout=60)
    for ref in refs:
        index, _, run = pending.pop(ref)
        try:
            outcomes[index] = ray.get(ref, timeout=0)
            continue
        except Exception:  # noqa: BLE001 - cancelled, interrupted or lost: all the same here
            pass
        run_id = None
        for found in _running(tracker, exp_id, run):
            run_id = run_id or found.info.run_id
            tracker.mark_killed(found.info.run_id, f"cancelled ({reason}); rerun the same command to resume it")
        outcomes[index] = RunOutcome(run.variant, run.seed, run.config_hash, "cancelled", run_id, error=reason)


def _running(tracker, exp_id: str, run) -> list:
    return [found for found in tracker.find_variant_runs(exp_id, run.config_hash) if found.info.status == "RUNNING"]


def _lost(tracker, exp_id: str, run, exc: Exception, retries: int):
    """The task's worker died and Ray's retries are spent: the run it was training is marked
    KILLED (resumable by the same command), never left RUNNING."""
    from bioclf.runner import RunOutcome

    message = (f"the Ray worker running it died ({type(exc).__name__}; {retries} retr"
               f"{'y' if retries == 1 else 'ies'}); rerun the same command to resume it")
    run_id = None
    for found in _running(tracker, exp_id, run):
        run_id = run_id or found.info.run_id
        tracker.mark_killed(found.info.run_id, message)
    return RunOutcome(run.variant, run.seed, run.config_hash, "killed", run_id, error=message)
