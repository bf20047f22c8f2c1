"""Training throughput of the base recipe on one GPU: precision, memory format, compile, loader.

The report's model (ResNeXt101_32x8d + the custom head, 100 classes), 224 px, AdamW, label-
smoothed cross entropy; one optimizer step per batch. Measured, each after warm-up steps:

1. synthetic tensors already on the GPU (the model alone), batch 64 and the largest batch
   that fits (found by doubling in bf16 + channels_last), in
   fp32 | bf16 autocast | bf16 + channels_last | bf16 + channels_last + torch.compile;
2. the real input pipeline feeding the fastest mode at batch 64: bioclf's DataLoader over
   JPEGs (``--folder`` DIR with train/<class>/ and val/<class>/ images, or generated 500x375
   JPEGs) with the report's augmentation, ``data.pipeline: fast`` with the GPU batch stage
   and ``reference``, ``--workers`` processes (default: all CPUs).

fp32 rows keep PyTorch's defaults (cuDNN convolutions may use TF32). MFU is against the dense
bf16 peak for every row.

For each row: images/s, ms per step, peak memory, and model FLOPs utilisation (training
FLOPs per image counted by torch.utils.flop_counter, x images/s, / the GPU's dense bf16 peak
from a small table, or ``--peak-tflops``). The whole run stays under ``--budget`` seconds
(default 450): rows that would not fit are reported as skipped.

    python benchmarks/gpu.py                           # needs CUDA; about 5-7 minutes
    python benchmarks/gpu.py --folder /data/birds --workers 16
    python benchmarks/gpu.py --tiny                    # CPU or GPU, ResNet18 at 32 px, seconds
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0, "GH200": 989.0,
    "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10": 125.0,
    "RTX 4090": 165.0, "RTX 3090": 71.0, "TITAN RTX": 130.0, "V100": 125.0,
}
MODES = ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")


@dataclass
class Row:
    what: str
    batch: int
    images_per_s: float | None = None
    step_ms: float | None = None
    peak_gb: float | None = None
    mfu: float | None = None
    note: str = ""


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def build(backbone: str, num_classes: int) -> nn.Module:
    from bioclf.models import build_model
    from bioclf.spec.schema import ModelConfig

    return build_model(ModelConfig(backbone=backbone, pretrained=False, max_params=10**9), num_classes)


def train_flops_per_image(backbone: str, num_classes: int, size: int, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image (counted on a batch of 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(backbone, num_classes).to(device).train()
    x = torch.randn(2, 3, size, size, device=device)
    y = torch.randint(0, num_classes, (2,), device=device)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    del model
    return counter.get_total_flops() / 2


class Trainer:
    """One model + optimizer in one mode; ``step(x, y)`` is one training step."""

    def __init__(self, backbone, num_classes, mode, device):
        self.device = device
        self.channels_last = "cl" in mode and device.type == "cuda"
        self.dtype = torch.bfloat16 if mode.startswith("bf16") else None
        self.model = build(backbone, num_classes).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.loss = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.forward = torch.compile(self.model) if mode.endswith("compile") else self.model

    def step(self, x, y):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.loss(self.forward(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


ROW_SECONDS = 20.0  # the timed part of one row, at most (slow fp32 rows stop early)


def time_synthetic(trainer: Trainer, batch: int, size: int, num_classes: int, warmup: int,
                   steps: int) -> tuple[float, float, float]:
    """(images/s, ms per step, warm-up seconds: the first steps, which include compiling)."""
    x = torch.randn(batch, 3, size, size, device=trainer.device)
    y = torch.randint(0, num_classes, (batch,), device=trainer.device)
    start = time.perf_counter()
    for _ in range(warmup):
        trainer.step(x, y)
    sync(trainer.device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    done = 0
    while done < steps and (done < 2 or time.perf_counter() - start < ROW_SECONDS):
        trainer.step(x, y)
        done += 1
        if done == 2:
            sync(trainer.device)  # so that the time check sees real GPU time
    sync(trainer.device)
    seconds = time.perf_counter() - start
    return batch * done / seconds, seconds / done * 1000, warm


def fits(backbone, num_classes, mode, device, batch, size) -> bool:
    trainer = None
    try:
        trainer = Trainer(backbone, num_classes, mode, device)
        time_synthetic(trainer, batch, size, num_classes, warmup=1, steps=1)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        del trainer
        gc.collect()
        reset_memory(device)


def largest_batch(backbone, num_classes, mode, device, size, start: int, limit: int, deadline: float) -> int:
    """Doubling from ``start`` while it fits (then one bisection step), within ``limit``."""
    good, batch = start, start * 2
    while batch <= limit and time.perf_counter() < deadline and fits(backbone, num_classes, mode, device, batch, size):
        good, batch = batch, batch * 2
    middle = (good + batch) // 2
    if batch <= limit and middle > good and time.perf_counter() < deadline and fits(
            backbone, num_classes, mode, device, middle, size):
        good = middle
    return good


def generated_dataset(folder: Path, n: int, width: int, height: int) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from data_pipeline import generate_jpegs

    generate_jpegs(folder, n, width, height)
    (folder / "val" / "0").mkdir(parents=True, exist_ok=True)
    (folder / "val" / "1").mkdir(parents=True, exist_ok=True)
    for label in ("0", "1"):  # build_loaders wants a val split with the same classes
        src = next((folder / "train" / label).iterdir())
        shutil.copy(src, folder / "val" / label / src.name)
    return folder


def loader_config(root: Path, pipeline: str, size: int, batch: int, workers: int):
    from bioclf.spec.schema import DataConfig

    sys.path.insert(0, str(Path(__file__).parent))
    from data_pipeline import report_items

    return DataConfig(source="folder", root=str(root), batch_size=batch, num_workers=workers, pipeline=pipeline,
                      train_transforms=report_items(size), eval_transforms=[{"name": "resize", "size": size}])


def time_loader(trainer: Trainer, root: Path, pipeline: str, size: int, batch: int, workers: int,
                warmup: int, steps: int, deadline: float) -> tuple[float, float]:
    from bioclf.data import build_loaders

    device = trainer.device
    bundle = build_loaders(loader_config(root, pipeline, size, batch, workers), seed=0, device_type=device.type,
                           batch_transforms=True)
    memory_format = torch.channels_last if trainer.channels_last else None
    done, start = 0, None
    try:
        while done < warmup + steps and time.perf_counter() < deadline:
            for images, labels in bundle.train:
                x = bundle.train_batch_transform(images, device, memory_format)
                trainer.step(x, labels.to(device, non_blocking=True))
                done += 1
                if done == warmup:
                    sync(device)
                    start = time.perf_counter()
                if done >= warmup + steps or time.perf_counter() > deadline:
                    break
        sync(device)
        if start is None or done <= warmup:
            return float("nan"), float("nan")
        seconds = time.perf_counter() - start
        return (done - warmup) * batch / seconds, seconds / (done - warmup) * 1000
    finally:
        from bioclf.engine.resources import shutdown_loader

        shutdown_loader(bundle.train)
        shutdown_loader(bundle.val)


def print_table(rows: list[Row]) -> None:
    head = ("what", "batch", "images/s", "ms/step", "peak GiB", "MFU", "note")
    def num(value, fmt):
        return "-" if value is None or math.isnan(value) else format(value, fmt)

    lines = [(r.what, str(r.batch), num(r.images_per_s, ".0f"), num(r.step_ms, ".1f"), num(r.peak_gb, ".1f"),
              num(r.mfu, ".1%"), r.note) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 6) else '>'}{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*head))
    for line in lines:
        print(fmt.format(*line))


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="ResNet18, 32 px, a few steps; runs on CPU too")
    p.add_argument("--backbone", default="resnext101_32x8d")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--max-batch", type=int, default=1024, help="upper limit of the largest-batch search")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--folder", type=Path, help="dataset root with train/<class>/ images for the loader rows")
    p.add_argument("--images", type=int, default=1024, help="generated JPEGs when no --folder (default 1024)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: all CPUs)")
    p.add_argument("--no-loader", action="store_true", help="skip the real-loader rows")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak for MFU (default: from the GPU name)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run (default 450)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.tiny:
        args.backbone, args.size, args.classes, args.batch = "resnet18", 32, 10, 8
        args.max_batch, args.warmup, args.steps, args.images = 32, 1, 2, 24
        args.workers = 0 if args.workers is None else args.workers
    elif not cuda:
        print("gpu.py: no CUDA device; nothing to measure (--tiny runs the CPU smoke version)")
        return []
    device = torch.device("cuda" if cuda else "cpu")
    deadline = time.perf_counter() + args.budget
    workers = args.workers if args.workers is not None else (len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity") else os.cpu_count() or 1)
    modes = [m for m in args.modes.split(",") if m]
    if not cuda:  # bf16, channels_last and compile are GPU choices; on CPU they only cost time
        modes = [m for m in modes if m == "fp32"]
    benchmark_flag = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # PyTorch's TF32 defaults are left alone: cuDNN may use TF32 in fp32
    try:
        return _measure(args, cuda, device, deadline, workers, modes)
    finally:
        torch.backends.cudnn.benchmark = benchmark_flag


def _measure(args, cuda: bool, device: torch.device, deadline: float, workers: int, modes: list[str]) -> list[Row]:
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    peak = peak_tflops(device, args.peak_tflops)
    flops = train_flops_per_image(args.backbone, args.classes, args.size, device)
    print(f"device: {name}; model {args.backbone} + head, {args.size} px, {args.classes} classes; "
          f"{flops / 1e9:.1f} GFLOP per training image (fwd + bwd); peak {peak or '?'} TFLOP/s bf16 dense")

    def mfu(ips):
        return ips * flops / (peak * 1e12) if peak and ips and not math.isnan(ips) else None

    rows: list[Row] = []
    # The largest batch is a GPU-memory question: searched on CUDA only.
    big = largest_batch(args.backbone, args.classes, "bf16+cl", device, args.size, args.batch, args.max_batch,
                        deadline - 0.6 * args.budget) if cuda else args.batch
    batches = [args.batch] + ([big] if big != args.batch else [])
    best_at: dict[int, tuple[str, float]] = {}  # batch -> (fastest mode, images/s)
    for mode in modes:
        for batch in batches:
            what = f"synthetic, {mode}"
            if time.perf_counter() > deadline - (120 if mode.endswith("compile") else 15):
                rows.append(Row(what, batch, note="skipped (time budget)"))
                continue
            reset_memory(device)
            trainer = None
            try:
                trainer = Trainer(args.backbone, args.classes, mode, device)
                ips, ms, warm = time_synthetic(trainer, batch, args.size, args.classes, args.warmup, args.steps)
                note = f"compile + warm-up {warm:.0f} s" if mode.endswith("compile") else ""
                rows.append(Row(what, batch, ips, ms, peak_gb(device), mfu(ips), note))
                if batch not in best_at or ips > best_at[batch][1]:
                    best_at[batch] = (mode, ips)
            except torch.OutOfMemoryError:
                rows.append(Row(what, batch, note="out of memory"))
            finally:
                del trainer
                gc.collect()
                reset_memory(device)

    if not args.no_loader and args.batch in best_at:
        # The recipe's batch in the fastest mode measured for it: can the input pipeline keep up?
        scratch = Path(tempfile.mkdtemp(prefix="bioclf-bench-gpu-"))
        try:
            root = args.folder or generated_dataset(scratch / "data", args.images, 500, 375)
            batch, mode = args.batch, best_at[args.batch][0]
            if mode.endswith("compile") and time.perf_counter() > deadline - 150:
                mode = mode.replace("+compile", "")
            for pipeline in ("fast", "reference"):
                what = f"loader {pipeline}, {workers} workers, {mode}"
                if time.perf_counter() > deadline - 20:
                    rows.append(Row(what, batch, note="skipped (time budget)"))
                    continue
                reset_memory(device)
                trainer = Trainer(args.backbone, args.classes, mode, device)
                ips, ms = time_loader(trainer, root, pipeline, args.size, batch, workers, args.warmup, args.steps,
                                      deadline)
                rows.append(Row(what, batch, ips, ms, peak_gb(device), mfu(ips),
                                "flips..erasing on the GPU batch" if pipeline == "fast" and cuda else ""))
                del trainer
                gc.collect()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
