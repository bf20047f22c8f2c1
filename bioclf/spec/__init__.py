"""Specs: load YAML, inherit, expand variants x seeds, validate strictly, hash."""

from bioclf.spec.loader import (
    RunSpec,
    Suite,
    config_dict,
    deep_merge,
    expand_dotted,
    flatten,
    hash_config,
    load_suite,
    parse_set_overrides,
)
from bioclf.spec.schema import RunConfig

__all__ = [
    "RunConfig",
    "RunSpec",
    "Suite",
    "config_dict",
    "deep_merge",
    "expand_dotted",
    "flatten",
    "hash_config",
    "load_suite",
    "parse_set_overrides",
]
