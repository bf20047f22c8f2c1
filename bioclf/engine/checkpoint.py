"""Checkpoints written atomically: a kill mid-write leaves the previous file intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # weights_only=True: a checkpoint holds tensors, numbers, strings and lists; refusing
    # arbitrary pickles means opening someone else's checkpoint cannot run code.
    return torch.load(path, map_location=map_location, weights_only=True)
