"""MLflow tracking: the only module of ``bioclf`` that imports mlflow.

It implements the tracking contract of ``docs/tracking.md``: an experiment per spec name, a
parent run per suite, a child run per variant x seed with tags, params, per-epoch metrics
(step = epoch), final metrics and artifacts.
"""

from bioclf.tracking.store import (
    CONTRACT_VERSION,
    MLflowRunLogger,
    Tracker,
    check_server,
    default_tracking_uri,
    resolve_tracking_uri,
)

__all__ = [
    "CONTRACT_VERSION",
    "MLflowRunLogger",
    "Tracker",
    "check_server",
    "default_tracking_uri",
    "resolve_tracking_uri",
]

from bioclf.tracking.artifacts import (  # noqa: E402 - reading runs back (predict), dataset inputs
    DATA_FINGERPRINT_TAG,
    best_run,
    download_artifact,
    find_run,
    has_artifact,
    log_dataset_input,
    log_file,
    other_fingerprints,
    run_fingerprint,
    run_summary,
)

__all__ += [
    "DATA_FINGERPRINT_TAG",
    "best_run",
    "download_artifact",
    "find_run",
    "has_artifact",
    "log_dataset_input",
    "log_file",
    "other_fingerprints",
    "run_fingerprint",
    "run_summary",
]
