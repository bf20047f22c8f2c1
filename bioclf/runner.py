"""Run a suite: preflight every run, then one parent MLflow run and a child per variant x seed.

Per child: skip when a FINISHED run with the same config hash is in the store (``force``
reruns anyway, as a new run), else train it. A failing child is recorded as FAILED with its
error and the suite goes on (``fail_fast`` stops it); the caller turns failures into exit 1.
"""

from __future__ import annotations

import json
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bioclf.claims import claim
from bioclf.inventory import checked_param_counts, describe_runs, num_classes_of
from bioclf.engine import NullLogger, train
from bioclf.engine.distributed import Dist, current
from bioclf.errors import BioclfError, RunFailed
from bioclf.models import resolve_weights
from bioclf.models.catalog import ParamCount
from bioclf.spec.loader import RunSpec, Suite, config_dict, flatten
from bioclf.spec.schema import RunConfig

if TYPE_CHECKING:
    from bioclf.ray_executor import RayOptions

Printer = Callable[[str], None]


@dataclass
class RunOutcome:
    variant: str
    seed: int
    config_hash: str
    status: str  # finished | skipped | busy (another process has it) | failed | killed
    run_id: str | None = None
    best_val_acc: float | None = None
    error: str | None = None


@dataclass
class SuiteResult:
    experiment: str
    suite_run_id: str | None
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "killed")]


# ---------------------------------------------------------------- preflight


def _data_key(run: RunSpec) -> str:
    return repr(run.config.data.model_dump(include={"source", "root", "synthetic", "on_bad_image"}))


def check_data(runs: list[RunSpec], base_dir: Path | None = None,
               echo: Printer = print) -> tuple[dict[str, tuple[object, frozenset[str]]], dict[str, object]]:
    """The data checks of each distinct dataset, before the first run trains: (scans, fingerprints).

    First the folders (a missing root, an empty class, a train/val mismatch, data.num_classes),
    then the data check (bioclf.datacheck: content fingerprint, duplicates; it decodes each image
    once and leaves the image scan cached), then the image scan with data.on_bad_image (an
    unreadable image fails the suite under 'error'). scans: data key -> (scan report, paths to
    skip); fingerprints: data key -> DatasetFingerprint."""
    from bioclf.data import build_datasets, check_dataset_images

    folders: dict[str, RunSpec] = {}
    for run in runs:
        data = run.config.data
        if data.source != "folder" or _data_key(run) in folders:
            continue
        _, _, classes, _ = build_datasets(data, base_dir=base_dir)
        if data.num_classes is not None and data.num_classes != len(classes):
            raise BioclfError(
                f"data.num_classes is {data.num_classes} but {data.root} has {len(classes)} class folders"
            )
        folders[_data_key(run)] = run
    fingerprints = data_fingerprints(runs, base_dir, echo)
    scans: dict[str, tuple[object, frozenset[str]]] = {}
    for run in runs:
        key = _data_key(run)
        if key not in scans:
            scans[key] = check_dataset_images(run.config.data, base_dir) if key in folders else (None, frozenset())
    return scans, fingerprints


def data_fingerprints(runs: list[RunSpec], base_dir: Path | None, echo: Printer) -> dict[str, object]:
    """The data check of each distinct dataset (cached per file; warnings echoed) and the
    fingerprint every run of it logs: data key -> bioclf.datacheck.DatasetFingerprint."""
    from bioclf.datacheck import suite_data_check

    found: dict[str, object] = {}
    for run in runs:
        key = _data_key(run)
        if key not in found:
            found[key], _ = suite_data_check(run.config.data, base_dir, echo=echo)
    return found


def preflight(runs: list[RunSpec], base_dir: Path | None = None, *, deep: bool = True) -> dict[str, ParamCount]:
    """Everything that can be checked before training: parameter budget and, when ``deep``,
    data folders and pretrained weights (fetched now if missing and the network allows)."""
    counts = checked_param_counts(runs, base_dir)
    weights_checked: set[tuple[str, str]] = set()
    for run in runs:
        cfg = run.config
        key = (cfg.model.backbone, str(cfg.model.pretrained))
        if deep and cfg.model.pretrained and key not in weights_checked:
            resolve_weights(cfg.model)
            weights_checked.add(key)
    return counts


