"""Do the taxonomy-aware rows make better mistakes, and at what top-1 cost?

Trains experiments/taxonomy_smoke.yaml (the rows of taxonomy_ablation.yaml at toy size, on
generated data whose 12 classes sit in 4 genera of 3 and 2 families, siblings alike) for several
seeds into a SQLite store, then reads it back the way ``bioclf-report`` does and prints, per row
as trained and re-ranked by CRM: top-1, mistake severity, hdist@1 / @5, and each row's Δ vs
cross-entropy as trained with its paired 95% interval and Holm verdict (analysis.hierarchy).

    python benchmarks/taxonomy.py                    # 6 rows x 3 seeds (about 15 min on 2 cores)
    python benchmarks/taxonomy.py --seeds 0,1,2,3,4  # more seeds: narrower intervals
    python benchmarks/taxonomy.py --store DIR        # keep the store (rerun: finished runs are skipped)
    python benchmarks/taxonomy.py --tiny             # 2 rows, 1 seed, 1 epoch: does it run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPEC = REPO / "experiments" / "taxonomy_smoke.yaml"
TINY = {"train": {"epochs": 1}, "data": {"synthetic": {"train_per_class": 8, "val_per_class": 6, "image_size": 24},
                                         "train_transforms": [{"name": "random_resized_crop", "size": 16}],
                                         "eval_transforms": [{"name": "resize", "size": 16}]}}


def train(store: Path, seeds: list[int], tiny: bool) -> tuple[str, str, float]:
    """(tracking URI, experiment, seconds) after the suite ran into ``store``."""
    from bioclf.runner import run_suite
    from bioclf.spec import load_suite

    uri = f"sqlite:///{store / 'mlflow.db'}"
    suite = load_suite(SPEC, seeds=seeds, overrides=TINY if tiny else None)
    started = time.perf_counter()
    result = run_suite(suite, variants=["cross_entropy", "hxe_a0.5"] if tiny else None, tracking_uri=uri,
                       quiet=True, echo=lambda line: None)
    if result.failed:
        raise SystemExit(f"{len(result.failed)} run(s) failed: {result.failed[0].error}")
    return uri, suite.name, time.perf_counter() - started


def measure(uri: str, experiment: str):
    """(summary, deltas) frames of analysis.hierarchy for the latest suite run of ``experiment``."""
    from analysis import hierarchy
    from analysis.store import StoreReader
    from bioclf.taxonomy import parse_taxonomy

    reader = StoreReader(uri)
    data = reader.load(experiment, reader.latest_suite(experiment), all_predictions=True)
    tree = parse_taxonomy(data.logged_taxonomy, data.class_folders, "the runs' taxonomy.csv")
    scores, _ = hierarchy.collect(data.runs, data.val_probs, data.predictions, tree)
    return (hierarchy.summary_frame(scores, tree, data.variants),
            hierarchy.delta_frame(scores, data.baseline, data.variants), data.baseline)


def _cell(row, key: str, scale: float = 1.0, digits: int = 2) -> str:
    if key + "_delta" not in row or row[key + "_delta"] != row[key + "_delta"]:
        return "—"
    verdict = row[key + "_verdict"]
    mark = {"better": " better", "worse": " worse"}.get(verdict, "")
    f = f"{{:+.{digits}f}}"
    return (f"{f.format(row[key + '_delta'] * scale)} [{f.format(row[key + '_low'] * scale)}, "
            f"{f.format(row[key + '_high'] * scale)}]{mark}")


def report(summary, deltas, baseline: str) -> str:
    lines = ["| Row | Ranking | Seeds | Top-1 (%) | Severity | hdist@1 | hdist@5 | Δ top-1 (pp) | Δ severity | "
             "Δ hdist@1 | Δ hdist@5 |", "|---|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    by_row = deltas.set_index(["variant", "ranking"]) if not deltas.empty else None
    for _, r in summary.iterrows():
        d = by_row.loc[(r["variant"], r["ranking"])] if by_row is not None and (r["variant"], r["ranking"]) in \
            by_row.index else {}
        lines.append(f"| {r['variant']} | {r['ranking']} | {r['n_seeds']} | {100 * r['class_acc']:.1f} | "
                     f"{r['mistake_severity']:.2f} | {r['hdist@1']:.2f} | {r['hdist@5']:.2f} | "
                     f"{_cell(d, 'acc', 100, 1)} | {_cell(d, 'mistake_severity')} | {_cell(d, 'hdist@1')} | "
                     f"{_cell(d, 'hdist@5')} |")
    lines.append(f"\nΔ: each row minus {baseline} as trained, paired per image over the seeds both have; 95% "
                 "bootstrap interval; 'better' / 'worse': Holm-corrected p < 0.05 per measure, with 3 seeds or "
                 "more the larger of the image-level and the across-seeds p (lower severity and hdist are better).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--store", type=Path, help="store folder to keep (default: a temporary one)")
    p.add_argument("--tiny", action="store_true", help="2 rows, 1 seed, 1 epoch, tiny images: does it run")
    args = p.parse_args(argv)
    seeds = [0] if args.tiny else [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="bioclf-taxonomy-bench-") as tmp:
        store = args.store or Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        uri, experiment, seconds = train(store, seeds, args.tiny)
        summary, deltas, baseline = measure(uri, experiment)
    text = report(summary, deltas, baseline)
    print(f"{experiment}: {summary['variant'].nunique()} rows x {len(seeds)} seed(s), trained in {seconds:.0f} s\n")
    print(text)
    return {"summary": summary, "deltas": deltas, "seconds": seconds}


if __name__ == "__main__":
    main()
