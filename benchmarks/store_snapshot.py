"""What a suite wrote to its tracking store, as comparable JSON: the check that a refactor
changed no behaviour.

    python benchmarks/store_snapshot.py experiments/smoke.yaml before.json
    ... change the code ...
    python benchmarks/store_snapshot.py experiments/smoke.yaml after.json --compare before.json

Runs the spec into a fresh SQLite store in a temporary folder, then records per run (parent and
children, keyed by role / variant / seed): tags, params, every metric's steps and values, and the
artifact paths. What differs between two identical runs is left out: run ids, times, paths of
the temporary store, and the timing and memory metrics (measured, not computed).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURED = re.compile(r"(time|_per_s|_ms_|rss|gpu_mem|checkpoint_mb)")
VOLATILE_TAGS = {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
                 "mlflow.runName", "mlflow.parentRunId", "bioclf.spec"}

COMPUTED_ARTIFACTS = {"config.yaml", "classes.csv", "predictions/val.csv", "suite.json"}


def snapshot(spec: Path) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        subprocess.run([sys.executable, "-m", "bioclf.cli", "run", str(spec), "--tracking-uri", uri],
                       check=True, stdout=subprocess.DEVNULL)
        client = MlflowClient(uri)
        out = {}
        for exp in client.search_experiments():
            for run in client.search_runs([exp.experiment_id]):
                tags = run.data.tags
                key = "/".join([tags.get("bioclf.role", "?"), tags.get("bioclf.variant", ""), tags.get("bioclf.seed", "")])
                metrics = {m: [(h.step, round(h.value, 6)) for h in client.get_metric_history(run.info.run_id, m)]
                           for m in sorted(run.data.metrics) if not MEASURED.search(m)}
                out[key] = {
                    "status": run.info.status,
                    "run_name": run.info.run_name,
                    "tags": {k: v for k, v in sorted(tags.items()) if k not in VOLATILE_TAGS},
                    "params": dict(sorted(run.data.params.items())),
                    "metrics": metrics,
                    "measured_metrics": sorted(m for m in run.data.metrics if MEASURED.search(m)),
                    "artifacts": {path: _digest(client, run.info.run_id, path)
                                  for path in sorted(_artifacts(client, run.info.run_id))},
                }
        return out


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for info in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return found


def _digest(client, run_id: str, path: str) -> str:
    """sha256 of an artifact whose content is computed (not measured, not a pickle with times)."""
    if path not in COMPUTED_ARTIFACTS:
        return "-"
    import hashlib
    from mlflow.artifacts import download_artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=client._tracking_client.tracking_uri)
        return hashlib.sha256(Path(local).read_bytes()).hexdigest()[:16]


def compare(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two snapshots (empty: the same)."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            where = f"{prefix}/{key}" if prefix else str(key)
            if key not in a or key not in b:
                diffs.append(f"{where}: only in {'after' if key not in a else 'before'}")
            else:
                diffs += compare(a[key], b[key], where)
        return diffs
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"[:300]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="an earlier snapshot: print the differences, exit 1 if any")
    args = parser.parse_args()
    snap = json.loads(json.dumps(snapshot(args.spec)))  # tuples -> lists, as read back
    args.out.write_text(json.dumps(snap, indent=1, sort_keys=True))
    print(f"{len(snap)} run(s) -> {args.out}")
    if args.compare:
        diffs = compare(json.loads(args.compare.read_text()), snap)
        print("\n".join(diffs) if diffs else "no differences")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
