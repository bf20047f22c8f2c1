"""The interface through which the trainer reports; ``bioclf.tracking`` implements it for MLflow.

The engine never imports mlflow: it calls these four methods, and tests pass a
``RecordingLogger`` to check what a run reported.
"""

from __future__ import annotations

import shutil
import tempfile
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


class RecordingLogger:
    """Keeps everything in memory (artifacts copied, so the run's workdir may go away)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, dict[str, float]]] = []
        self.summary: dict[str, float] = {}
        self.artifacts: dict[str, Path] = {}
        self.tags: dict[str, str] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="bioclf-recorded-"))

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append((epoch, dict(metrics)))

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.summary.update(metrics)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        key = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
        target = self._dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        self.artifacts[key] = target
