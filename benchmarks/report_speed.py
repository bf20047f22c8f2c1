"""How long ``bioclf-report`` takes on a suite: N fake runs x E epochs, no training.

Writes a suite into a temporary SQLite store the way bioclf does (tags, params, per-epoch
metrics via log_batch, history.csv, predictions of 100 classes x 3 images, classes.csv), then
times the whole ``bioclf-report`` process, side by side with ``python -c "import mlflow"`` (the
floor of any call that reads the store through MLflow; the ratio carries over between machines,
the seconds do not), in turns:

1. first call: an empty report folder, every figure and table drawn;
2. second call: nothing changed in the store: the report is kept as it is;
3. after one run changed (its history.csv rewritten): what depends on it is redrawn.

Wall and CPU seconds (user + system of the process and its workers) are both shown: on a shared
machine the wall time moves with the load, the CPU time much less.

    python benchmarks/report_speed.py                     # 50 variants x 1 seed x 50 epochs
    python benchmarks/report_speed.py --variants 3 --epochs 10
    python benchmarks/report_speed.py --reps 3 --pdf      # PNG + PDF; median and range of 3 turns
    python benchmarks/report_speed.py --no-history        # exercise the get_metric_history fallback
    python benchmarks/report_speed.py --breakdown         # also: load and build in this process
    python benchmarks/report_speed.py --tiny              # 3 x 5 epochs x 10 classes: does it run
    python benchmarks/report_speed.py --before /tmp/old   # also time another checkout's first call,
                                                          # in turns with this one, on the same store
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake-store writer lives with the tests that use it

from test_report_fakestore import fresh_store, write_fake_suite  # noqa: E402

STEPS = ("import mlflow", "first call", "second call (unchanged)", "one run changed")
BEFORE = "first call, --before checkout"


def _timed(command: list[str], cwd: Path = REPO) -> tuple[float, float, str]:
    """(wall s, CPU s of the command and its children, stderr) of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


def _change_one_run(uri: str, info: dict, turn: int) -> None:
    """Rewrite the history.csv of the second variant's first run (as a rerun that resumed it
    would), with other values at each turn."""
    from mlflow.tracking import MlflowClient

    run = info["runs"][(info["variants"][1], 0)]
    history = run["history"].assign(val_loss=run["history"]["val_loss"] * (1 + 0.01 * (turn + 1)))
    MlflowClient(tracking_uri=uri).log_text(run["run_id"], history.to_csv(index=False), "history.csv")


def _turn(uri: str, out: Path, cli_args: list[str], info: dict, turn: int,
          before: Path | None = None) -> dict[str, tuple[float, float]]:
    report = [sys.executable, "-m", "analysis.cli", "--tracking-uri", uri, "--out", str(out), *cli_args]
    times = {"import mlflow": _timed([sys.executable, "-c", "import mlflow"])[:2]}
    # With --before, the other checkout's first call on the same store too, the two in alternating
    # order from turn to turn (a machine warming up or loading up favours neither).
    order = [(BEFORE, before), ("first call", REPO)] if before is not None else [("first call", REPO)]
    order = order if turn % 2 == 0 else order[::-1]
    for step, cwd in order:
        shutil.rmtree(out, ignore_errors=True)
        times[step] = _timed(report, cwd=cwd)[:2]
    if order[-1][0] != "first call":  # the second call below must find this checkout's report
        shutil.rmtree(out, ignore_errors=True)
        _timed(report)
    times["second call (unchanged)"] = _timed(report)[:2]
    _change_one_run(uri, info, turn)
    wall, cpu, stderr = _timed(report)
    times["one run changed"] = (wall, cpu)
    said = [line.split(": ", 2)[-1] for line in stderr.splitlines() if "figure(s)" in line or "table(s)" in line]
    print(f"  after the change: {'; '.join(said)}")
    return times


def _table(turns: list[dict[str, tuple[float, float]]]) -> None:
    floor = statistics.median(t["import mlflow"][0] for t in turns)
    print("\n| step | wall s, median (range) | CPU s | wall / import mlflow |\n|---|---:|---:|---:|")
    for step in [s for s in (STEPS[0], BEFORE, *STEPS[1:]) if s in turns[0]]:
        walls = [t[step][0] for t in turns]
        cpus = [t[step][1] for t in turns]
        spread = f" ({min(walls):.2f}-{max(walls):.2f})" if len(turns) > 1 else ""
        print(f"| {step} | {statistics.median(walls):.2f}{spread} | {statistics.median(cpus):.2f} | "
              f"{statistics.median(walls) / floor:.2f} |")


def _breakdown(uri: str, out: Path, args) -> None:
    """The previous measurement: reading and building in this process (no CLI, no cache hits)."""
    from analysis.build import BuildOptions, build_report
    from analysis.store import StoreReader

    started = time.perf_counter()
    reader = StoreReader(uri)
    data = reader.load("bench", reader.latest_suite("bench"), all_predictions=True)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    options = BuildOptions(figure_formats=("png", "pdf") if args.pdf else ("png",), workers=args.workers)
    report = build_report(data, out, options)
    build_s = time.perf_counter() - started
    n_fig = sum(1 for f in report.files if f.parent.name == "figures")
    print(f"\nin process: load {load_s:.2f} s ({len(data.histories)} history rows), build {build_s:.2f} s "
          f"({len(report.files)} files, {n_fig} figure files)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=int, default=50)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--no-history", action="store_true", help="no history.csv: read metric histories instead")
    p.add_argument("--pdf", action="store_true", help="figures as PNG and PDF (default: PNG, as the CLI)")
    p.add_argument("--workers", type=int, default=None, help="figure processes (default: one per CPU)")
    p.add_argument("--reps", type=int, default=1, help="turns of the three calls (median and range)")
    p.add_argument("--breakdown", action="store_true", help="also time load and build in this process")
    p.add_argument("--tiny", action="store_true", help="3 variants x 5 epochs x 10 classes, one turn")
    p.add_argument("--keep", type=Path, help="write the store and reports here instead of a temp folder")
    p.add_argument("--before", type=Path, metavar="DIR", help="another checkout of this repository (e.g. a "
                   "git worktree of an older commit): its first call is timed too, in turns with this one's")
    args = p.parse_args()
    if args.tiny:
        args.variants, args.seeds, args.epochs, args.classes, args.reps = 3, 1, 5, 10, 1

    root = args.keep or Path(tempfile.mkdtemp(prefix="bioclf-bench-"))
    try:
        uri = fresh_store(root / "store")
        started = time.perf_counter()
        info = write_fake_suite(uri, name="bench", variants=args.variants, seeds=tuple(range(args.seeds)),
                                epochs=args.epochs, num_classes=args.classes, per_class=3,
                                history_csv=not args.no_history, drops=(20, 35), early_stop={"v03": 41})
        n_runs = args.variants * args.seeds
        print(f"store: {n_runs} runs x {args.epochs} epochs written in {time.perf_counter() - started:.1f} s ({uri})")
        cli_args = (["--pdf"] if args.pdf else []) + ([f"--workers={args.workers}"] if args.workers else [])
        turns = []
        for i in range(args.reps):
            print(f"turn {i + 1}/{args.reps}")
            turns.append(_turn(uri, root / "reports", cli_args, info, i, args.before))
        _table(turns)
        if args.breakdown:
            _breakdown(uri, root / "report-in-process", args)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
