"""Figures drawn and saved as jobs: in worker processes when there are CPUs to spare, else here.

matplotlib draws on one core, and a 50-variant suite has 50+ figures; processes (not threads:
drawing holds the GIL) spread that over the CPUs. Importing matplotlib and scipy costs seconds
too, so ``bioclf-report`` starts its workers first (``WorkerPool.start``, before anything may
import MLflow): they import the plotting stack and scipy while it reads the store, then compute
the ablation tests and draw each figure as soon as it is queued, while it computes the tables.
``analysis.figures`` is imported only where a figure is drawn: a report whose figures are all
current never imports matplotlib.

The imports are done once, in the pool's first process, and the drawing workers are forked from
it when the first job comes: forked early, each worker would import everything again (2-3 s of
CPU each, which a 2-core machine pays in wall time).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

PARALLEL_MIN_JOBS = 6  # without a pool started beforehand: below this, forking costs more than it saves
MAX_WORKERS = 8


@dataclass
class FigureJob:
    draw: str  # name of a function of analysis.figures returning a Figure (resolved where it is drawn)
    args: tuple
    folder: Path
    stem: str
    formats: tuple[str, ...]

    @property
    def paths(self) -> list[Path]:
        return [self.folder / f"{self.stem}.{ext}" for ext in self.formats]


def render(job: FigureJob) -> list[Path]:
    from analysis import figures

    return figures.save_figure(getattr(figures, job.draw)(*job.args), job.folder, job.stem, job.formats)


def _fork_context():
    """fork starts a worker instantly with everything imported. It is only safe while no other
    thread may hold a lock (MLflow's artifact upload pools, a training run's threads), and spawn
    would re-import the caller's script: in those cases figures are drawn in this process."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return None


def _worker_count(workers: int | None, jobs: int | None = None) -> int:
    n = min(workers or os.cpu_count() or 1, MAX_WORKERS)
    return n if jobs is None else min(n, jobs)


def render_all(jobs: list[FigureJob], workers: int | None = None) -> None:
    """Draw ``jobs`` now: forked processes for many, this process for a few."""
    n = _worker_count(workers, len(jobs))
    context = _fork_context() if n >= 2 and len(jobs) >= PARALLEL_MIN_JOBS else None
    if context is None:
        for job in jobs:
            render(job)
        return
    with ProcessPoolExecutor(n, mp_context=context) as pool:
        for _ in pool.map(render, jobs):  # re-raises a worker's error here
            pass


def _warm_up() -> None:
    """In a new worker: import the plotting stack and scipy, and load the font, before the first job."""
    import importlib
    import io

    from analysis import figures

    for name in ("scipy.special", "scipy.fft"):  # analysis.stats imports them when first used
        importlib.import_module(name)

    fig = figures.Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "0")
    fig.savefig(io.BytesIO(), format="png")


