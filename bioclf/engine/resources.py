"""What a run costs (peak memory, checkpoint size, inference latency) and giving it all back.

A long suite runs 60 variants in one process: every run must release its model, optimizer,
data loaders and their worker processes, so the 10th run starts where the 1st did.
"""

from __future__ import annotations

import gc
import os
import resource
import socket
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from bioclf.engine.device import autocast

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def machine_load() -> dict[str, float]:
    """The machine's 1-minute load average per CPU, this run's own work included: above ~1 more
    threads wanted a CPU than there were, so the epoch's times are not those of a run alone.
    Empty where the OS keeps no load average (Windows)."""
    try:
        return {"load_per_cpu": os.getloadavg()[0] / (os.cpu_count() or 1)}
    except (OSError, AttributeError):
        return {}


def host_name() -> str:
    """Which machine trained: the report compares the times of runs of one host only when they did not overlap."""
    return socket.gethostname()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: writing 5 to clear_refs resets VmHWM), so the
    peak measured at the end of a run is this run's, not the process's since it started."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory (MB) since the last reset (Linux), else since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def reset_gpu_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1024**2 if device.type == "cuda" else None


@torch.no_grad()
def inference_ms_per_image(model: nn.Module, image_shape: tuple[int, ...], device: torch.device,
                           dtype: torch.dtype | None, batch: int = 16, repeats: int = 3) -> float:
    """Median forward time of one batch of ``batch`` images, divided by ``batch`` (the
    report's latency column is per image at batch 16). One warm-up batch first."""
    model.eval()
    x = torch.randn(batch, *image_shape, device=device)
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast(device, dtype):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first pass warms up allocators and cuDNN autotuning
            times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * times[len(times) // 2] / batch


def shutdown_loader(loader) -> None:
    """Stop a DataLoader's persistent worker processes now, not whenever the GC gets to them."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    if hasattr(loader, "_iterator"):
        loader._iterator = None


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1024**2
