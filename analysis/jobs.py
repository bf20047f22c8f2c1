"""Figures drawn and saved as jobs: serially for a handful, in forked worker processes for many.

matplotlib draws on one core and a 50-variant suite has 50+ figures, each saved twice (PNG and
PDF); processes (not threads: drawing holds the GIL) can spread that over the CPUs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from analysis.figures import save_figure

PARALLEL_MIN_JOBS = 6  # below this, starting processes costs more than it saves
MAX_WORKERS = 8


@dataclass
class FigureJob:
    draw: Callable  # a module-level function of analysis.figures (picklable), returning a Figure
    args: tuple
    folder: Path
    stem: str
    formats: tuple[str, ...]

    @property
    def paths(self) -> list[Path]:
        return [self.folder / f"{self.stem}.{ext}" for ext in self.formats]


def render(job: FigureJob) -> list[Path]:
    return save_figure(job.draw(*job.args), job.folder, job.stem, job.formats)


def _fork_context():
    """fork starts a worker instantly with everything imported. It is only safe while no other
    thread may hold a lock (MLflow's artifact upload pools, a training run's threads), and spawn
    would re-import the caller's script: in those cases figures are drawn in this process."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return None


def render_all(jobs: list[FigureJob], workers: int | None = None) -> None:
    n = min(workers or os.cpu_count() or 1, MAX_WORKERS, len(jobs))
    context = _fork_context() if n >= 2 and len(jobs) >= PARALLEL_MIN_JOBS else None
    if context is None:
        for job in jobs:
            render(job)
        return
    with ProcessPoolExecutor(n, mp_context=context) as pool:
        for _ in pool.map(render, jobs):  # re-raises a worker's error here
            pass