def run_params(cfg: RunConfig, num_classes: int, count: ParamCount) -> dict[str, object]:
    """The params of a child run: the flattened resolved config plus exact parameter counts."""
    params = flatten(config_dict(cfg))
    params.update({"model.num_params": count.total, "model.num_trainable_params": count.trainable,
                   "data.num_classes": num_classes,
                   # processes of a data-parallel run: one optimizer step sees world_size x batch_size images
                   "train.world_size": current().world})
    return params


# ---------------------------------------------------------------- the suite


def suite_manifest(suite: Suite) -> dict:
    """What the report needs to rebuild the table in spec order, including rows whose finished
    run was skipped and so lives under an earlier suite run (found again by config hash)."""
    return {
        "name": suite.name,
        "description": suite.description,
        "baseline": suite.baseline,
        "seeds": suite.seeds,
        "variants": suite.variant_names,
        "runs": [{"variant": r.variant, "seed": r.seed, "config_hash": r.config_hash} for r in suite.runs],
        "diffs": {v: {k: list(pair) for k, pair in suite.diff_from_baseline(v).items()} for v in suite.variants},
    }


def run_suite(
    suite: Suite,
    *,
    variants: list[str] | None = None,
    tracking_uri: str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
    echo: Printer = print,
    ray: "RayOptions | None" = None,
) -> SuiteResult:
    """Every selected run of ``suite``, one after the other in this process (under torchrun:
    each one data-parallel across the processes), or with ``ray`` as Ray tasks on a cluster
    (bioclf.ray_executor). The same skip / resume / failure rules either way."""
    args = dict(variants=variants, tracking_uri=tracking_uri, force=force, fail_fast=fail_fast, dry_run=dry_run,
                quiet=quiet, echo=echo, ray=ray)
    if ray is None or dry_run:
        return _run_suite(suite, **args)
    from bioclf.ray_executor import connected

    with connected(ray):  # an unreachable or too small cluster exits 2 before the suite run opens
        return _run_suite(suite, **args)


def _run_suite(suite: Suite, *, variants, tracking_uri, force, fail_fast, dry_run, quiet, echo, ray) -> SuiteResult:
    runs = suite.select(variants)
    base_dir = suite.path.parent
    ctx = current()
    # Under torchrun (bioclf.engine.distributed) rank 0 runs the suite as in one process; the
    # other ranks follow its decisions, run by run, and train alongside it.
    prepared = ctx.on_main(lambda: _prepare(suite, runs, base_dir, tracking_uri, force, dry_run, echo))
    if not ctx.is_main:
        return _follow(suite, runs, base_dir, ctx) if not dry_run else SuiteResult(suite.name, None)
    if dry_run:
        return SuiteResult(suite.name, None)
    counts, scans, fingerprints, tracker, exp_id, parent_id = prepared

    jobs = [(f"[{i}/{len(runs)}] {run.variant} seed {run.seed}", run, counts[run.config_hash], base_dir,
             scans[_data_key(run)], fingerprints[_data_key(run)], i - 1) for i, run in enumerate(runs, 1)]
    result = SuiteResult(suite.name, parent_id)
    try:
        if ray is not None:
            from bioclf.ray_executor import run_on_ray

            result.outcomes = run_on_ray(tracker, exp_id, parent_id, suite, jobs, ray, force=force, quiet=quiet,
                                         fail_fast=fail_fast, echo=echo)
        else:
            result.outcomes = _run_here(tracker, exp_id, parent_id, suite, jobs, force=force, quiet=quiet,
                                        fail_fast=fail_fast, echo=echo, ctx=ctx)
    except KeyboardInterrupt:
        tracker.finish(parent_id, "KILLED")
        raise
    except Exception:  # the store or the cluster gave out mid-suite: never leave the suite RUNNING
        tracker.finish(parent_id, "FAILED")
        raise
    tracker.finish(parent_id, "FAILED" if result.failed else "FINISHED")
    echo(summary_table(result))
    return result


def _run_here(tracker, exp_id: str, parent_id: str, suite: Suite, jobs: list[tuple], *, force: bool, quiet: bool,
              fail_fast: bool, echo: Printer, ctx: Dist) -> list[RunOutcome]:
    """The runs one after the other in this process (rank 0 of a DDP job: with the others)."""
    outcomes = []
    for label, run, count, base_dir, scan, fingerprint, index in jobs:
        outcome = _run_one(tracker, exp_id, parent_id, suite, run, count, force, quiet, echo, label, base_dir,
                           scan, fingerprint, index)
        outcomes.append(outcome)
        if outcome.status in ("skipped", "busy"):
            ctx.broadcast(("next",))
        if outcome.status == "failed" and fail_fast:
            echo("stopping: --fail-fast")
            break
    ctx.broadcast(("stop",))
    return outcomes


