"""The tracking store: where it is, and the runs, tags, params, metrics and artifacts in it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote

from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bioclf.claims import claim
from bioclf.errors import BioclfError
from bioclf.tracking import contract as C
from bioclf.tracking.artifacts import best_run, download_artifact, find_run, has_artifact, log_dataset_input
from bioclf.tracking.records import RunRecord, scratch, work_root
from bioclf.tracking.uri import check_server, local_store_dir, resolve_tracking_uri

CONTRACT_VERSION = C.CONTRACT_VERSION


def record_of(run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(run.info.run_id, run.info.experiment_id, run.info.status, tags.get(C.VARIANT), tags.get(C.SEED),
                     tags.get(C.CONFIG_HASH), tags.get(C.DATA_FINGERPRINT), run.data.metrics.get("best_val_acc"))


# MLflow's limits per log_batch request (and a tag value's length).
_MAX_PARAMS, _MAX_METRICS, _MAX_TAG = 100, 1000, 5000


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _at_step0(metrics: Mapping[str, float]) -> list[Metric]:
    """Final metrics as MLflow wants them: step 0, one timestamp."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in metrics.items()]


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class MLflowRunLogger:
    """``bioclf.engine.RunLogger`` for one MLflow run (batched: one request per epoch).

    Idempotent, so a run resumed after a kill at any point logs nothing twice: an epoch the
    store has is not logged again, nor is a final metric it has (``logged_epochs`` and
    ``logged_final``: what the store held when the logger was made)."""

    def __init__(self, client: MlflowClient, run_id: str, logged_epochs: set[int] | None = None,
                 logged_final: set[str] | None = None):
        self.client = client
        self.run_id = run_id
        self.logged_epochs = set(logged_epochs or ())
        self.logged_final = set(logged_final or ())

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch in self.logged_epochs:
            return
        self.logged_epochs.add(epoch)
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        new = _at_step0({k: v for k, v in metrics.items() if k not in self.logged_final})
        if new:
            self.client.log_batch(self.run_id, metrics=new, synchronous=True)
        self.logged_final |= {m.key for m in new}

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


