"""Load a spec: YAML -> ``extends:`` chain -> variants x seeds -> validated, hashed run configs.

A spec file holds the top-level keys ``extends, name, description, baseline, seeds, variants``
plus any config section of ``RunConfig`` (``data, model, loss, ...``). Inheritance deep-merges
mappings and replaces lists (and ``variants`` as a whole). A variant is a mapping of dotted keys
(``loss.label_smoothing: 0.0``) or nested mappings, applied on top of the merged base; CLI
``--set KEY=VALUE`` overrides are applied last, to every variant.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bioclf.errors import BioclfError
from bioclf.spec.hashing import config_dict, flatten, hash_config, legacy_hash  # noqa: F401 (re-exported)
from bioclf.spec.schema import CONFIG_SECTIONS, RunConfig

SPEC_KEYS = ("extends", "name", "description", "baseline", "seeds", "variants")
DEFAULT_VARIANT = "base"

DIFF_TEXT_LIMIT = 250  # a tag value shows in full in the runs table up to about this


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: a variant at one seed, with its resolved config."""

    variant: str
    seed: int
    config: RunConfig
    config_hash: str
    # the version-1 hash of the same config (bioclf.spec.hashing.legacy_hash), or None
    legacy_hash: str | None = None

    @property
    def fold(self) -> int | None:
        """The fold this run holds out (evaluation.folds), or None."""
        return self.config.evaluation.fold

    @property
    def name(self) -> str:
        """``variant seed s`` (``fold k`` appended for a fold run): how consoles name it."""
        return f"{self.variant} seed {self.seed}" + (f" fold {self.fold}" if self.fold is not None else "")


@dataclass
class Suite:
    """A loaded spec: the ordered variants (table rows), the seeds, and every run's config."""

    path: Path
    name: str
    description: str
    baseline: str
    seeds: list[int]
    variants: dict[str, dict[str, Any]]
    runs: list[RunSpec] = field(default_factory=list)
    suite_hash: str = ""

    @property
    def variant_names(self) -> list[str]:
        return list(self.variants)

    def runs_of(self, variant: str) -> list[RunSpec]:
        return [r for r in self.runs if r.variant == variant]

    def select(self, variants: list[str] | None) -> list[RunSpec]:
        """Runs of the named variants (all when None), in spec order; unknown names are an error."""
        if not variants:
            return list(self.runs)
        for name in variants:
            if name not in self.variants:
                raise BioclfError(f"--variant {name!r} is not in {self.path}; valid: {', '.join(self.variants)}")
        return [r for r in self.runs if r.variant in variants]

    def diff_from_baseline(self, variant: str) -> dict[str, tuple[Any, Any]]:
        """Flattened keys whose value differs from the baseline: key -> (baseline, variant)."""
        base = flatten(config_dict(self.runs_of(self.baseline)[0].config))
        mine = flatten(config_dict(self.runs_of(variant)[0].config))
        return {k: (base.get(k), v) for k, v in mine.items() if base.get(k) != v and k != "train.seed"}

    def diff_text(self, variant: str, limit: int = DIFF_TEXT_LIMIT) -> str:
        """The diff from the baseline in one short line (tag bioclf.diff): ``key old→new; ...``,
        or ``baseline``; cut at ``limit`` characters with "…"."""
        if variant == self.baseline:
            return "baseline"
        diff = self.diff_from_baseline(variant)
        text = "; ".join(f"{key} {_short(old)}→{_short(new)}" for key, (old, new) in diff.items()) or "no change"
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


