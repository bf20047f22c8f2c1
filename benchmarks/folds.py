"""How much narrower do the ablation table's intervals get with K-fold out-of-fold evaluation?

The same pair of variants (smoke.yaml's full head against a plain linear head), judged twice on
the same generated data: once on the val split (the usual way), once with ``evaluation.folds: 5``
(train + val pooled, every labelled image predicted once by a model that did not train on it).
Both suites go into one SQLite store and are read back the way ``bioclf-report`` reads them
(analysis.folds pools the fold runs); the script prints, side by side, the images scored, the
baseline's accuracy interval, the Δ with its paired interval, the p-value and the verdict.

With a val split of n_v images and a pool of n images, interval widths shrink by about
sqrt(n / n_v) (here 5x the images: about 2.2x narrower).

    python benchmarks/folds.py                 # 8 classes, 40 train + 10 val per class, 5 folds, 3 epochs
    python benchmarks/folds.py --folds 10      # more folds: each trains on more of the pool
    python benchmarks/folds.py --store DIR     # keep the store (a rerun skips finished runs)
    python benchmarks/folds.py --tiny          # 2 folds, 1 epoch, tiny images: does it run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPEC = REPO / "experiments" / "smoke.yaml"
VARIANTS = ["full_head", "linear_head"]
DATA = {"data": {"synthetic": {"num_classes": 8, "train_per_class": 40, "val_per_class": 10}}}
TINY = {"train": {"epochs": 1}, "data": {"synthetic": {"num_classes": 4, "train_per_class": 10, "val_per_class": 3,
                                                       "image_size": 24},
                                         "train_transforms": [{"name": "random_resized_crop", "size": 16}],
                                         "eval_transforms": [{"name": "resize", "size": 16}]}}


def train(uri: str, name: str, overrides: dict) -> float:
    """Seconds to run the pair of variants under experiment ``name`` with ``overrides``."""
    import dataclasses

    from bioclf.runner import run_suite
    from bioclf.spec import load_suite

    suite = dataclasses.replace(load_suite(SPEC, overrides=overrides), name=name)
    started = time.perf_counter()
    result = run_suite(suite, variants=VARIANTS, tracking_uri=uri, quiet=True, echo=lambda line: None)
    if result.failed:
        raise SystemExit(f"{len(result.failed)} run(s) failed: {result.failed[0].error}")
    return time.perf_counter() - started


def judge(uri: str, name: str) -> dict:
    """The ablation table's statistics of the linear head against the full head, as the report has them."""
    from analysis import tables
    from analysis.folds import pool_folds
    from analysis.store import StoreReader

    reader = StoreReader(uri)
    data = pool_folds(reader.load(name, reader.latest_suite(name), all_predictions=True))
    sig = tables.ablation_significance(data.runs, data.predictions, data.baseline, data.variants).set_index("variant")
    base, other = sig.loc[VARIANTS[0]], sig.loc[VARIANTS[1]]
    return {"images": int(base["n_images"]), "acc": base["acc_mean"], "acc_ci": (base["acc_ci_low"], base["acc_ci_high"]),
            "delta": other["delta"], "delta_ci": (other["delta_ci_low"], other["delta_ci_high"]),
            "p": other["p_holm"], "verdict": other["verdict"]}


def report(results: dict[str, dict]) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["| Evaluation | Images scored | Baseline acc (%) [95% CI] | CI width (pp) | Δ linear − full (pp) "
             "[95% CI] | Δ CI width (pp) | p (Holm) | Verdict |", "|---|---:|---|---:|---|---:|---:|---|"]
    for label, r in results.items():
        (lo, hi), (dlo, dhi) = r["acc_ci"], r["delta_ci"]
        lines.append(f"| {label} | {r['images']} | {pct(r['acc'])} [{pct(lo)}, {pct(hi)}] | {100 * (hi - lo):.1f} | "
                     f"{100 * r['delta']:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] | {100 * (dhi - dlo):.1f} | "
                     f"{r['p']:.3f} | {r['verdict']} |")
    first, last = list(results.values())[0], list(results.values())[-1]
    ratio = (first["delta_ci"][1] - first["delta_ci"][0]) / max(last["delta_ci"][1] - last["delta_ci"][0], 1e-12)
    lines.append(f"\nΔ interval {ratio:.1f}x narrower with folds ({last['images']} images scored instead of "
                 f"{first['images']}; sqrt of the ratio: {(last['images'] / first['images']) ** 0.5:.1f}x).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", type=int, default=5, help="K of the out-of-fold suite (default 5)")
    p.add_argument("--store", type=Path, help="store folder to keep (default: a temporary one)")
    p.add_argument("--tiny", action="store_true", help="2 folds, 1 epoch, tiny data: does it run")
    args = p.parse_args(argv)
    folds = 2 if args.tiny else args.folds
    base = TINY if args.tiny else DATA
    with tempfile.TemporaryDirectory(prefix="bioclf-folds-bench-") as tmp:
        store = args.store or Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        seconds = {"val split": train(uri, "folds_bench_val", base),
                   f"{folds} folds": train(uri, f"folds_bench_{folds}", {**base, "evaluation": {"folds": folds}})}
        results = {"val split": judge(uri, "folds_bench_val"), f"{folds} folds": judge(uri, f"folds_bench_{folds}")}
    print(report(results))
    print("\ntraining time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    return {"results": results, "seconds": seconds}


if __name__ == "__main__":
    main()
