"""One process per config: an exclusive, non-blocking file lock per config hash.

Two ``bioclf-exp run`` processes on the same store (a second terminal, a cluster array job on
one node) must not train the same variant twice. The operating system releases a ``flock``
when its process dies, however it dies, so a crashed run never leaves a stale claim behind.
Locks live beside the store's scratch space; processes on different machines sharing a remote
tracking server do not see each other's locks.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; claims are then best-effort (always granted)
    fcntl = None  # type: ignore[assignment]


@contextmanager
def claim(folder: Path, key: str, *, wait: bool = False) -> Iterator[bool]:
    """Yields True while this process holds the claim on ``key``, False if another one does.
    With ``wait``, blocks until the claim is free (for short critical sections)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)  # closing releases the lock
