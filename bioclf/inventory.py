"""What a suite will build, without building it: class counts, exact parameter counts, the
parameter budget, and the dry run's description.

Imports no torch and no MLflow (bioclf.models.catalog counts by formula, class folders are
listed by name): ``bioclf-exp list`` and ``run --dry-run`` answer in a fraction of a second.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bioclf.data.folder import count_classes
from bioclf.errors import BioclfError
from bioclf.models.catalog import ParamCount, check_param_budget, head_rank_sizes, param_count
from bioclf.spec.loader import RunSpec, Suite
from bioclf.spec.schema import RunConfig, synthetic_ranks


def num_classes_of(cfg: RunConfig, base_dir: Path | None = None) -> int:
    """Classes of the run's dataset without loading any image (folder names are enough)."""
    if cfg.data.num_classes is not None:
        return cfg.data.num_classes
    if cfg.data.source == "synthetic":
        return cfg.data.synthetic.num_classes
    return count_classes(cfg.data, base_dir)


def param_counts(runs: list[RunSpec], base_dir: Path | None = None) -> dict[str, ParamCount]:
    """Exact parameter counts per config hash (by formula: no model is built)."""
    counts: dict[str, ParamCount] = {}
    classes: dict[str, int] = {}
    for run in runs:
        data_key = repr(run.config.data.model_dump(include={"source", "root", "synthetic"}))
        if data_key not in classes:
            classes[data_key] = num_classes_of(run.config, base_dir)
        counts[run.config_hash] = param_count(run.config.model, classes[data_key],
                                              extra_outputs(run.config, classes[data_key]))
    return counts


def extra_outputs(cfg: RunConfig, num_classes: int) -> tuple[int, ...]:
    """The outputs a hierarchical head adds (model.head.rank_weights), per rank in tree order:
    counted from the taxonomy CSV's columns (csv module, no pandas) or the generated tree. The
    file is checked against the classes before training (bioclf.runner.check_taxonomies)."""
    weights = cfg.model.head.rank_weights
    if not weights:
        return ()
    data = cfg.data
    if data.taxonomy is None:
        sizes, n = {}, num_classes
        for rank, size in zip(synthetic_ranks(data.synthetic.hierarchy)[1:], data.synthetic.hierarchy):
            n = -(-n // size)
            sizes[rank] = n
        ranks = tuple(sizes)
    else:
        try:
            with open(data.taxonomy, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except FileNotFoundError:
            raise BioclfError(f"data.taxonomy: {data.taxonomy}: no such taxonomy file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BioclfError(f"data.taxonomy: cannot read {data.taxonomy} ({exc.__class__.__name__})") from None
        ranks = tuple(name.strip() for name in rows[0]) if rows else ()
        sizes = {rank: len({row[i].strip() for row in rows[1:] if len(row) > i}) for i, rank in enumerate(ranks)}
    return head_rank_sizes(weights, sizes, ("class", *[r for r in ranks if r != "class"]))


def checked_param_counts(runs: list[RunSpec], base_dir: Path | None = None) -> dict[str, ParamCount]:
    """param_counts, with every run checked against its model.max_params (BioclfError naming it)."""
    counts = param_counts(runs, base_dir)
    for run in runs:
        try:
            check_param_budget(run.config.model, counts[run.config_hash])
        except BioclfError as exc:
            raise BioclfError(f"variant {run.variant}: {exc}") from None
    return counts


def describe_runs(suite: Suite, runs: list[RunSpec], counts: dict[str, ParamCount]) -> str:
    """Variants with their diff from the baseline and their parameter counts (--dry-run)."""
    lines = [f"suite {suite.name}: {len(runs)} run(s), baseline {suite.baseline}, seeds {suite.seeds}"]
    seen: set[str] = set()
    for run in runs:
        if run.variant in seen:
            continue
        seen.add(run.variant)
        diff = suite.diff_from_baseline(run.variant)
        mark = " (baseline)" if run.variant == suite.baseline else ""
        lines.append(f"  {run.variant}{mark}  params {counts[run.config_hash].total:,}  hash {run.config_hash}")
        for key, (base, mine) in diff.items():
            lines.append(f"      {key}: {base!r} -> {mine!r}")
    return "\n".join(lines)


def describe_dry_run(suite: Suite, variants: list[str] | None = None) -> str:
    """What ``run --dry-run`` prints: every selected run checked (budget, class folders) and described."""
    runs = suite.select(variants)
    return describe_runs(suite, runs, checked_param_counts(runs, suite.path.parent))
