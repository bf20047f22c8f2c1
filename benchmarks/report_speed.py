"""How long bioclf-report takes on a big suite: N fake runs x E epochs, no training.

Writes a suite into a temporary SQLite store the way bioclf does (tags, params, per-epoch
metrics via log_batch, history.csv, predictions of 100 classes x 3 images, classes.csv), then
times reading it back (``analysis.store``) and building the report (``analysis.build``).

    python benchmarks/report_speed.py                  # 50 variants x 1 seed x 50 epochs
    python benchmarks/report_speed.py --no-history     # exercise the get_metric_history fallback
    python benchmarks/report_speed.py --variants 25 --seeds 2 --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake-store writer lives with the tests that use it

from test_report_fakestore import fresh_store, write_fake_suite  # noqa: E402

from analysis.build import BuildOptions, build_report  # noqa: E402
from analysis.store import StoreReader  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=int, default=50)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--no-history", action="store_true", help="no history.csv: read metric histories instead")
    p.add_argument("--formats", default="png,pdf", help="figure formats (default png,pdf)")
    p.add_argument("--workers", type=int, default=None, help="figure processes (default: one per CPU)")
    p.add_argument("--keep", type=Path, help="write the store and report here instead of a temp folder")
    args = p.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bioclf-bench-"))
    try:
        uri = fresh_store(root / "store")
        t = time.perf_counter()
        write_fake_suite(uri, name="bench", variants=args.variants, seeds=tuple(range(args.seeds)),
                         epochs=args.epochs, num_classes=args.classes, per_class=3,
                         history_csv=not args.no_history, drops=(20, 35), early_stop={"v03": 41})
        n_runs = args.variants * args.seeds
        print(f"store: {n_runs} runs x {args.epochs} epochs written in {time.perf_counter() - t:.1f} s ({uri})")

        t = time.perf_counter()
        reader = StoreReader(uri)
        data = reader.load("bench", reader.latest_suite("bench"))
        load_s = time.perf_counter() - t
        print(f"load:  {load_s:.2f} s  ({len(data.histories)} history rows, notes: {len(data.notes)})")

        t = time.perf_counter()
        options = BuildOptions(figure_formats=tuple(args.formats.split(",")), workers=args.workers)
        report = build_report(data, root / "report", options)
        build_s = time.perf_counter() - t
        n_fig = sum(1 for f in report.files if f.parent.name == "figures")
        print(f"build: {build_s:.2f} s  ({len(report.files)} files, {n_fig} figure files) -> {report.index}")
        print(f"total: {load_s + build_s:.2f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
