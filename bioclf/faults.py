"""Named points where a reliability test kills the process, as a power loss or the OOM killer
would: ``BIOCLF_KILL_AT=point`` (the first time the point is reached) or ``point@n`` (the
n-th time) sends SIGKILL to the process (its whole process group when it leads one, so loader
workers die with it). Unset, a point costs one comparison.

The points, in the order a suite reaches them: ``startup`` (the suite is about to open its
parent run), ``run_created`` (a child run was just created, before it trained), ``batch`` (a
training batch was stepped), ``epoch_logged`` (an epoch's checkpoint, metrics and console line
are done), ``summary_logged`` (a run's final metrics are logged, its artifacts not yet).
tests/test_kill_points.py kills at each and checks that the same command finishes the suite.
"""

from __future__ import annotations

import os
import signal

POINTS = ("startup", "run_created", "batch", "epoch_logged", "summary_logged")

_point, _, _nth = os.environ.get("BIOCLF_KILL_AT", "").partition("@")
_remaining = int(_nth or 1)


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``BIOCLF_KILL_AT`` names this point (module docstring)."""
    global _remaining
    if name != _point:
        return
    _remaining -= 1
    if _remaining:
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
