"""Run a suite: preflight every run, then one parent MLflow run and a child per variant x seed.

The steps: ``preflight`` (parameter budget, weights), ``check_data`` (folders, content
fingerprint, bad images), ``plan_suite`` (the parent run and a ``bioclf.jobs.Job`` per run),
then an executor (bioclf.executors) runs the jobs and the parent run is closed. Per job: skip
when a FINISHED run with the same config hash is in the store (``force`` reruns anyway, as a
new run), else train it (bioclf.jobs.run_job). A failing child is recorded as FAILED with its
error and the suite goes on (``fail_fast`` stops it); the caller turns failures into exit 1.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioclf.claims import claim
from bioclf.errors import BioclfError
from bioclf.data import build_datasets, check_dataset_images, check_num_classes
from bioclf.data.folds import check_fold_counts, pooled
from bioclf.datacheck import suite_data_check
from bioclf.engine.distributed import current
from bioclf.executors.local import LocalExecutor, follow
from bioclf.executors.ray import RayExecutor, RayOptions, connected
from bioclf.faults import kill_point
from bioclf.inventory import checked_param_counts, describe_dry_run, num_classes_of
from bioclf.jobs import Job, Outcome, Printer, Status
from bioclf.models import resolve_weights
from bioclf.models.catalog import ParamCount
from bioclf.spec.loader import RunSpec, Suite, config_dict, flatten
from bioclf.spec.schema import RunConfig
from bioclf.taxonomy import describe_taxonomy, run_taxonomy
from bioclf.tracking import Tracker, contract
from bioclf.tracking.uri import resolve_tracking_uri, runs_url


@dataclass
class SuiteResult:
    experiment: str
    suite_run_id: str | None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        """Jobs that did not end well: failed, killed or cancelled."""
        return [o for o in self.outcomes if o.status.is_failure]

    @property
    def not_trained(self) -> list[Outcome]:
        """Jobs another process was training: neither trained here nor finished before."""
        return [o for o in self.outcomes if o.status == Status.BUSY]


# ---------------------------------------------------------------- preflight


def _data_key(run: RunSpec) -> str:
    return repr(run.config.data.model_dump(include={"source", "root", "synthetic", "on_bad_image"}))


def check_data(runs: list[RunSpec], base_dir: Path | None = None, echo: Printer = print
               ) -> tuple[dict[str, tuple[object, frozenset[str]]], dict[str, object], dict[str, tuple]]:
    """The data checks of each distinct dataset, before the first run trains: (scans, fingerprints,
    groups).

    First the folders (a missing root, an empty class, a train/val mismatch, data.num_classes),
    then the data check (bioclf.datacheck: content fingerprint, duplicates; it decodes each image
    once and leaves the image scan cached), then the image scan with data.on_bad_image (an
    unreadable image fails the suite under 'error'). scans: data key -> (scan report, paths to
    skip); fingerprints: data key -> DatasetFingerprint; groups: data key -> the duplicate groups
    a K-fold split keeps together (evaluation.folds; every class checked to have K images)."""
    listed: dict[str, tuple] = {}  # data key -> (train split, val split, classes) of folder data, listed once
    for run in runs:
        data = run.config.data
        if data.source != "folder" or _data_key(run) in listed:
            continue
        train_ds, val_ds, classes, _ = build_datasets(data, base_dir=base_dir)
        check_num_classes(data, len(classes))
        listed[_data_key(run)] = (train_ds, val_ds, classes)
    check_taxonomies(runs, {key: classes for key, (_, _, classes) in listed.items()}, echo)
    fingerprints, groups = data_fingerprints(runs, base_dir, echo)
    scans: dict[str, tuple[object, frozenset[str]]] = {}
    for run in runs:
        key = _data_key(run)
        if key not in scans:
            scans[key] = check_dataset_images(run.config.data, base_dir) if key in listed else (None, frozenset())
    check_fold_sizes(runs, base_dir, listed, scans)
    return scans, fingerprints, groups


def check_fold_sizes(runs: list[RunSpec], base_dir: Path | None, listed: dict[str, tuple], scans: dict) -> None:
    """Every run with evaluation.folds: K has at least K labelled images of each class (train +
    val, skipped images left out), before anything trains: one line naming the class.
    ``listed``: the folder datasets check_data listed (generated data is built here: no I/O)."""
    seen: set[tuple] = set()
    for run in runs:
        folds = run.config.evaluation.folds
        key = (_data_key(run), folds)
        if folds is None or key in seen:
            continue
        seen.add(key)
        train_ds, val_ds, classes = listed.get(key[0]) or build_datasets(run.config.data, base_dir)[:3]
        skipped = {os.path.normpath(p) for p in scans[key[0]][1]}
        paths, labels = pooled(train_ds, val_ds)
        kept = np.asarray([os.path.normpath(p) not in skipped for p in paths], dtype=bool)
        try:
            check_fold_counts(labels[kept], list(classes), folds)
        except BioclfError as exc:
            raise BioclfError(f"variant {run.variant}: {exc}") from None


def check_taxonomies(runs: list[RunSpec], classes_of: dict[str, list[str]], echo: Printer = print) -> None:
    """Every run's taxonomy read and checked against its classes (and its head's ranks) before
    anything trains: a bad row is one line naming the file and row. Each tree is described once."""
    checked: set[tuple] = set()
    described: set[tuple] = set()
    for run in runs:
        cfg = run.config
        key = (_data_key(run), cfg.data.taxonomy, repr(cfg.model.head.rank_weights))
        if key in checked or (cfg.data.taxonomy is None and cfg.data.synthetic.hierarchy is None):
            continue
        checked.add(key)
        classes = classes_of.get(_data_key(run)) or [str(c) for c in range(cfg.data.synthetic.num_classes)]
        try:
            tree = run_taxonomy(cfg, classes)
        except BioclfError as exc:
            raise BioclfError(f"variant {run.variant}: {exc}") from None
        if tree is not None and key[:2] not in described:
            described.add(key[:2])
            echo(f"data: taxonomy {describe_taxonomy(tree)}")


def data_fingerprints(runs: list[RunSpec], base_dir: Path | None, echo: Printer
                      ) -> tuple[dict[str, object], dict[str, tuple]]:
    """The data check of each distinct dataset (cached per file; warnings echoed): (data key ->
    the bioclf.datacheck.DatasetFingerprint every run of it logs, data key -> its duplicate groups)."""
    found: dict[str, object] = {}
    groups: dict[str, tuple] = {}
    for run in runs:
        key = _data_key(run)
        if key not in found:
            found[key], report = suite_data_check(run.config.data, base_dir, echo=echo)
            groups[key] = report.duplicate_groups() if report is not None else ()
    return found, groups


def preflight(runs: list[RunSpec], base_dir: Path | None = None) -> dict[str, ParamCount]:
    """Everything about the models that can be checked before training: the parameter budget
    and the pretrained weights (fetched now if missing and the network allows)."""
    counts = checked_param_counts(runs, base_dir)
    weights_checked: set[tuple[str, str]] = set()
    for run in runs:
        cfg = run.config
        key = (cfg.model.backbone, str(cfg.model.pretrained))
        if cfg.model.pretrained and key not in weights_checked:
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
        "runs": [{"variant": r.variant, "seed": r.seed, "config_hash": r.config_hash,
                  **({"fold": r.fold} if r.fold is not None else {})} for r in suite.runs],
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
    ray: RayOptions | None = None,
) -> SuiteResult:
    """Every selected run of ``suite``, one after the other in this process (under torchrun:
    each one data-parallel across the processes), or with ``ray`` as Ray tasks on a cluster
    (bioclf.executors.ray). The same skip / resume / failure rules either way (bioclf.jobs)."""
    if dry_run:  # rank 0 describes; the others have nothing to say
        current().on_main(lambda: echo(describe_dry_run(suite, variants)))
        return SuiteResult(suite.name, None)
    runs = suite.select(variants)
    if ray is None:
        return _run_suite(suite, runs, tracking_uri, force, quiet, echo, fail_fast, None)
    with connected(ray):  # an unreachable or too small cluster exits 2 before the suite run opens
        return _run_suite(suite, runs, tracking_uri, force, quiet, echo, fail_fast, ray)


def _run_suite(suite: Suite, runs: list[RunSpec], tracking_uri: str | None, force: bool, quiet: bool,
               echo: Printer, fail_fast: bool, ray: RayOptions | None) -> SuiteResult:
    ctx = current()
    # Under torchrun (bioclf.engine.distributed) rank 0 runs the suite as in one process; the
    # other ranks follow its decisions, job by job, and train alongside it.
    kill_point("startup")
    plan = ctx.on_main(lambda: plan_suite(suite, runs, tracking_uri, force=force, quiet=quiet, echo=echo))
    if not ctx.is_main:
        follow(runs, suite.path.parent, ctx)
        return SuiteResult(suite.name, None)
    tracker, parent_id = plan.tracker, plan.parent_id
    if ray is not None:
        executor = RayExecutor(tracker, ray, fail_fast=fail_fast, echo=echo)
    else:
        executor = LocalExecutor(tracker, fail_fast=fail_fast, echo=echo, ctx=ctx)
    result = SuiteResult(suite.name, parent_id)
    try:
        result.outcomes = executor.run(plan.jobs)
    except KeyboardInterrupt:
        tracker.finish(parent_id, "KILLED")
        raise
    except Exception:  # the store or the cluster gave out mid-suite: never leave the suite RUNNING
        tracker.finish(parent_id, "FAILED")
        raise
    tracker.log_metrics(parent_id, accuracy_columns(result.outcomes))
    tracker.finish(parent_id, "FAILED" if result.failed else "FINISHED")
    echo(summary_table(result))
    echo(next_steps(suite.name, plan.experiment_id, tracker.uri))
    return result


def accuracy_columns(outcomes: list[Outcome]) -> dict[str, float]:
    """The suite run's per-variant accuracy metrics (contract.SUITE_TABLE_METRICS): mean and sd
    (ddof 1, with two seeds or more) of best val accuracy over the seeds that have one."""
    by_variant: dict[str, list[float]] = {}
    for o in outcomes:
        if o.best_val_acc is not None:
            by_variant.setdefault(o.variant, []).append(o.best_val_acc)
    metrics = {}
    for variant, accs in by_variant.items():
        metrics[contract.suite_table_metric(variant, "val_acc_mean")] = statistics.fmean(accs)
        if len(accs) > 1:
            metrics[contract.suite_table_metric(variant, "val_acc_std")] = statistics.stdev(accs)
    return metrics


def next_steps(name: str, experiment_id: str, uri: str) -> str:
    """What to do with a finished suite: the report, and the runs in the UI. ``--tracking-uri``
    only where a new command would not find this store by itself."""
    where = "" if uri == resolve_tracking_uri(None) else f" --tracking-uri {uri}"
    served = uri.startswith(("http://", "https://"))  # a tracking server serves its own UI
    ui = runs_url(experiment_id, uri) if served else f"bioclf-exp ui{where}, then {runs_url(experiment_id)}"
    return (f"next: bioclf-report --experiment {name}{where}   (report in reports/{name}/index.html)\n"
            f"      browse the runs: {ui}")


@dataclass
class SuitePlan:
    """What rank 0 has after the checks: the store, the suite's parent run and the jobs."""

    tracker: Tracker
    experiment_id: str
    parent_id: str
    jobs: list[Job]


