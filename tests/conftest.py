"""Shared fixtures: a temporary SQLite store, the repo's experiments folder, tiny specs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Scan and hash caches of the tests go to a temporary folder, never the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


_SCHEMA: dict[str, str] = {}


def installed_mlflow_revision() -> str:
    """The alembic revision of a store the installed MLflow creates (the fake store's template)."""
    import sqlite3

    from test_report_fakestore import fresh_store

    if "revision" not in _SCHEMA:
        folder = Path(fresh_store(Path(tempfile.mkdtemp(prefix="bioclf-schema-")))[len("sqlite:///"):]).parent
        with sqlite3.connect(folder / "mlflow.db") as con:
            (_SCHEMA["revision"],), = con.execute("SELECT version_num FROM alembic_version").fetchall()
        shutil.rmtree(folder, ignore_errors=True)
    return _SCHEMA["revision"]


@pytest.fixture
def known_schema() -> None:
    """Skips a test of bioclf's own SQLite reader / writer (bioclf.tracking.sqlite_view, sqlite_log)
    when the installed MLflow makes stores at a revision they were not checked against: they then
    step aside for MLflow, and one test says so, test_store_schema.py, not every test that uses them."""
    from bioclf.tracking.sqlite_view import KNOWN_REVISIONS

    revision = installed_mlflow_revision()
    if revision not in KNOWN_REVISIONS:
        pytest.skip(f"the installed MLflow makes stores at revision {revision}, not checked yet "
                    "(tests/test_store_schema.py fails until it is)")


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch) -> str:
    """A fresh SQLite store per test; MLFLOW_TRACKING_URI points at it too."""
    store = tmp_path / "mlruns"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


# The smoke suite shrunk further, so that a test trains it end to end in seconds.
TINY = {
    "extends": str(EXPERIMENTS / "smoke.yaml"),
    "name": "tiny",
    "data": {
        "synthetic": {"num_classes": 4, "train_per_class": 24, "val_per_class": 8, "image_size": 24, "seed": 0},
        "train_transforms": [{"name": "random_resized_crop", "size": 16, "scale": [0.8, 1.0]}, "horizontal_flip"],
        "eval_transforms": [{"name": "resize", "size": 16}],
        "batch_size": 16,
    },
    "model": {"head": {"hidden_dim": 16}},
    "train": {"epochs": 2},
}


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    spec = dict(TINY)
    spec["variants"] = {"full": {}, "linear": {"model.head": {"hidden_dim": None, "dropout_in": 0.0,
                                                             "dropout_hidden": 0.0, "batchnorm": False}}}
    spec["baseline"] = "full"
    return write_spec(tmp_path, spec)
