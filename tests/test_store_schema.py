"""The one test that fails when the installed MLflow makes stores at a schema revision that
bioclf's own SQLite reader and writer (bioclf/tracking/sqlite_view.py, sqlite_log.py) were not
checked against. They step aside for MLflow then (slower, still correct), and their own tests
skip (conftest.known_schema)."""

from __future__ import annotations

import mlflow
from conftest import installed_mlflow_revision

from bioclf.tracking.sqlite_view import KNOWN_REVISIONS


def test_the_installed_mlflow_makes_stores_of_a_known_revision():
    revision = installed_mlflow_revision()
    assert revision in KNOWN_REVISIONS, (
        f"MLflow {mlflow.__version__} creates stores at alembic revision {revision}, which "
        "bioclf/tracking/sqlite_view.py and sqlite_log.py were not checked against (`list` and the report "
        "go through MLflow meanwhile). Read MLflow's migrations since, and its SqlAlchemyStore (search_runs, "
        "log_batch) and LocalArtifactRepository; adapt both modules if needed, add the revision to "
        "KNOWN_REVISIONS and run tests/test_sqlite_log.py, tests/test_report_view.py and tests/test_cli.py.")