def plan_suite(suite: Suite, runs: list[RunSpec], tracking_uri: str | None, *, force: bool = False,
               quiet: bool = False, echo: Printer = print) -> SuitePlan:
    """Preflight, data checks, the suite's parent run, and a Job per run (rank 0 only under DDP)."""
    base_dir = suite.path.parent
    counts = preflight(runs, base_dir)
    scans, fingerprints, groups = check_data(runs, base_dir, echo)
    for report, skipped in {id(v): v for v in scans.values()}.values():
        if skipped:
            echo(f"data: skipping {len(skipped)} unreadable image(s) in {report.root} (data.on_bad_image: skip)")
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment_id(suite.name, description=suite.description)
    with claim(tracker.work_root() / "claims", tracker.claim_key(f"suite-{suite.suite_hash}"), wait=True):
        parent_id = _open_suite_run(tracker, exp_id, suite, force)
    digests = {fingerprint.digest for fingerprint in fingerprints.values()}
    if len(digests) == 1:  # the suite's rows all read the same data: say so on the parent too
        tracker.set_tags(parent_id, {contract.DATA_FINGERPRINT: digests.pop()})
    ctx = current()
    where = f" on {ctx.world} processes (DDP)" if ctx.enabled else ""
    echo(f"suite {suite.name}: {len(runs)} run(s){where} -> {tracker.uri} (suite run {parent_id})")
    jobs = []
    for i, run in enumerate(runs):
        report, skipped = scans[_data_key(run)]
        jobs.append(Job(
            index=i, label=f"[{i + 1}/{len(runs)}] {run.name}", run=run,
            params=run_params(run.config, num_classes_of(run.config, base_dir), counts[run.config_hash]),
            base_dir=base_dir, fingerprint=fingerprints[_data_key(run)], tracking_uri=tracker.uri,
            experiment_id=exp_id, parent_id=parent_id, suite_hash=suite.suite_hash, skipped=skipped,
            skipped_text=report.bad_list_text() if skipped else "", diff=suite.diff_text(run.variant), force=force,
            quiet=quiet, fold_groups=groups[_data_key(run)] if run.fold is not None else ()))
    return SuitePlan(tracker, exp_id, parent_id, jobs)


