"""Soak: many variants in one process must leave memory, workers, descriptors and disk flat.

    python benchmarks/soak.py                 # 10 tiny variants, 2 loader workers, temp store
    python benchmarks/soak.py --variants 60 --workers 4 --keep best

Prints, after every run: peak and current RSS of this process, live child processes, open file
descriptors, and the store's size on disk; then the ratio of the RSS after the last run to that
after the first (target: within 10%), and how long `bioclf-exp list` and the report take on the
resulting store. Runs on CPU in a few minutes; nothing here needs a GPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children() -> int:
    me = os.getpid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    count += 1
            except (OSError, ValueError):
                pass
    return count


def du_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def write_spec(folder: Path, n: int, workers: int, keep: str, epochs: int) -> Path:
    spec = {
        "extends": str(REPO / "experiments" / "smoke.yaml"),
        "name": "soak",
        "data": {"synthetic": {"num_classes": 4, "train_per_class": 32, "val_per_class": 8, "image_size": 24},
                 "train_transforms": [{"name": "random_resized_crop", "size": 16, "scale": [0.8, 1.0]}],
                 "eval_transforms": [{"name": "resize", "size": 16}],
                 "batch_size": 16, "num_workers": workers},
        "model": {"head": {"hidden_dim": 16}},
        "train": {"epochs": epochs},
        "checkpoint": {"keep": keep},
        "baseline": "v00",
        "variants": {f"v{i:02d}": {"optimizer.lr": round(1e-3 * (1 + i / 10), 6)} for i in range(n)},
    }
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", default="best", choices=["best", "best+last", "all", "none"])
    args = parser.parse_args(argv)

    from bioclf.runner import run_suite
    from bioclf.spec import load_suite

    folder = Path(tempfile.mkdtemp(prefix="bioclf-soak-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    suite = load_suite(write_spec(folder, args.variants, args.workers, args.keep, args.epochs))
    rows = []
    print(f"{'run':>4} {'RSS MB':>8} {'children':>8} {'fds':>5} {'store MB':>9} {'s':>6}")
    for i, run in enumerate(suite.runs, 1):
        start = time.perf_counter()
        run_suite(suite, variants=[run.variant], tracking_uri=uri, quiet=True, echo=lambda s: None)
        row = (i, rss_mb(), children(), len(os.listdir("/proc/self/fd")), du_mb(folder), time.perf_counter() - start)
        rows.append(row)
        print(f"{row[0]:>4} {row[1]:>8.1f} {row[2]:>8} {row[3]:>5} {row[4]:>9.1f} {row[5]:>6.1f}", flush=True)
    first, last = rows[0][1], rows[-1][1]
    print(f"RSS after run {len(rows)} / after run 1: {last / first:.3f} (target <= 1.10)")

    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    for name, command in (("bioclf-exp list", [sys.executable, "-m", "bioclf.cli", "list", str(suite.path)]),
                          ("bioclf-report", [sys.executable, "-m", "analysis.cli", "--out", str(folder / "report")])):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        print(f"{name}: {time.perf_counter() - start:.1f} s (exit {done.returncode}) on {len(rows)} runs")
    print(f"store: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