def _prepare(suite: Suite, runs: list[RunSpec], base_dir: Path, tracking_uri: str | None, force: bool,
             dry_run: bool, echo: Printer):
    """Preflight, data checks and the suite's parent run (rank 0 only under DDP)."""
    counts = preflight(runs, base_dir, deep=not dry_run)
    if dry_run:
        echo(describe_runs(suite, runs, counts))
        return None
    scans, fingerprints = check_data(runs, base_dir, echo)
    for report, skipped in {id(v): v for v in scans.values()}.values():
        if skipped:
            echo(f"data: skipping {len(skipped)} unreadable image(s) in {report.root} (data.on_bad_image: skip)")

    from bioclf.tracking import Tracker  # imported here: a dry run never touches a store

    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(suite.name)
    with claim(tracker.work_root() / "claims", f"suite-{suite.suite_hash}", wait=True):
        parent_id = _open_suite_run(tracker, exp_id, suite, force)
    digests = {fingerprint.digest for fingerprint in fingerprints.values()}
    if len(digests) == 1:  # the suite's rows all read the same data: say so on the parent too
        from bioclf.tracking import DATA_FINGERPRINT_TAG

        tracker.client.set_tag(parent_id, DATA_FINGERPRINT_TAG, digests.pop())
    ctx = current()
    where = f" on {ctx.world} processes (DDP)" if ctx.enabled else ""
    echo(f"suite {suite.name}: {len(runs)} run(s){where} -> {tracker.uri} (suite run {parent_id})")
    return counts, scans, fingerprints, tracker, exp_id, parent_id


def _follow(suite: Suite, runs: list[RunSpec], base_dir: Path, ctx: Dist) -> SuiteResult:
    """A rank other than 0: train each run rank 0 trains, in step with it, logging nothing.

    A RunFailed (a NaN loss, an empty loader: decided after an all-reduce, so every rank
    raises it at the same point) is rank 0's to record, and the suite goes on. Any other
    error ends this process, and torchrun then stops the job: rank 0 marks its run KILLED
    (the same command resumes it), or FAILED for bad input."""
    result = SuiteResult(suite.name, None)
    while True:
        message = ctx.broadcast(None)
        if message[0] == "stop":
            return result
        if message[0] != "train":
            continue
        _, index, workdir, skipped = message
        run = runs[index]
        try:
            train(run.config, NullLogger(), Path(workdir), quiet=True, base_dir=base_dir, resume=True,
                  exclude=skipped)
        except RunFailed:
            pass


def _open_suite_run(tracker, exp_id: str, suite: Suite, force: bool) -> str:
    """The suite's parent run: reopened when this spec ran before (same suite hash), else new."""
    parent = None if force else tracker.find_suite(exp_id, suite.suite_hash)
    if parent is not None:
        tracker.reopen(parent.info.run_id)
        return parent.info.run_id
    parent_id = tracker.start_suite(
        exp_id, name=suite.name, suite_hash=suite.suite_hash, spec_path=suite.path.resolve(),
        baseline=suite.baseline, variants=suite.variant_names, description=suite.description,
    )
    tracker.log_artifact(parent_id, suite.path, "spec")
    tracker.log_text(parent_id, json.dumps(suite_manifest(suite), indent=2), "suite.json")
    return parent_id