# ---------------------------------------------------------------- YAML and inheritance


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BioclfError(f"{path}: spec file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BioclfError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BioclfError(f"{path}: a spec must be a mapping of keys, not {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; everything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_dotted(mapping: dict[str, Any]) -> dict[str, Any]:
    """``{"loss.label_smoothing": 0}`` -> ``{"loss": {"label_smoothing": 0}}`` (recursively)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise BioclfError(f"override key {key!r} must be a non-empty string")
        value = expand_dotted(value) if isinstance(value, dict) else value
        parts = key.split(".")
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        out = deep_merge(out, {parts[0]: nested})
    return out


def load_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The spec with its ``extends:`` chain merged in (parents first)."""
    path = path.resolve()
    if path in seen:
        cycle = " -> ".join(str(p.name) for p in (*seen, path))
        raise BioclfError(f"{path}: extends cycle: {cycle}")
    raw = read_yaml(path)
    _check_top_level(raw, path)
    parent_ref = raw.pop("extends", None)
    raw = _absolutise_data_paths(raw, path.parent)
    if parent_ref is None:
        return raw
    if not isinstance(parent_ref, str):
        raise BioclfError(f"{path}: extends: must be a path to a spec file")
    parent = load_chain(path.parent / parent_ref, (*seen, path))
    # A child spec that defines variants replaces its parent's table rather than adding rows,
    # and the parent's baseline (a row of the old table) goes with it.
    if "variants" in raw:
        parent.pop("variants", None)
        parent.pop("baseline", None)
    return deep_merge(parent, raw)


def _check_top_level(raw: dict[str, Any], path: Path) -> None:
    valid = SPEC_KEYS + CONFIG_SECTIONS
    for key in raw:
        if key not in valid:
            raise BioclfError(f"{path}: unknown key {key!r}{_did_you_mean(str(key), valid)}")


DATA_PATHS = ("root", "taxonomy")  # data.* paths read relative to the spec file that names them


def _absolutise_data_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    # Relative data paths are relative to the file that names them, so specs can move with
    # their dataset and a spec extended from another folder still finds the data.
    data = raw.get("data")
    for key in DATA_PATHS:
        if isinstance(data, dict) and isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            raw = copy.deepcopy(raw)
            raw["data"][key] = str((base_dir / data[key]).resolve())
            data = raw["data"]
    return raw


# ---------------------------------------------------------------- validation


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _fields_at(loc: tuple) -> list[str]:
    """The valid field names of the model that holds the key at ``loc``."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def format_validation_error(exc: ValidationError, where: str) -> str:
    """The first problem of a pydantic error as one line naming the dotted key path."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {key!r}{_did_you_mean(str(loc[-1]), _fields_at(loc))}"
        valid = _fields_at(loc)
        if valid:
            msg += f"; valid keys here: {', '.join(valid)}"
    else:
        text = err["msg"].removeprefix("Value error, ")
        msg = f"{key}: {text}" if key else text
        if err["type"] not in ("value_error", "assertion_error") and "input" in err:
            msg += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    return f"{where}: {msg}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def validate_config(raw: dict[str, Any], where: str) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise BioclfError(format_validation_error(exc, where)) from None
    except BioclfError as exc:  # raised by a registry lookup inside a validator
        raise BioclfError(f"{where}: {exc}") from None


# ---------------------------------------------------------------- hashing and flattening


def parse_set_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=2", "model.head.hidden_dim=null"]`` -> dotted mapping (values are YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BioclfError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise BioclfError(f"--set {item!r}: the value is not valid YAML") from None
    return out


# ---------------------------------------------------------------- the suite


def load_suite(
    path: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> Suite:
    """Load, inherit, expand and validate a spec. Everything that can be wrong with a spec is
    raised here, as a BioclfError naming the file and key, before anything trains."""
    path = Path(path)
    merged = load_chain(path)
    where = str(path)
    name = merged.pop("name", None) or path.stem
    description = merged.pop("description", "") or ""
    variants_raw, baseline_raw, seeds_raw = (merged.pop(key, None) for key in ("variants", "baseline", "seeds"))
    if not isinstance(name, str):
        raise BioclfError(f"{where}: name: must be a string")
    variants = _variants(variants_raw, where)
    baseline = _baseline(baseline_raw, variants, where)
    cli = _absolutise_data_paths(expand_dotted(overrides or {}), Path.cwd())
    seeds = _seeds(seeds if seeds is not None else seeds_raw, merged, cli, where)
    runs = [fold_run for vname, vover in variants.items() for seed in seeds
            for fold_run in _per_fold(_run_spec(vname, vover, seed, merged, cli, path))]
    suite_blob = json.dumps([name, [(r.variant, r.seed, r.config_hash) for r in runs]])
    return Suite(
        path=path,
        name=name,
        description=str(description).strip(),
        baseline=baseline,
        seeds=list(seeds),
        variants=variants,
        runs=runs,
        suite_hash=hashlib.sha256(suite_blob.encode()).hexdigest()[:12],
    )


def _variants(raw, where: str) -> dict[str, dict[str, Any]]:
    """``variants:`` as name -> overrides (none given: one variant, the base config)."""
    raw = raw or {DEFAULT_VARIANT: {}}
    if not isinstance(raw, dict):
        raise BioclfError(f"{where}: variants: must be a mapping of variant name -> overrides")
    variants: dict[str, dict[str, Any]] = {}
    for vname, vover in raw.items():
        if vover is None:
            vover = {}
        if not isinstance(vover, dict):
            raise BioclfError(f"{where}: variants.{vname}: must be a mapping of overrides (or {{}})")
        variants[str(vname)] = vover
    return variants


def _baseline(raw, variants: dict, where: str) -> str:
    """``baseline:``, else the first variant; it must be one of them."""
    baseline = str(raw) if raw is not None else next(iter(variants))
    if baseline not in variants:
        raise BioclfError(f"{where}: baseline: {baseline!r} is not a variant; valid: {', '.join(variants)}")
    return baseline


def _seeds(seeds, merged: dict, cli: dict, where: str) -> list[int]:
    """``--seeds`` or ``seeds:``, else the base config's ``train.seed``; distinct integers."""
    if seeds is None:
        seeds = [validate_config(deep_merge(merged, cli), where).train.seed]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise BioclfError(f"{where}: seeds: must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise BioclfError(f"{where}: seeds: {seeds} has repeats")
    return seeds


def _per_fold(run: RunSpec) -> list[RunSpec]:
    """A run with ``evaluation.folds: K`` (and no fold of its own) is K runs, one per held-out fold."""
    evaluation = run.config.evaluation
    if evaluation.folds is None or evaluation.fold is not None:
        return [run]
    out = []
    for fold in range(evaluation.folds):
        cfg = run.config.model_copy(update={"evaluation": evaluation.model_copy(update={"fold": fold})})
        out.append(RunSpec(run.variant, run.seed, cfg, hash_config(cfg), None))
    return out


def _run_spec(vname: str, vover: dict, seed: int, merged: dict, cli: dict, path: Path) -> RunSpec:
    """One variant x seed: base, then the variant's overrides, then ``--set``, then the seed."""
    over = _absolutise_data_paths(expand_dotted(vover), path.parent.resolve())
    raw = deep_merge(deep_merge(deep_merge(merged, over), cli), {"train": {"seed": seed}})
    cfg = validate_config(raw, f"{path}: variants.{vname}" if vover else str(path))
    return RunSpec(vname, seed, cfg, hash_config(cfg), legacy_hash(cfg))
