"""Training throughput of the base recipe on one GPU: the model alone, fed by the loader, a suite.

The report's model (ResNeXt101_32x8d + the custom head, 100 classes), 224 px, AdamW, label-
smoothed cross entropy; one optimizer step per batch. Three parts, each within ``--budget``:

1. compute-only: synthetic tensors already on the GPU (the model alone) in ``--modes`` (default
   bf16 + channels_last; also fp32 | bf16 | bf16+cl+compile), at ``--batches`` (default 64, 256);
2. steady-state loader: bioclf's DataLoader over ``--images`` photo-sized JPEGs (generated
   500x375, quality 90; or ``--folder`` DIR with train/<class>/ and val/<class>/) with the
   report's augmentation, for ``--epochs`` epochs (the first is warm-up: worker start-up,
   cuDNN autotuning), at each batch size, for ``data.pipeline: reference`` (workers decode and
   augment) and ``device`` (workers read bytes; nvJPEG decode, crop and the batch kernels on
   the GPU). Reported: images/s over the timed epochs, the share of that time spent waiting
   for the loader, and fed / compute-only (target >= 0.9);
3. a suite (``--suite``, on by default with CUDA): ``bioclf-exp run`` of a 2-row suite of
   experiments/base.yaml from scratch on the generated JPEGs (10 classes, 2 epochs, rows:
   label smoothing 0.1 and 0), then ``bioclf-report``; per epoch, from the store: images/s
   and data_time_s / epoch time.

fp32 rows keep PyTorch's defaults (cuDNN convolutions may use TF32). MFU is against the dense
bf16 peak for every row (training FLOPs per image counted by torch.utils.flop_counter, x
images/s, / the GPU's dense bf16 peak from a small table, or ``--peak-tflops``).

    python benchmarks/gpu.py                           # needs CUDA; about 4-6 minutes
    python benchmarks/gpu.py --folder /data/birds --workers 16 --no-suite
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
PIPELINES = ("reference", "device")


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


def generated_dataset(folder: Path, n: int, width: int, height: int, classes: int = 10) -> Path:
    """``n`` training JPEGs and n / 8 validation JPEGs in ``classes`` class folders."""
    sys.path.insert(0, str(Path(__file__).parent))
    from data_pipeline import generate_jpegs

    generate_jpegs(folder, n, width, height, classes=classes)
    generate_jpegs(folder, max(classes, n // 8), width, height, seed=1, classes=classes, split="val")
    return folder


def loader_config(root: Path, pipeline: str, size: int, batch: int, workers: int):
    from bioclf.spec.schema import DataConfig

    sys.path.insert(0, str(Path(__file__).parent))
    from data_pipeline import report_items

    return DataConfig(source="folder", root=str(root), batch_size=batch, num_workers=workers, pipeline=pipeline,
                      train_transforms=report_items(size),
                      eval_transforms=[{"name": "resize", "size": size}, {"name": "center_crop", "size": size}])


def time_epochs(trainer: Trainer, root: Path, pipeline: str, size: int, batch: int, workers: int, epochs: int,
                deadline: float) -> tuple[float, float, int]:
    """(images/s, loader-wait share, timed epochs) over epochs 2..``epochs`` of the real loader;
    epoch 1 is warm-up. Stops early (fewer timed epochs) at the deadline."""
    from bioclf.data import build_loaders
    from bioclf.engine.resources import shutdown_loader

    device = trainer.device
    bundle = build_loaders(loader_config(root, pipeline, size, batch, workers), seed=0, device_type=device.type,
                           batch_transforms=True)
    memory_format = torch.channels_last if trainer.channels_last else None
    images = wait = 0.0
    timed, start = 0, None
    try:
        for epoch in range(1, epochs + 1):
            if epoch == 2:
                sync(device)
                start = time.perf_counter()
            if epoch > 1 and time.perf_counter() > deadline:
                break
            batches = iter(bundle.train)
            while True:
                t = time.perf_counter()
                try:
                    x, labels = next(batches)
                except StopIteration:
                    break
                if epoch > 1:
                    wait += time.perf_counter() - t
                    images += len(labels)
                x = bundle.train_batch_transform(x, device, memory_format)
                trainer.step(x, labels.to(device, non_blocking=True))
            timed += epoch > 1
        sync(device)
        if start is None or not images:
            return float("nan"), float("nan"), 0
        seconds = time.perf_counter() - start
        return images / seconds, wait / seconds, timed
    finally:
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
    p.add_argument("--batches", default="64,256", help="comma-separated batch sizes (default 64,256)")
    p.add_argument("--modes", default="bf16+cl", help=f"compute modes, comma-separated subset of {','.join(MODES)}; "
                   "the loader rows use the first (default bf16+cl)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=40, help="timed steps of a compute-only row (default 40)")
    p.add_argument("--folder", type=Path, help="dataset root with train/<class>/ images for the loader rows")
    p.add_argument("--images", type=int, default=4096, help="generated JPEGs when no --folder (default 4096)")
    p.add_argument("--epochs", type=int, default=4, help="loader epochs, the first untimed (default 4)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: all CPUs)")
    p.add_argument("--pipelines", default=",".join(PIPELINES), help="loader rows (default reference,device)")
    p.add_argument("--no-loader", action="store_true", help="skip the real-loader rows")
    p.add_argument("--suite", action=argparse.BooleanOptionalAction, default=None,
                   help="run the 2-row suite + report (default: on with CUDA and in --tiny)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="dense bf16 peak for MFU (default: from the GPU name)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (default 480)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.tiny:
        args.backbone, args.size, args.classes, args.batches = "resnet18", 32, 10, "8,16"
        args.warmup, args.steps, args.images, args.epochs = 1, 2, 48, 2
        args.workers = 0 if args.workers is None else args.workers
    elif not cuda:
        print("gpu.py: no CUDA device; nothing to measure (--tiny runs the CPU smoke version)")
        return []
    if args.suite is None:
        args.suite = cuda or args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    deadline = time.perf_counter() + args.budget
    workers = args.workers if args.workers is not None else (len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity") else os.cpu_count() or 1)
    modes = [m for m in args.modes.split(",") if m]
    if not cuda:  # bf16, channels_last and compile are GPU choices; on CPU they only cost time
        modes = ["fp32"]
    benchmark_flag = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # PyTorch's TF32 defaults are left alone: cuDNN may use TF32 in fp32
    scratch = Path(tempfile.mkdtemp(prefix="bioclf-bench-gpu-"))
    try:
        rows = _measure(args, cuda, device, deadline, workers, modes, scratch)
        print()
        print_table(rows)
        if args.suite:
            suite_rows = run_suite(args, scratch, workers, deadline)
            rows += suite_rows
        return rows
    finally:
        torch.backends.cudnn.benchmark = benchmark_flag
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(args, cuda: bool, device: torch.device, deadline: float, workers: int, modes: list[str],
             scratch: Path) -> list[Row]:
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    peak = peak_tflops(device, args.peak_tflops)
    flops = train_flops_per_image(args.backbone, args.classes, args.size, device)
    print(f"device: {name}; model {args.backbone} + head, {args.size} px, {args.classes} classes; "
          f"{flops / 1e9:.1f} GFLOP per training image (fwd + bwd); peak {peak or '?'} TFLOP/s bf16 dense")

    def mfu(ips):
        return ips * flops / (peak * 1e12) if peak and ips and not math.isnan(ips) else None

    rows: list[Row] = []
    batches = [int(b) for b in args.batches.split(",") if b]
    compute: dict[int, float] = {}  # batch -> images/s of the loader rows' mode, compute only
    for mode in modes:
        for batch in batches:
            what = f"compute only, {mode}"
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
                if mode == modes[0]:
                    compute[batch] = ips
            except torch.OutOfMemoryError:
                rows.append(Row(what, batch, note="out of memory"))
            finally:
                del trainer
                gc.collect()
                reset_memory(device)
    if args.no_loader:
        return rows
    t = time.perf_counter()
    root = args.folder or generated_dataset(scratch / "data", args.images, 500, 375)
    if not args.folder:
        print(f"generated {args.images} JPEGs (500x375, quality 90) in {time.perf_counter() - t:.0f} s")
    mode = modes[0]
    for batch in batches:
        for pipeline in [p for p in args.pipelines.split(",") if p]:
            what = f"fed: {pipeline}, {workers} workers, {mode}"
            if time.perf_counter() > deadline - 30:
                rows.append(Row(what, batch, note="skipped (time budget)"))
                continue
            reset_memory(device)
            trainer = Trainer(args.backbone, args.classes, mode, device)
            try:
                ips, wait, timed = time_epochs(trainer, root, pipeline, args.size, batch, workers, args.epochs,
                                               deadline - 20)
            except torch.OutOfMemoryError:
                rows.append(Row(what, batch, note="out of memory"))
                continue
            finally:
                del trainer
                gc.collect()
            ratio = ips / compute[batch] if compute.get(batch) else float("nan")
            rows.append(Row(what, batch, ips, batch / ips * 1000 if ips else None, peak_gb(device), mfu(ips),
                            f"fed / compute-only {ratio:.2f}; loader wait {wait:.0%}; {timed} timed epochs"))
    return rows


def run_suite(args, scratch: Path, workers: int, deadline: float) -> list[Row]:
    """``bioclf-exp run`` of a 2-row suite of experiments/base.yaml from scratch on generated
    JPEGs, then ``bioclf-report``; per-epoch images/s and loader share read back from the store."""
    import subprocess

    import yaml

    if time.perf_counter() > deadline - 60:
        print("\nsuite: skipped (time budget)")
        return []
    root = args.folder or scratch / "data"  # the loader rows' dataset, when they generated one
    if not root.exists():
        generated_dataset(root, args.images, 500, 375)
    spec = {"extends": str(REPO / "experiments" / "base.yaml"), "name": "gpu-suite",
            "description": "benchmarks/gpu.py: the base recipe from scratch on generated JPEGs",
            "baseline": "smoothing_0.1",
            "data": {"root": str(root), "num_classes": None, "num_workers": workers},
            "model": {"pretrained": False, "backbone": args.backbone},
            "train": {"epochs": 2}, "early_stopping": {"enabled": False},
            "variants": {"smoothing_0.1": {}, "cross_entropy": {"loss.label_smoothing": 0.0}}}
    if args.tiny:
        spec["data"]["train_transforms"] = [{"name": "random_resized_crop", "size": args.size, "scale": [0.7, 1.0]},
                                            "horizontal_flip", {"name": "random_erasing", "p": 0.2}]
        spec["data"]["eval_transforms"] = [{"name": "resize", "size": args.size + 4},
                                           {"name": "center_crop", "size": args.size}]
        spec["data"]["batch_size"] = 8
        spec["data"]["pipeline"] = "device"  # the GPU path's code, on the CPU device
    path = scratch / "gpu-suite.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{scratch / 'store' / 'mlflow.db'}"
    (scratch / "store").mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    commands = [[sys.executable, "-m", "bioclf.cli", "run", str(path), "--quiet"],
                [sys.executable, "-m", "analysis.cli", "--experiment", "gpu-suite", "--out", str(scratch / "report")]]
    seconds = []
    for command in commands:
        t = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True,
                              timeout=max(60.0, deadline - time.perf_counter()))
        seconds.append(time.perf_counter() - t)
        if done.returncode != 0:
            print(f"\nsuite: {' '.join(command[2:4])} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            return []
    return suite_rows(uri, seconds)


def suite_rows(uri: str, seconds: list[float]) -> list[Row]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gpu-suite")
    runs = client.search_runs([experiment.experiment_id], "tags.`bioclf.role` = 'variant'")
    rows = []
    print(f"\nsuite: bioclf-exp run {seconds[0]:.0f} s, bioclf-report {seconds[1]:.0f} s (2 rows x 2 epochs)")
    print("run                     epoch  images/s  data_time_s / epoch_time_s  pipeline")
    for run in sorted(runs, key=lambda r: r.data.tags.get("bioclf.variant", "")):
        history = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                   for key in ("train_images_per_s", "data_time_s", "epoch_time_s")}
        for epoch in sorted(history["epoch_time_s"]):
            ips = history["train_images_per_s"][epoch]
            share = history["data_time_s"][epoch] / history["epoch_time_s"][epoch]
            variant = run.data.tags.get("bioclf.variant", "?")
            print(f"{variant:22s}  {epoch:5d}  {ips:8.0f}  {share:26.1%}  {run.data.tags.get('bioclf.data.pipeline')}")
            rows.append(Row(f"suite {variant}, epoch {epoch}", int(run.data.params.get("data.batch_size", 0)), ips,
                            note=f"data_time share {share:.1%}"))
    return rows


if __name__ == "__main__":
    main()