def _run_one(tracker, exp_id: str, parent_id: str, suite: Suite, run: RunSpec, count: ParamCount, force: bool,
             quiet: bool, echo: Printer, label: str, base_dir: Path, scan, fingerprint, index: int = 0) -> RunOutcome:
    from bioclf.tracking import log_dataset_input, run_fingerprint

    work_root = tracker.work_root()
    with claim(work_root / "claims", run.config_hash) as mine:
        if not mine:
            echo(f"{label}: skipped, another bioclf-exp process is training this config ({run.config_hash})")
            return RunOutcome(run.variant, run.seed, run.config_hash, "busy")
        if run.legacy_hash and run.legacy_hash != run.config_hash:
            adopted = tracker.adopt_legacy(exp_id, run.legacy_hash, run.config_hash)
            if adopted:
                echo(f"{label}: {adopted} run(s) of an earlier release have the same config; "
                     f"re-tagged {run.legacy_hash} -> {run.config_hash}")
        previous = tracker.find_variant_runs(exp_id, run.config_hash)
        if not force:
            done = [r for r in previous if r.info.status == "FINISHED"]
            if done:
                theirs = run_fingerprint(done[0])
                if theirs and theirs != fingerprint.digest:
                    echo(f"{label}: warning: finished run {done[0].info.run_id} was trained on other data "
                         f"(fingerprint {theirs}, now {fingerprint.digest}); --force trains it again")
                acc = done[0].data.metrics.get("best_val_acc")
                echo(f"{label}: skipped, finished run {done[0].info.run_id} has the same config ({run.config_hash})")
                return RunOutcome(run.variant, run.seed, run.config_hash, "skipped", done[0].info.run_id, acc)
        interrupted = [r for r in previous if r.info.status in ("RUNNING", "KILLED")]
        resumable = [r for r in interrupted if (work_root / r.info.run_id / "checkpoints" / "last.pt").exists()]
        if resumable and not force:
            logger = tracker.resume_variant(resumable[0].info.run_id)
            echo(f"{label}: resuming run {logger.run_id} from its last checkpoint")
        else:
            logger = tracker.start_variant(
                exp_id, parent_id, variant=run.variant, seed=run.seed, config_hash=run.config_hash,
                suite_hash=suite.suite_hash, params=run_params(run.config, num_classes_of(run.config, base_dir), count),
            )
            echo(f"{label}: training (run {logger.run_id})")
        for stale in interrupted:  # we hold the claim, so nobody is training these any more
            if stale.info.run_id != logger.run_id and stale.info.status == "RUNNING":
                tracker.finish(stale.info.run_id, "KILLED")
        log_dataset_input(tracker.client, logger.run_id, fingerprint.name, fingerprint.digest, fingerprint.source,
                          source_type=fingerprint.source_type, profile=fingerprint.profile)
        report, skipped = scan
        if skipped:
            tracker.log_text(logger.run_id, report.bad_list_text(), "data/skipped_images.tsv")
            tracker.log_metric(logger.run_id, "skipped_images", len(skipped))
        return _train_claimed(tracker, logger, run, work_root / logger.run_id, quiet, echo, label, base_dir, skipped,
                              index)


def _train_claimed(tracker, logger, run: RunSpec, workdir: Path, quiet: bool, echo: Printer, label: str,
                   base_dir: Path, skipped: frozenset[str], index: int = 0) -> RunOutcome:
    run_id = logger.run_id
    ctx = current()
    try:
        ctx.broadcast(("train", index, str(workdir), skipped))  # the other ranks train it with us
        res = train(run.config, logger, workdir, quiet=quiet, base_dir=base_dir, resume=True, exclude=skipped)
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
        return RunOutcome(run.variant, run.seed, run.config_hash, "failed", run_id, error=message)
    tracker.finish(run_id, "FINISHED")
    kept = res.files["checkpoints"]
    kept_text = ", ".join(p.name for p in kept) if kept else "no model files"
    kept_mb = sum(p.stat().st_size for p in kept) / 1e6
    shutil.rmtree(workdir, ignore_errors=True)  # what the checkpoint policy keeps is in the store now
    acc = res.summary["best_val_acc"]
    echo(f"{label}: finished, best val acc {acc:.4f} at epoch {res.best_epoch} ({res.epochs_run} epochs); "
         f"kept {kept_text} ({kept_mb:.1f} MB, checkpoint.keep: {run.config.checkpoint.keep}) "
         f"in {tracker.artifact_uri(run_id)}/checkpoints")
    return RunOutcome(run.variant, run.seed, run.config_hash, "finished", run_id, acc)


def summary_table(result: SuiteResult) -> str:
    rows = [f"{'variant':<28} {'seed':>6} {'status':<9} {'val acc':>8}  run"]
    for o in result.outcomes:
        acc = f"{100 * o.best_val_acc:.1f}%" if o.best_val_acc is not None else "-"
        tail = o.run_id or "-"
        if o.error:
            tail += f"  ({o.error})"
        rows.append(f"{o.variant:<28} {o.seed:>6} {o.status:<9} {acc:>8}  {tail}")
    n_failed = len(result.failed)
    rows.append(f"{len(result.outcomes)} run(s), {n_failed} failed" if n_failed else f"{len(result.outcomes)} run(s), all ok")
    return "\n".join(rows)
