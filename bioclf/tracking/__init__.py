"""MLflow tracking: the only package of ``bioclf`` that imports mlflow.

It implements the tracking contract of ``docs/tracking.md`` (every name in
``bioclf.tracking.contract``): an experiment per spec name, a parent run per suite, a child run
per variant x seed with tags, params, per-epoch metrics (step = epoch), final metrics and
artifacts. Callers get plain values back (``RunRecord``), never MLflow objects.

Names are imported on first use: ``contract`` and ``uri`` import no MLflow, so the report's
fast path and ``bioclf-exp validate`` can use them.
"""

from __future__ import annotations

from bioclf.lazy import lazy_exports

_WHERE = {
    "CONTRACT_VERSION": "bioclf.tracking.contract",
    "check_server": "bioclf.tracking.uri",
    "default_tracking_uri": "bioclf.tracking.uri",
    "local_store_dir": "bioclf.tracking.uri",
    "resolve_tracking_uri": "bioclf.tracking.uri",
    "MLflowRunLogger": "bioclf.tracking.store",
    "RunRecord": "bioclf.tracking.records",
    "Tracker": "bioclf.tracking.store",
    "DATA_FINGERPRINT_TAG": "bioclf.tracking.artifacts",
    "log_dataset_input": "bioclf.tracking.artifacts",
    "other_fingerprints": "bioclf.tracking.artifacts",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _WHERE)