def _die_with_parent() -> None:
    """In a drawing worker (Linux): be killed if the pool's first process is, rather than wait on
    its queue forever. Elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _zygote(conn, callers_end, workers: int) -> None:
    """The pool's first process: imports what the jobs need, forks ``workers`` processes that
    inherit it at the first job, hands them the jobs that come through ``conn`` and sends back
    ``(id, ok, result or exception)`` as each one ends. Ends when ``conn`` is closed or says None."""
    # Ctrl-C reaches every process of the terminal's group: the caller handles it and closes the
    # pool; a worker interrupted inside a queue's lock would hang instead (the workers inherit this).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    callers_end.close()  # else this process would hold the pipe open and never see the caller go
    _warm_up()
    lock = threading.Lock()  # answers are sent from the executor's thread, one at a time
    executor = None
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            job_id, fn, args = message
            if executor is None:  # forked now: this process has no other thread yet
                executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                               initializer=_die_with_parent)
            try:
                future = executor.submit(fn, *args)
            except BrokenProcessPool as exc:  # a worker was killed: the caller does the job itself
                future = Future()
                future.set_exception(exc)
            future.add_done_callback(partial(_answer, conn, lock, job_id))
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        conn.close()


def _answer(conn, lock, job_id: int, future) -> None:
    try:
        answer = (job_id, True, future.result())
    except BaseException as exc:  # noqa: BLE001 - the caller re-raises it
        answer = (job_id, False, exc)
    with lock:
        try:
            conn.send(answer)
        except (OSError, ValueError):
            pass  # the caller is gone
        except Exception as exc:  # noqa: BLE001 - a result or error that does not pickle
            try:
                conn.send((job_id, False, RuntimeError(f"{type(exc).__name__}: {exc}")))
            except (OSError, ValueError):
                pass


class WorkerPool:
    """Worker processes started early that draw figures as they are queued (``submit``) and
    compute what else is long and needs scipy (``call``). If they die (killed, out of memory),
    what they had not answered is done in this process."""

    def __init__(self, process, conn):
        self._process, self._conn = process, conn
        self._sent = 0
        self._jobs: dict[int, tuple[Callable, tuple]] = {}  # sent, result not taken yet
        self._answers: dict[int, tuple[bool, object]] = {}
        self._figures: list[int] = []
        self._broken = False

    @classmethod
    def start(cls, workers: int | None = None) -> WorkerPool | None:
        """Fork the pool now (None where this process cannot fork safely, or ``workers`` is 1:
        figures are then drawn by ``render_all``). Call it before importing MLflow: the pool's
        processes stay small, and no thread of MLflow's exists yet."""
        n = _worker_count(workers)
        context = _fork_context() if n >= 2 else None
        if context is None:
            return None
        here, there = context.Pipe()
        process = context.Process(target=_zygote, args=(there, here, n), name="bioclf-report-workers")
        process.start()
        there.close()
        return cls(process, here)

    def submit(self, job: FigureJob) -> None:
        self._figures.append(self._send(render, (job,)))

    def call(self, fn: Callable, *args) -> Callable[[], object]:
        """Start ``fn(*args)`` (a module-level function) in a worker; returns what waits for its result."""
        job_id = self._send(fn, args)
        return partial(self._result, job_id)

    def wait(self) -> None:
        """Until every queued figure is saved; a worker's error is raised here."""
        figures, self._figures = self._figures, []
        for job_id in figures:
            self._result(job_id)

    def close(self) -> None:
        """End the pool: the figures being drawn are finished, the queued ones dropped (after an
        error or Ctrl-C, nothing is waiting for them)."""
        if self._sent == 0 or self._broken:  # no worker forked yet, or the pool is gone
            self._process.terminate()
        else:
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                self._broken = True
            while not self._broken:  # answers still coming are read: no worker blocks on a full pipe
                self._receive()  # until EOF: the pool's processes have all ended
        self._conn.close()
        self._process.join()

    def _send(self, fn: Callable, args: tuple) -> int:
        job_id, self._sent = self._sent, self._sent + 1
        self._jobs[job_id] = (fn, args)
        if not self._broken:
            try:
                self._conn.send((job_id, fn, args))
            except (OSError, ValueError):
                self._broken = True
        return job_id

    def _result(self, job_id: int):
        while job_id not in self._answers and not self._broken:
            self._receive()
        fn, args = self._jobs.pop(job_id)
        if job_id in self._answers:
            ok, value = self._answers.pop(job_id)
            if ok:
                return value
            if not isinstance(value, BrokenProcessPool):
                raise value
        return fn(*args)  # the pool is gone (a worker was killed): here, then

    def _receive(self) -> None:
        """One answer; at EOF, or when the pool's first process died (killed), the pool is broken."""
        try:
            while not self._conn.poll(1.0):
                if not self._process.is_alive():
                    raise EOFError
            answered, ok, value = self._conn.recv()
        except (EOFError, OSError):
            self._broken = True
            return
        self._answers[answered] = (ok, value)
