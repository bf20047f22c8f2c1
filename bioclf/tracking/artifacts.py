"""Reading runs back for ``predict``, and the dataset fingerprint every run logs.

- ``log_dataset_input``: an MLflow dataset input (``mlflow.log_input``'s entity, through
  ``MlflowClient.log_inputs``: name, digest = the content fingerprint, source, profile) and the
  tag ``bioclf.data_fingerprint`` on a run.
- ``find_run`` / ``best_run``: the run ``predict`` uses (by id, or the best FINISHED variant run of
  an experiment by ``best_val_acc``).
- ``download_artifact``: one artifact out, errors as one-line BioclfErrors.

``bioclf.tracking.Tracker`` wraps these for callers outside this package (plain records back).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from bioclf.errors import BioclfError
from bioclf.tracking import contract as C

DATA_FINGERPRINT_TAG = C.DATA_FINGERPRINT
MAX_DIGEST = 36  # MLflow's limit on a dataset digest


def log_dataset_input(
    client: MlflowClient,
    run_id: str,
    name: str,
    fingerprint: str,
    source: str,
    *,
    source_type: str = "local",
    profile: str | None = None,
    context: str = "training",
) -> None:
    """Log the run's data as an MLflow dataset input (shown under "Datasets used" in the UI) and
    as the tag ``bioclf.data_fingerprint`` (searchable: ``tags.`bioclf.data_fingerprint` = '...'``).

    ``fingerprint``: the content fingerprint (bioclf.datacheck; at most 36 characters);
    ``source``: JSON text, e.g. ``{"uri": "file:///data/birds"}``; ``source_type``: "local" for a
    folder, "code" for generated data. Logging the same (name, fingerprint) twice is a no-op.
    """
    if len(fingerprint) > MAX_DIGEST:
        raise ValueError(f"dataset fingerprint {fingerprint!r} is longer than MLflow's {MAX_DIGEST} characters")
    dataset = Dataset(name=name, digest=fingerprint, source_type=source_type, source=source, profile=profile)
    inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as error:
        # Two runs of a suite starting at once (Ray, several runners) can both insert the same
        # dataset row; the store refuses the second (a unique constraint). It exists now: link it.
        if "UNIQUE" not in str(error) and "IntegrityError" not in str(error):
            raise
        time.sleep(0.2)
        client.log_inputs(run_id, inputs)
    client.set_tag(run_id, DATA_FINGERPRINT_TAG, fingerprint)


def other_fingerprints(runs, fingerprint: str) -> dict[str, list[str]]:
    """{other fingerprint: [run ids]} among ``runs`` (bioclf.tracking.RunRecord) that logged a
    fingerprint different from ``fingerprint`` (runs without the tag are left out): the rows of
    a table that did not see the same data."""
    found: dict[str, list[str]] = {}
    for run in runs:
        if run.data_fingerprint and run.data_fingerprint != fingerprint:
            found.setdefault(run.data_fingerprint, []).append(run.run_id)
    return found


# --- finding the run predict uses -----------------------------------------------------------

def find_run(client: MlflowClient, run_id: str):
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        raise BioclfError(f"--run {run_id}: no such run in the store ({_first_line(error)})") from None


def best_run(client: MlflowClient, experiment: str, variant: str | None = None, *, require: str | None = None):
    """The FINISHED variant run of ``experiment`` (optionally of ``variant``) with the highest
    ``best_val_acc``; with ``require`` (an artifact path), the best one that has that artifact.
    Returns (run, skipped): ``skipped`` lists better runs left out for lacking ``require``."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise BioclfError(f"--experiment {experiment!r}: no such experiment in the store"
                          + (f" (there are: {', '.join(names[:10])})" if names else ""))
    filters = [f"tags.`{C.ROLE}` = '{C.ROLE_VARIANT}'", "attributes.status = 'FINISHED'"]
    if variant:
        filters.append(f"tags.`{C.VARIANT}` = '{_quote(variant)}'")
    runs = client.search_runs([exp.experiment_id], " and ".join(filters),
                              order_by=["metrics.best_val_acc DESC", "attributes.start_time DESC"], max_results=200)
    if not runs:
        what = f"variant {variant!r} of " if variant else ""
        raise BioclfError(f"--experiment {experiment!r}: no finished run of {what}the experiment in the store")
    skipped = []
    for run in runs:
        if require is None or has_artifact(client, run.info.run_id, require):
            return run, skipped
        skipped.append(run)
    raise BioclfError(f"--experiment {experiment!r}: none of its {len(runs)} finished run(s) has {require} "
                      "(trained with checkpoint.keep: none?)")


def has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder, _, name = path.rpartition("/")
    try:
        return any(info.path == path for info in client.list_artifacts(run_id, folder or None))
    except (MlflowException, OSError):
        return False


def download_artifact(client: MlflowClient, run_id: str, path: str, dest: str | Path) -> Path:
    """``path`` of run ``run_id`` copied into the folder ``dest``; a missing one is a BioclfError."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    try:
        with _no_progress_bar():
            return Path(client.download_artifacts(run_id, path, str(dest)))
    except (MlflowException, OSError) as error:
        raise BioclfError(f"run {run_id}: cannot get artifact {path} ({_first_line(error)})") from None


@contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar per downloaded file; one-file downloads do not need it."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    try:  # MlflowException messages are sometimes JSON
        text = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        pass
    return text.splitlines()[0] if text else type(error).__name__