class Tracker:
    """Experiments, suite (parent) runs and variant (child) runs in one tracking store."""

    def __init__(self, tracking_uri: str | None = None):
        # MLflow announces every schema migration of a new SQLite store at INFO; keep the
        # terminal for the suite's own output.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = resolve_tracking_uri(tracking_uri)
        store = local_store_dir(self.uri)
        if store is None:
            if self.uri.startswith(("http://", "https://")):
                check_server(self.uri)
            self.client = MlflowClient(tracking_uri=self.uri)
            return
        try:
            store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BioclfError(f"tracking store {self.uri}: cannot create {store} ({exc.strerror})") from None
        db = store / Path(unquote(self.uri[len("sqlite:///"):])).name
        if not os.access(store, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise BioclfError(f"tracking store {self.uri} is read-only; point --tracking-uri at a writable store")
        # Two processes creating the same new SQLite store would race on its schema
        # migrations (MlflowClient creates the store when constructed); the first creates
        # it while the second waits.
        with claim(store / ".work" / "claims", "store-init", wait=True):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)

    # -- experiments
    def experiment_id(self, name: str, create: bool = True, description: str | None = None) -> str | None:
        """The experiment of a suite, created when missing (with ``create``), as a model-training
        experiment with ``description``; an existing one gets those tags when they differ."""
        tags = {C.EXPERIMENT_KIND: C.KIND_MODEL_TRAINING, **({C.NOTE: description} if description else {})}
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if create:
                for key, value in tags.items():
                    if exp.tags.get(key) != value:
                        self.client.set_experiment_tag(exp.experiment_id, key, value)
            return exp.experiment_id
        if not create:
            return None
        store = local_store_dir(self.uri)
        # Artifacts of a local store live beside its database, whatever the working directory.
        location = (store / "artifacts" / _slug(name)).as_uri() if store else None
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException:
            # Another process created it between our lookup and our create.
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def suite_experiments(self) -> list[tuple[str, str]]:
        """(name, id) of every active experiment with a suite run, by name."""
        found = []
        for exp in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY):
            if self.client.search_runs([exp.experiment_id], f"tags.`{C.ROLE}` = '{C.ROLE_SUITE}'", max_results=1):
                found.append((exp.name, exp.experiment_id))
        return sorted(found)

    # -- suite runs
    def find_suite(self, experiment_id: str, suite_hash: str) -> str | None:
        """The id of the newest suite run of this suite hash, if any."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{C.ROLE}` = '{C.ROLE_SUITE}' and tags.`{C.SUITE_HASH}` = '{suite_hash}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def start_suite(self, experiment_id: str, *, name: str, suite_hash: str, spec_path: Path,
                    baseline: str, variants: list[str], description: str = "") -> str:
        tags = {
            C.ROLE: C.ROLE_SUITE,
            C.SUITE_HASH: suite_hash,
            C.CONTRACT: CONTRACT_VERSION,
            C.SPEC: str(spec_path),
            C.BASELINE: baseline,
            C.VARIANTS: json.dumps(variants)[:_MAX_TAG],
        }
        if description:
            tags[C.NOTE] = description
        run = self.client.create_run(experiment_id, tags=tags, run_name=f"suite {name}")
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    # -- variant runs
    def find_variant_runs(self, experiment_id: str, config_hash: str) -> list[RunRecord]:
        """Runs with this config hash, newest first."""
        return [record_of(run) for run in self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{C.ROLE}` = '{C.ROLE_VARIANT}' and tags.`{C.CONFIG_HASH}` = '{config_hash}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time DESC"],
        )]

    def adopt_legacy(self, experiment_id: str, legacy_hash: str, config_hash: str) -> int:
        """Re-tag the runs of an older hash version (``legacy_hash``) with ``config_hash``, the
        same config's current hash; the old value stays in ``bioclf.config_hash_v1``. Returns how
        many were re-tagged (docs/tracking.md, "Config hash")."""
        found = self.find_variant_runs(experiment_id, legacy_hash)
        for run in found:
            self.client.log_batch(run.run_id, tags=[RunTag(C.CONFIG_HASH, config_hash),
                                                        RunTag(C.CONFIG_HASH_V1, legacy_hash)])
        return len(found)

    def variant_runs(self, experiment_id: str) -> list[RunRecord]:
        """Every variant run of the experiment, newest first."""
        return [record_of(run) for run in self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{C.ROLE}` = '{C.ROLE_VARIANT}'", max_results=5000,
            order_by=["attributes.start_time DESC"],
        )]

    def start_variant(self, experiment_id: str, parent_id: str, *, variant: str, seed: int, config_hash: str,
                      suite_hash: str, params: Mapping[str, Any], diff: str = "", fold: int | None = None) -> str:
        tags = {
            C.PARENT_RUN: parent_id,
            C.ROLE: C.ROLE_VARIANT,
            C.VARIANT: variant,
            C.SEED: str(seed),
            C.CONFIG_HASH: config_hash,
            C.SUITE_HASH: suite_hash,
            C.CONTRACT: CONTRACT_VERSION,
        }
        if diff:
            tags[C.DIFF] = diff[:_MAX_TAG]
        name = f"{variant}/seed{seed}"
        if fold is not None:
            tags[C.FOLD] = str(fold)
            name += f"/fold{fold}"
        run = self.client.create_run(experiment_id, tags=tags, run_name=name)
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for chunk in _chunks(items, _MAX_PARAMS):
            self.client.log_batch(run.info.run_id, params=chunk)
        return run.info.run_id

    def resume_variant(self, run_id: str, params: Mapping[str, Any] | None = None) -> str:
        """Reopen an interrupted run (RUNNING again); ``params`` it lacks (a kill while they were
        being logged) are logged now."""
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        if params:
            have = self.client.get_run(run_id).data.params
            missing = [Param(k, _param_value(v)) for k, v in params.items() if k not in have]
            for chunk in _chunks(missing, _MAX_PARAMS):
                self.client.log_batch(run_id, params=chunk)
        return run_id

    def logged_epochs(self, run_id: str) -> set[int]:
        """The epochs of the run the store has (steps of ``val_acc``, logged last in an epoch's batch)."""
        return {m.step for m in self.client.get_metric_history(run_id, "val_acc")}

    def run_logger(self, run_id: str) -> MLflowRunLogger:
        """The engine's RunLogger for this run; it knows which epochs and final metrics the store
        already has, so a resumed run logs none of them twice."""
        final = set(C.FINAL_METRICS) | set(C.CONDITIONAL_METRICS)
        logged_final = {k for k in self.client.get_run(run_id).data.metrics if k in final}
        return MLflowRunLogger(self.client, run_id, self.logged_epochs(run_id), logged_final)

    def claim_key(self, name: str) -> str:
        """A claim name (bioclf.claims) for ``name`` in this store: two stores that share a work
        folder (two SQLite files in one folder, two servers) never block each other."""
        return f"{hashlib.sha1(self.uri.encode()).hexdigest()[:10]}-{name}"

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def fail(self, run_id: str, error: str, details: str) -> None:
        """FAILED, with the one-line error as a tag and the full text as ``error.txt``."""
        self.client.set_tag(run_id, C.ERROR, error[:_MAX_TAG])
        self.client.log_text(run_id, details, "error.txt")
        self.client.set_terminated(run_id, status="FAILED")

    def mark_killed(self, run_id: str, error: str) -> None:
        """KILLED (resumable by the same command), with why as the error tag."""
        self.client.set_tag(run_id, C.ERROR, error[:_MAX_TAG])
        self.client.set_terminated(run_id, status="KILLED")

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:_MAX_TAG]) for k, v in tags.items()])

    def log_dataset_input(self, run_id: str, fingerprint) -> None:
        """The run's data (a bioclf.datacheck.DatasetFingerprint) as an MLflow dataset input and tag."""
        log_dataset_input(self.client, run_id, fingerprint.name, fingerprint.digest, fingerprint.source,
                          source_type=fingerprint.source_type, profile=fingerprint.profile)

    # -- reading one run back (predict)
    def find_run(self, run_id: str) -> RunRecord:
        return record_of(find_run(self.client, run_id))

    def best_run(self, experiment: str, variant: str | None = None, *,
                 require: str | None = None) -> tuple[RunRecord, list[RunRecord]]:
        """bioclf.tracking.artifacts.best_run, as records."""
        best, skipped = best_run(self.client, experiment, variant, require=require)
        return record_of(best), [record_of(run) for run in skipped]

    def has_artifact(self, run_id: str, path: str) -> bool:
        return has_artifact(self.client, run_id, path)

    def download_artifact(self, run_id: str, path: str, dest: str | Path) -> Path:
        return download_artifact(self.client, run_id, path, dest)

    def log_file(self, run_id: str, path: str | Path, artifact_dir: str | None = None) -> str:
        """Log a local file as an artifact of the run (finished or not); returns its artifact path."""
        self.client.log_artifact(run_id, str(path), artifact_dir)
        return f"{artifact_dir}/{Path(path).name}" if artifact_dir else Path(path).name

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_dir)

    def log_metric(self, run_id: str, key: str, value: float) -> None:
        self.client.log_metric(run_id, key, float(value), step=0)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Metrics at step 0 in one request (a value logged again becomes the current one)."""
        for chunk in _chunks(_at_step0(metrics), _MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk)

    def log_skipped_images(self, run_id: str, text: str, count: int) -> None:
        """The images data.on_bad_image: skip left out: their list and how many (the count logged
        once: a resumed run has it already)."""
        self.log_text(run_id, text, C.SKIPPED_IMAGES)
        if "skipped_images" not in self.client.get_run(run_id).data.metrics:
            self.log_metric(run_id, "skipped_images", count)

    def artifact_uri(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.artifact_uri

    def artifact_bytes(self, run_id: str, path: str | None = None) -> int:
        """Total size of a run's artifacts (walks the artifact tree; works on any store)."""
        total = 0
        for info in self.client.list_artifacts(run_id, path):
            total += self.artifact_bytes(run_id, info.path) if info.is_dir else (info.file_size or 0)
        return total

    def scratch(self) -> list[tuple[Path, int, str | None]]:
        """The work folders of runs in this store's scratch space (``records.scratch``)."""
        return scratch(self.work_root(), self.run_status)

    def run_status(self, run_id: str) -> str | None:
        """The run's status, None when the store has no such run or it was deleted."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return None
        return run.info.status if run.info.lifecycle_stage == "active" else None

    def work_root(self) -> Path:
        """Scratch space for running runs (``records.work_root``)."""
        return work_root(self.uri)
