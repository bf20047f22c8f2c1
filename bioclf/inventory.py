"""What a suite will build, without building it: class counts and exact parameter counts.

Kept apart from the runner so that ``bioclf-exp list`` and ``--dry-run`` do not import the
training engine (its imports alone take seconds).
"""

from __future__ import annotations

from pathlib import Path

from bioclf.models import ParamCount, model_param_count
from bioclf.spec.loader import RunSpec
from bioclf.spec.schema import RunConfig


def num_classes_of(cfg: RunConfig, base_dir: Path | None = None) -> int:
    """Classes of the run's dataset without loading any image (folder names are enough)."""
    if cfg.data.num_classes is not None:
        return cfg.data.num_classes
    if cfg.data.source == "synthetic":
        return cfg.data.synthetic.num_classes
    from bioclf.data import build_datasets  # folder names only; no image is decoded

    _, _, classes, _ = build_datasets(cfg.data, base_dir=base_dir)
    return len(classes)


def param_counts(runs: list[RunSpec], base_dir: Path | None = None) -> dict[str, ParamCount]:
    """Exact parameter counts per config hash, on the meta device (no weights allocated)."""
    counts: dict[str, ParamCount] = {}
    classes: dict[str, int] = {}
    for run in runs:
        data_key = repr(run.config.data.model_dump(include={"source", "root", "synthetic"}))
        if data_key not in classes:
            classes[data_key] = num_classes_of(run.config, base_dir)
        counts[run.config_hash] = model_param_count(run.config.model, classes[data_key])
    return counts
