"""Where the tracking store is: ``--tracking-uri`` > ``$MLFLOW_TRACKING_URI`` > the project's
SQLite store. No MLflow import, so the report's fast path and ``bioclf-exp validate`` can ask."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

from bioclf.errors import BioclfError


def check_server(uri: str, timeout_s: float = 10.0) -> None:
    """Fail now, with one line, when a tracking server does not answer (MLflow's own client would
    retry with backoff for minutes, after the first epoch had already been paid for)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: a proxy or an auth layer may refuse /health while the API works
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BioclfError(f"tracking server {uri} is unreachable ({reason}); start it or fix --tracking-uri") from None


def _find_store_dir(start: Path) -> Path:
    """The nearest ``mlruns/`` folder at or above ``start`` (a project checkout keeps one), or
    ``start/mlruns``: running from a subfolder of a project still uses the project's store."""
    for folder in (start, *start.parents):
        if (folder / "mlruns").is_dir():
            return folder / "mlruns"
    return start / "mlruns"


def default_tracking_uri(cwd: Path | None = None) -> str:
    store = _find_store_dir((cwd or Path.cwd()).resolve())
    return f"sqlite:///{store / 'mlflow.db'}"


def resolve_tracking_uri(cli_uri: str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > the project-local SQLite store."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def local_store_dir(uri: str) -> Path | None:
    """The folder of a local SQLite store (artifacts go beside the database), else None."""
    if uri.startswith("sqlite:///"):
        return Path(unquote(uri[len("sqlite:///"):])).parent
    return None


UI_ADDRESS = "http://127.0.0.1:5000"  # where ``bioclf-exp ui`` serves by default


def runs_url(experiment_id: str, base: str = UI_ADDRESS) -> str:
    """The MLflow UI page of an experiment's runs table."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
