"""MLflow tracking: the only module of ``bioclf`` that imports mlflow.

It implements the tracking contract of ``docs/tracking.md``: an experiment per spec name, a
parent run per suite, a child run per variant x seed with tags, params, per-epoch metrics
(step = epoch), final metrics and artifacts.
"""

from bioclf.tracking.store import (
    CONTRACT_VERSION,
    MLflowRunLogger,
    Tracker,
    default_tracking_uri,
    resolve_tracking_uri,
)

__all__ = [
    "CONTRACT_VERSION",
    "MLflowRunLogger",
    "Tracker",
    "default_tracking_uri",
    "resolve_tracking_uri",
]
