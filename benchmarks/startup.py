"""How long the everyday commands take, side by side with bare Python, torch and MLflow imports.

Each command runs as a fresh process (what a user waits for), ``--reps`` times, interleaved
so machine load hits them alike; the median wall time is shown, and the two targets:
``--help`` / ``validate`` / ``run --dry-run`` within 0.5 s of bare Python (they import neither
torch nor MLflow), ``list`` of the 10-row augmentation ablation within 1.5x of importing MLflow
alone (it reads a local SQLite store without MLflow, bioclf.tracking.sqlite_view; parameter counts
come by formula). MLflow's own floor for reading the store is shown beside it: a fresh process
that opens an ``MlflowClient`` on the same SQLite store and runs one search.

    python benchmarks/startup.py                 # 5 repetitions
    python benchmarks/startup.py --tiny          # 1 repetition (the smoke test's mode)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = str(REPO / "experiments" / "aug_ablation.yaml")
# num_classes is in the spec; the data folder need not exist for these commands
CLI = [sys.executable, "-m", "bioclf.cli"]


def commands(store: str) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "import mlflow": [sys.executable, "-c", "import mlflow"],
        # the floor of any command that reads the store through MLflow: its client on the store, one query
        "MLflow client, one search": [sys.executable, "-c", "from mlflow.tracking import MlflowClient; "
                                      f"MlflowClient({store!r}).search_experiments()"],
        "bioclf-exp --help": CLI + ["--help"],
        "bioclf-exp validate": CLI + ["validate", SPEC],
        "bioclf-exp run --dry-run": CLI + ["run", SPEC, "--dry-run"],
        "bioclf-exp list": CLI + ["list", SPEC, "--tracking-uri", store],
    }


def time_once(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="one repetition")
    args = p.parse_args(argv)
    reps = 1 if args.tiny else args.reps
    with tempfile.TemporaryDirectory(prefix="bioclf-bench-startup-") as scratch:
        store = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        todo = commands(store)
        time_once(todo["bioclf-exp list"])  # creates the store's tables once, as a user's store has them
        times: dict[str, list[float]] = {name: [] for name in todo}
        for rep in range(reps):
            names = list(todo)
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                times[name].append(time_once(todo[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    bare, mlflow_s = median["python -c pass"], median["import mlflow"]
    print(f"{reps} repetition(s), median wall time per fresh process (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    for name, seconds in median.items():
        note = ""
        if name in ("bioclf-exp --help", "bioclf-exp validate", "bioclf-exp run --dry-run"):
            note = f"+{seconds - bare:.2f} s over bare Python (target <= 0.5 s)"
        elif name == "bioclf-exp list":
            note = (f"x{seconds / mlflow_s:.2f} of importing MLflow (target <= 1.5); "
                    f"x{seconds / median['MLflow client, one search']:.2f} of MLflow's own floor")
        elif name == "MLflow client, one search":
            note = f"x{seconds / mlflow_s:.2f} of importing MLflow"
        print(f"  {name:28s} {seconds:6.2f} s  {note}")
    return median


if __name__ == "__main__":
    main()
