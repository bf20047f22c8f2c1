"""Checkpoints written atomically: a kill mid-write leaves the previous file intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename over the target.

    torch.save gets the file NAME, not a Python file object: with a file object its C++ writer
    calls back into Python for every write, so a Ctrl-C (or a Ray cancel) landing there comes
    out as a RuntimeError ("unexpected pos") and the run would count as failed, not stopped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # weights_only=True: a checkpoint holds tensors, numbers, strings and lists; refusing
    # arbitrary pickles means opening someone else's checkpoint cannot run code.
    return torch.load(path, map_location=map_location, weights_only=True)
