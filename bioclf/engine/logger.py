"""The interface through which the trainer reports; ``bioclf.tracking`` implements it for MLflow.

The engine never imports mlflow: it calls these four methods (the tests' ``RecordingLogger``
keeps them in memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol


class RunLogger(Protocol):
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Per-epoch metrics; ``epoch`` is 1-based and becomes the MLflow step."""

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        """Final metrics of the run (of the best checkpoint)."""

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        """A file produced by the run, stored under ``artifact_dir``."""

    def log_tags(self, tags: Mapping[str, str]) -> None:
        """Facts about how the run ran (e.g. where the input pipeline's components ran)."""


class NullLogger:
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        pass

    def log_tags(self, tags: Mapping[str, str]) -> None:
        pass