def _open_suite_run(tracker: Tracker, exp_id: str, suite: Suite, force: bool) -> str:
    """The suite's parent run: reopened when this spec ran before (same suite hash), else new."""
    parent_id = None if force else tracker.find_suite(exp_id, suite.suite_hash)
    if parent_id is not None:
        tracker.reopen(parent_id)
        return parent_id
    parent_id = tracker.start_suite(
        exp_id, name=suite.name, suite_hash=suite.suite_hash, spec_path=suite.path.resolve(),
        baseline=suite.baseline, variants=suite.variant_names, description=suite.description,
    )
    tracker.log_artifact(parent_id, suite.path, contract.SPEC_DIR)
    tracker.log_text(parent_id, json.dumps(suite_manifest(suite), indent=2), contract.SUITE_MANIFEST)
    return parent_id


def summary_table(result: SuiteResult) -> str:
    folds = any(o.fold is not None for o in result.outcomes)
    fold_head = f" {'fold':>4}" if folds else ""
    rows = [f"{'variant':<28} {'seed':>6}{fold_head} {'status':<9} {'val acc':>8}  run"]
    for o in result.outcomes:
        acc = f"{100 * o.best_val_acc:.1f}%" if o.best_val_acc is not None else "-"
        tail = o.run_id or "-"
        if o.error:
            tail += f"  ({o.error})"
        fold = f" {o.fold if o.fold is not None else '-':>4}" if folds else ""
        rows.append(f"{o.variant:<28} {o.seed:>6}{fold} {str(o.status):<9} {acc:>8}  {tail}")
    counts = {status: sum(o.status == status for o in result.outcomes) for status in Status}
    parts = [f"{counts[Status.FINISHED]} trained", f"{counts[Status.SKIPPED]} already finished"]
    parts += [f"{n} {status.value}" for status, n in counts.items() if n and status.is_failure]
    line = f"{len(result.outcomes)} run(s): " + ", ".join(parts)
    if result.not_trained:
        line += (f"; {len(result.not_trained)} not trained: another process is training it (busy); "
                 "rerun the same command when it ends to pick its result up")
    rows.append(line if result.failed or result.not_trained else line + "; all ok")
    return "\n".join(rows)
