"""A RunLogger (bioclf.engine.logger) that keeps what a run reported in memory, for tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Mapping


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
