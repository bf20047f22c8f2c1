"""What full MLflow tracking costs a training epoch, against a no-op logger.

Trains the same small config (generated data, ResNet18 from scratch, CPU or GPU) repeatedly
through ``bioclf.engine.train``: once per repetition with ``NullLogger`` and once with the
MLflow logger of a real run (``Tracker.start_variant`` on a fresh SQLite store, params
logged, per-epoch metrics, summary, artifacts), the two interleaved (alternating which goes
first). Reported:

- per-epoch overhead: the time spent inside the MLflow logger's ``log_epoch`` (one batched
  request per epoch) divided by the epoch time; this is what every epoch pays. Target <= 2%;
- per-run cost: run creation + params, the summary and the artifacts (config, history,
  predictions, checkpoint), paid once per run, shown in seconds;
- end to end: the medians of ``train()`` wall time with each logger and their ratio (noisier:
  the difference is the per-run cost plus noise, at this config's tiny epoch length).

    python benchmarks/tracking_overhead.py                # 3 repetitions x 3 epochs
    python benchmarks/tracking_overhead.py --epochs 5 --reps 5 --per-class 128
    python benchmarks/tracking_overhead.py --tiny         # seconds: the smoke test's mode
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET = 0.02


class TimedLogger:
    """Wraps a RunLogger and accumulates the seconds spent in each of its methods."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = {"log_epoch": 0.0, "log_summary": 0.0, "log_artifact": 0.0, "log_tags": 0.0}
        self.epochs = 0

    def _timed(self, name, *args, **kwargs):
        start = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - start

    def log_epoch(self, epoch, metrics):
        self.epochs += 1
        return self._timed("log_epoch", epoch, metrics)

    def log_summary(self, metrics):
        return self._timed("log_summary", metrics)

    def log_artifact(self, path, artifact_dir=None):
        return self._timed("log_artifact", path, artifact_dir)

    def log_tags(self, tags):
        return self._timed("log_tags", tags)


def tiny_config(epochs: int, per_class: int, image_size: int, device: str):
    from bioclf.spec.schema import RunConfig

    return RunConfig.model_validate({
        "data": {
            "source": "synthetic",
            "synthetic": {"num_classes": 8, "train_per_class": per_class, "val_per_class": max(4, per_class // 4),
                          "image_size": image_size + image_size // 8, "seed": 0},
            "train_transforms": [{"name": "random_resized_crop", "size": image_size, "scale": [0.7, 1.0]},
                                 "horizontal_flip"],
            "eval_transforms": [{"name": "resize", "size": image_size}],
            "batch_size": 32,
            "num_workers": 0,
        },
        "model": {"backbone": "resnet18", "pretrained": False, "head": {"hidden_dim": 64}},
        "train": {"epochs": epochs, "seed": 0, "progress": False, "device": device},
        "early_stopping": {"enabled": False},
    })


def run_once(cfg, logger, workdir: Path) -> tuple[float, list[float]]:
    from bioclf.engine import train

    start = time.perf_counter()
    result = train(cfg, logger, workdir, quiet=True)
    return time.perf_counter() - start, [float(t) for t in result.history["epoch_time_s"]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each logger (default 3)")
    p.add_argument("--per-class", type=int, default=64, help="training images per class, 8 classes (default 64)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--tiny", action="store_true", help="1 repetition x 1 epoch of a very small config")
    args = p.parse_args(argv)
    if args.tiny:
        args.epochs, args.reps, args.per_class, args.image_size = 1, 1, 8, 16

    from bioclf.engine.logger import NullLogger
    from bioclf.spec.loader import config_dict, flatten
    from bioclf.tracking import Tracker

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    cfg = tiny_config(args.epochs, args.per_class, args.image_size, args.device)
    scratch = Path(tempfile.mkdtemp(prefix="bioclf-bench-tracking-"))
    try:
        start = time.perf_counter()
        tracker = Tracker(f"sqlite:///{scratch / 'store' / 'mlflow.db'}")
        exp = tracker.experiment_id("tracking_overhead")
        parent = tracker.start_suite(exp, name="tracking_overhead", suite_hash="bench", spec_path=scratch / "spec.yaml",
                                     baseline="v", variants=["v"])
        store_s = time.perf_counter() - start
        params = flatten(config_dict(cfg))
        null_s, mlflow_s, null_epochs, mlflow_epochs, timed = [], [], [], [], []
        run_setup = []
        warm = 0 if args.tiny else 1  # repetition 0 warms up (imports, allocator, caches)
        for rep in range(1 - warm, args.reps + 1):
            order = ("null", "mlflow") if rep % 2 else ("mlflow", "null")
            for kind in order:
                workdir = scratch / f"{kind}-{rep}"
                if kind == "null":
                    seconds, epochs = run_once(cfg, NullLogger(), workdir)
                    if rep:
                        null_s.append(seconds)
                        null_epochs.extend(epochs)
                else:
                    t = time.perf_counter()
                    inner = tracker.run_logger(tracker.start_variant(
                        exp, parent, variant="v", seed=rep, config_hash=f"h{rep}", suite_hash="bench", params=params))
                    setup = time.perf_counter() - t
                    logger = TimedLogger(inner)
                    seconds, epochs = run_once(cfg, logger, workdir)
                    t = time.perf_counter()
                    tracker.finish(inner.run_id)
                    setup += time.perf_counter() - t
                    if rep:
                        mlflow_s.append(seconds + setup)
                        mlflow_epochs.extend(epochs)
                        timed.append(logger)
                        run_setup.append(setup)
                shutil.rmtree(workdir, ignore_errors=True)

        epoch_s = statistics.median(mlflow_epochs)
        per_epoch_log = sum(t.seconds["log_epoch"] for t in timed) / sum(t.epochs for t in timed)
        per_run = statistics.median(
            s + t.seconds["log_summary"] + t.seconds["log_artifact"] + t.seconds["log_tags"]
            for s, t in zip(run_setup, timed))
        overhead = per_epoch_log / epoch_s
        end_to_end = statistics.median(mlflow_s) / statistics.median(null_s)
        from bioclf.engine.device import resolve_device

        print(f"config: resnet18 from scratch, {8 * args.per_class} train images of {args.image_size} px, batch 32, "
              f"{args.epochs} epoch(s), device {resolve_device(args.device)}; {args.reps} interleaved repetition(s) "
              f"per logger; "
              f"store created in {store_s:.1f} s")
        print(f"epoch time (median):            NullLogger {statistics.median(null_epochs):.3f} s, "
              f"MLflow {epoch_s:.3f} s")
        print(f"MLflow log_epoch per epoch:     {per_epoch_log * 1000:.1f} ms  ->  {overhead:.2%} of an epoch "
              f"({'OK' if overhead <= TARGET else 'OVER'} the {TARGET:.0%} target)")
        print(f"MLflow per run (once):          {per_run:.2f} s (run + params, summary, artifacts)")
        print(f"train() wall, median:           NullLogger {statistics.median(null_s):.2f} s, "
              f"MLflow {statistics.median(mlflow_s):.2f} s  (x{end_to_end:.3f}, includes the per-run cost)")
        return {"per_epoch_overhead": overhead, "per_epoch_log_s": per_epoch_log, "epoch_s": epoch_s,
                "per_run_s": per_run, "end_to_end_ratio": end_to_end}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
