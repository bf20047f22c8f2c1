"""Training-pipeline throughput per CPU core: the report's pipeline against bioclf's pipelines.

Every pipeline runs the report's train augmentation (experiments/base.yaml, Table 1):
RandomResizedCrop(224, scale 0.7-1) -> horizontal flip -> rotation 20 -> ColorJitter(.15, .15,
.15, hue .1) -> RandomAffine(translate .1, scale .9-1.1) -> ToTensor -> Normalize ->
RandomErasing(p .2, scale .02-.1), from the JPEG file to a collated, normalised batch of 64:

  report v1               torchvision.transforms v1 on PIL images, ImageFolder's loader (the report)
  reference v2            bioclf data.pipeline: reference (build_transform: torchvision v2, PIL
                          kernels); what ``auto`` runs on a CPU
  reference + cache       the same, reading data.resize_cache copies (shorter side 1.15 x 224)
  device on the CPU       data.pipeline: device with the CPU as the device: decode, crop and every
                          batch kernel in this process (what a CPU run that names it gets)
  device: workers' share  data.pipeline: device with a GPU: what is left to the loader workers
                          (read the file, parse its JPEG header); the rest runs on the GPU
  ... + cache             the same, reading the resize cache's copies

Each pipeline runs in this process on one core (torch threads = 1), per sample then collated
into batches of 64. Throughput is images per CPU-second of this process
(``time.process_time``: what a DataLoader worker core delivers; less sensitive to other load
than wall time). The pipelines take turns on chunks of 16 images, so changes in the machine's
load hit them alike; that is repeated ``--reps`` times. Shown: the median over repetitions of
images/s and of the ratio to the report pipeline, and the range of that ratio (how much the
load still moved it). ``--workers W`` also times real DataLoaders with W worker processes
(wall clock).

    python benchmarks/data_pipeline.py                       # 200 generated 500x375 JPEGs
    python benchmarks/data_pipeline.py --folder /path/to/any/images --n 400
    python benchmarks/data_pipeline.py --workers 2 --markdown
    python benchmarks/data_pipeline.py --tiny                # seconds: the smoke test's mode
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, features  # noqa: E402

from bioclf.data.cache import resized_paths  # noqa: E402
from bioclf.data.pipeline import ReadEncoded, build_pipeline  # noqa: E402
from bioclf.data.images import is_image_file  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BATCH = 64


def report_items(size: int) -> list[dict]:
    """The report's train pipeline as a bioclf spec list (experiments/base.yaml)."""
    return [
        {"name": "random_resized_crop", "size": size, "scale": [0.7, 1.0]},
        {"name": "horizontal_flip", "p": 0.5},
        {"name": "rotation", "degrees": 20},
        {"name": "color_jitter", "brightness": 0.15, "contrast": 0.15, "saturation": 0.15, "hue": 0.1},
        {"name": "affine", "degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
        {"name": "random_erasing", "p": 0.2, "scale": [0.02, 0.1]},
    ]


def report_v1(size: int) -> Callable:
    """The report's pipeline exactly as it was written: torchvision v1 on PIL images."""
    from torchvision import transforms as T

    compose = T.Compose([
        T.RandomResizedCrop(size, scale=(0.7, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomRotation(20),
        T.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1),
        T.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
        T.RandomErasing(p=0.2, scale=(0.02, 0.1)),
    ])
    return _ReportSample(compose)


class _ReportSample:
    def __init__(self, compose):
        self.compose = compose

    def __call__(self, path):
        with open(path, "rb") as handle:  # torchvision.datasets.folder.pil_loader
            image = Image.open(handle)
            return self.compose(image.convert("RGB"))


# --- images ---------------------------------------------------------------------------------------

def make_photo(rng: np.random.Generator, width: int = 500, height: int = 375) -> Image.Image:
    """A photo-like image: 1/f ("pink") noise in three correlated colour channels (natural
    images' spectrum, so JPEG sizes and decode cost are photo-like), a few smooth objects with
    soft edges, fine sensor noise."""
    # The fields are drawn at half resolution (4x cheaper FFTs) and upsampled; the finest
    # octave comes back from the texture and noise below.
    h2, w2 = max(8, height // 2), max(8, width // 2)
    fy = np.fft.fftfreq(h2)[:, None]
    fx = np.fft.rfftfreq(w2)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius ** 1.1
        spectrum[0, 0] = 0
        field = np.fft.irfft2(spectrum, s=(h2, w2)).astype(np.float32)
        field = np.asarray(Image.fromarray(field / (field.std() + 1e-9)).resize((width, height), Image.BICUBIC))
        channels.append(field)
    mix = (rng.normal(0, 1, (3, 3)) * 0.25 + np.eye(3) * 0.5).astype(np.float32)
    image = np.stack(channels, -1) @ (mix.T * 0.12) + rng.uniform(0.3, 0.7, 3).astype(np.float32)
    image += rng.standard_normal((height, width, 1), dtype=np.float32) * 0.03  # fine luminance texture
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(width / 16, width / 3), rng.uniform(height / 16, height / 3)
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        alpha = (1.0 / (1.0 + np.exp(np.minimum((inside - 1.0) * 12.0, 50.0))))[..., None]
        colour = rng.uniform(0, 1, 3).astype(np.float32) - 0.2
        image = image * (1 - 0.6 * alpha) + alpha * colour
    image += rng.standard_normal(image.shape, dtype=np.float32) * 0.015
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def _write_photo(job: tuple[str, int, int, int, int]) -> str:
    target, width, height, seed, index = job
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    make_photo(np.random.default_rng([seed, index]), width, height).save(target, "JPEG", quality=90)
    return target


def generate_jpegs(folder: Path, n: int, width: int, height: int, seed: int = 0, classes: int = 2,
                   split: str = "train") -> list[str]:
    """``n`` photo-like JPEGs (quality 90, 4:2:0 like most camera and web JPEGs) in
    ``folder/<split>/<class>/`` (``classes`` folders, round robin): a class-folder dataset the
    resize cache can fingerprint. One seed per image, so the files do not depend on how many
    processes write them (~40 ms per 500 px image: 4096 of them take minutes on one core,
    seconds on 16)."""
    jobs = [(str(folder / split / str(i % classes) / f"{i:05d}.jpg"), width, height, seed, i) for i in range(n)]
    if n < 64:
        return [_write_photo(job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        return list(pool.map(_write_photo, jobs, chunksize=16))


def list_folder(folder: Path, n: int) -> list[str]:
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise SystemExit(f"{folder}: no image files")
    step = max(1, len(files) // n)
    return files[::step][:n]


# --- timing ---------------------------------------------------------------------------------------

class _Decoded:
    """A per-PIL-image transform, taking a path (load_rgb, as the loader does)."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, path):
        from bioclf.data.images import load_rgb

        return self.transform(load_rgb(path))


def collate_encoded(samples: list):
    """The device pipeline's collate, for samples without labels."""
    return ReadEncoded.collate([(sample, 0) for sample in samples])[0]


class Variant:
    def __init__(self, name: str, sample: Callable, batch: Callable | None, paths: list[str], note: str = "",
                 collate: Callable = torch.stack):
        self.name, self.sample, self.batch, self.paths, self.note = name, sample, batch, paths, note
        self.collate = collate

    def run(self, indices) -> float:
        """CPU seconds for these images: sample each, collate, batch stage."""
        start = time.process_time()
        batch = self.collate([self.sample(self.paths[i]) for i in indices])
        if self.batch is not None:
            self.batch(batch)
        return time.process_time() - start


CHUNK = 16  # images per turn: pipelines take turns every ~0.1-0.2 s, so load changes hit them alike


def measure(variants: list[Variant], reps: int) -> dict[str, dict]:
    """Per repetition and pipeline: images per CPU-second, and the ratio to the first pipeline.
    The pipelines take turns on chunks of the same images (rotating who goes first)."""
    n = len(variants[0].paths)
    chunks = [range(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]
    for v in variants:  # warm-up: imports, first-call allocations, page cache
        v.run(range(min(4, n)))
    rows = {v.name: {"ips": [], "ratio": []} for v in variants}
    turn = 0
    for _ in range(reps):
        seconds = dict.fromkeys(rows, 0.0)
        for chunk in chunks:
            turn += 1
            for v in variants[turn % len(variants):] + variants[:turn % len(variants)]:
                seconds[v.name] += v.run(chunk)
        for v in variants:
            rows[v.name]["ips"].append(n / seconds[v.name])
            rows[v.name]["ratio"].append(seconds[variants[0].name] / seconds[v.name])
    return rows


def measure_loaders(variants: list[Variant], workers: int, reps: int) -> dict[str, list[float]]:
    """Wall-clock images/s of DataLoaders with ``workers`` processes over the same files."""
    from torch.utils.data import DataLoader, Dataset

    class Files(Dataset):
        def __init__(self, paths, transform):
            self.paths, self.transform = paths, transform

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            return self.transform(self.paths[i])

    out: dict[str, list[float]] = {v.name: [] for v in variants}
    loaders = {v.name: DataLoader(Files(v.paths, v.sample), batch_size=BATCH, num_workers=workers,
                                  persistent_workers=True, prefetch_factor=4,
                                  collate_fn=None if v.collate is torch.stack else v.collate) for v in variants}
    for v in variants:  # start the workers
        for _ in loaders[v.name]:
            break
    for _ in range(reps):
        for v in variants:
            start, n = time.perf_counter(), 0
            for batch in loaders[v.name]:
                if v.batch is not None:
                    batch = v.batch(batch)
                n += len(batch)
            out[v.name].append(n / (time.perf_counter() - start))
    del loaders
    return out


# --- report -----------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import torchvision

    return (f"{cpu}; {usable} usable of {os.cpu_count()} CPUs; load average {load}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"Pillow {Image.__version__} (libjpeg-turbo {features.version('jpg') or '?'})")


def describe(paths: list[str]) -> str:
    sizes = [Image.open(p).size for p in paths]
    short = sorted(min(s) for s in sizes)
    long_ = sorted(max(s) for s in sizes)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    return (f"{len(paths)} images, shorter side {short[0]}-{short[-1]} (median {short[len(short) // 2]}), "
            f"longer side {long_[0]}-{long_[-1]} (median {long_[len(long_) // 2]}), "
            f"{mb / len(paths) * 1000:.0f} kB/image")


def table(rows: dict, variants: list[Variant], markdown: bool) -> str:
    head = ["pipeline", "images/s per core", "x report", "range over repetitions", "note"]
    lines = []
    for v in variants:
        r = rows[v.name]
        lines.append([v.name, f"{statistics.median(r['ips']):.0f}", f"{statistics.median(r['ratio']):.2f}",
                      f"{min(r['ratio']):.2f}-{max(r['ratio']):.2f}", v.note])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 4) else '>'}{w}}}" for i, w in enumerate(widths)).rstrip()
    return "\n".join([fmt.format(*head)] + [fmt.format(*cells) for cells in lines])


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, help="any folder of images (searched recursively); default: generated JPEGs")
    p.add_argument("--n", type=int, default=200, help="images per pass (default 200)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    p.add_argument("--size", type=int, default=224, help="crop size (default 224)")
    p.add_argument("--width", type=int, default=500, help="generated image width (default 500)")
    p.add_argument("--height", type=int, default=375, help="generated image height (default 375)")
    p.add_argument("--cache-side", type=float, default=1.15,
                   help="resize cache shorter side / crop size (default 1.15)")
    p.add_argument("--workers", type=int, default=0, help="also time DataLoaders with this many workers")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--tiny", action="store_true", help="a few small images, one repetition (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.reps, args.size, args.width, args.height = 6, 1, 32, 120, 90

    # One core per pipeline; the caller's thread count and RNG states are restored at the end
    # (main() also runs inside the test suite, where they would leak into later tests).
    threads, torch_rng, python_rng = torch.get_num_threads(), torch.get_rng_state(), random.getstate()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bioclf-bench-data-"))
    try:
        if args.folder:
            paths = list_folder(args.folder, args.n)
            source = f"{args.folder}"
        else:
            t = time.perf_counter()
            paths = generate_jpegs(scratch / "images", args.n, args.width, args.height, args.seed)
            source = f"generated photo-like JPEGs ({time.perf_counter() - t:.1f} s to generate)"
        print(f"machine: {machine()}")
        print(f"images:  {source}: {describe(paths)}")

        items = report_items(args.size)
        short = max(1, round(args.cache_side * args.size))
        t_cpu, t = time.process_time(), time.perf_counter()
        # The cache is keyed by the listing of a dataset root; the benchmark's root is the
        # common folder of the files (nothing is written there).
        root = Path(os.path.commonpath(paths)) if len(paths) > 1 else Path(paths[0]).parent
        mapping, built = resized_paths(root, paths, short, cache_root=scratch / "cache", workers=1)
        cache_cpu, cache_wall = time.process_time() - t_cpu, time.perf_counter() - t
        cached = [mapping[p] for p in paths]
        n_small = sum(1 for p in paths if mapping[p] == p)
        print(f"cache:   shorter side {short} px: {built} images resized in {cache_wall:.1f} s "
              f"({cache_cpu / max(1, built) * 1000:.1f} ms CPU each, once per dataset); "
              f"{n_small} already small enough (read from the original)")

        reference, _, _ = build_pipeline(items, MEAN, STD, "reference")
        read, stage, _ = build_pipeline(items, MEAN, STD, "device")
        variants = [
            Variant("report v1", report_v1(args.size), None, paths, "torchvision v1, PIL, per-sample Normalize"),
            Variant("reference v2", _Decoded(reference), None, paths, "pipeline: reference (auto on a CPU)"),
            Variant("reference + cache", _Decoded(reference), None, cached, f"resize_cache: {short}"),
            Variant("device on the CPU", read, lambda b: stage(b, "cpu"), paths,
                    "pipeline: device, CPU as the device", collate_encoded),
            Variant("device: workers' share", read, None, paths, "read + header; the rest on the GPU",
                    collate_encoded),
            Variant("device: workers' share + cache", read, None, cached, f"resize_cache: {short}",
                    collate_encoded),
        ]
        rows = measure(variants, args.reps)
        print(f"\nper core: {len(paths)} images x {args.reps} interleaved repetitions, crop {args.size}, batch {BATCH}")
        print(table(rows, variants, args.markdown))
        result = {"rows": rows, "machine": machine(), "images": describe(paths)}
        if args.workers > 0:
            chosen = [variants[0], variants[1], variants[2], variants[4]]
            loaders = measure_loaders(chosen, args.workers, max(1, args.reps // 2))
            print(f"\nDataLoader, {args.workers} worker process(es), wall clock:")
            base = max(loaders[chosen[0].name])
            for v in chosen:
                ips = max(loaders[v.name])
                print(f"  {v.name:32s} {ips:7.0f} images/s  {ips / args.workers:6.0f} per worker  x{ips / base:.2f}")
            result["loaders"] = loaders
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        torch.set_num_threads(threads)
        torch.set_rng_state(torch_rng)
        random.setstate(python_rng)


if __name__ == "__main__":
    main()
