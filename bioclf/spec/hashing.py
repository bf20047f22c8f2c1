"""The config hash: what makes two runs "the same config", stable across releases.

The rule (docs/tracking.md, "Config hash"):

- hashed: every field of RunConfig except UNHASHED_FIELDS (workers, device, progress bars...);
- a hashed field whose value equals its entry in HASH_DEFAULTS is left out. HASH_DEFAULTS is
  frozen: a field's entry is its default when the field was added, and it never changes. So
  adding a field whose default keeps the old behaviour changes no existing hash (every
  existing config has the table's value), and changing a field's default later changes
  exactly the hashes of configs that take the new default (they now differ from the table),
  while configs that set the old value explicitly keep theirs;
- the remaining {key: value} as sorted JSON, prefixed ``v2:``, sha256, 12 hex digits.

tests/test_hashing.py fails when a hashed field has no entry in HASH_DEFAULTS (add one: its
default, when it keeps the old behaviour) or when a default moved away from its entry without
being listed in CHANGED_DEFAULTS (which records the move; the entry keeps the old value).

Version 1 (up to the release that added this module) hashed every hashed field, defaults
included, so each new field changed every hash. ``legacy_hash`` recomputes that hash for a
config, over the fields version 1 knew (HASH_DEFAULTS' keys); the runner recognises finished
runs tagged with it and re-tags them (bioclf.runner, one-time mapping).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bioclf.spec.schema import UNHASHED_FIELDS, RunConfig

HASH_VERSION = 2

# Frozen: the default of every hashed field when it was added (for the fields of version 1:
# their defaults in the last version-1 release). Never edit an entry; append one per new field.
# The first V1_FIELD_COUNT entries are the fields version 1 hashed.
HASH_DEFAULTS: dict[str, Any] = {
    "data.source": "synthetic",
    "data.root": None,
    "data.num_classes": None,
    "data.class_names_file": None,
    "data.synthetic.num_classes": 10,
    "data.synthetic.train_per_class": 40,
    "data.synthetic.val_per_class": 10,
    "data.synthetic.test_images": 0,
    "data.synthetic.image_size": 64,
    "data.synthetic.seed": 0,
    "data.synthetic.difficulty": 0.0,
    "data.train_transforms": [{"name": "random_resized_crop"}, {"name": "horizontal_flip"}],
    "data.eval_transforms": [{"name": "resize", "size": 256}, {"name": "center_crop", "size": 224}],
    "data.on_bad_image": "error",
    "data.pipeline": "fast",
    "data.resize_cache": None,
    "data.mean": [0.485, 0.456, 0.406],
    "data.std": [0.229, 0.224, 0.225],
    "data.batch_size": 64,
    "data.eval_batch_size": None,
    "model.backbone": "resnext101_32x8d",
    "model.pretrained": False,
    "model.head.hidden_dim": 512,
    "model.head.dropout_in": 0.3,
    "model.head.dropout_hidden": 0.5,
    "model.head.batchnorm": True,
    "model.max_params": 100000000,
    "model.channels_last": True,
    "loss.name": "cross_entropy",
    "loss.label_smoothing": 0.1,
    "optimizer.name": "adamw",
    "optimizer.lr": 0.001,
    "optimizer.weight_decay": 0.0001,
    "optimizer.momentum": 0.9,
    "optimizer.nesterov": False,
    "optimizer.betas": [0.9, 0.999],
    "scheduler.name": "plateau",
    "scheduler.monitor": "val_loss",
    "scheduler.mode": "min",
    "scheduler.factor": 0.2,
    "scheduler.patience": 3,
    "scheduler.threshold": 0.0001,
    "scheduler.min_lr": 0.0,
    "scheduler.warmup_epochs": 0,
    "scheduler.step_size": 10,
    "scheduler.gamma": 0.1,
    "early_stopping.enabled": True,
    "early_stopping.monitor": "val_loss",
    "early_stopping.mode": "min",
    "early_stopping.patience": 10,
    "early_stopping.min_delta": 1e-05,
    "train.epochs": 50,
    "train.seed": 42,
    "train.amp": "auto",
    "train.grad_clip_norm": None,
    "train.select_best": "val_acc",
    "train.deterministic": False,
    "train.sync_batchnorm": False,
    "evaluation.tta": "none",
    "data.mixup": None,
    "data.cutmix": None,
    "train.ema": None,
    "data.taxonomy": None,
    "data.synthetic.hierarchy": None,
    "model.head.rank_weights": None,
    "loss.soft_labels_beta": 10.0,
    "loss.hxe_alpha": 0.1,
    "evaluation.folds": None,
    "evaluation.fold_seed": 0,
    "evaluation.fold": None,
}

# Defaults that moved away from their HASH_DEFAULTS entry: key -> (entry, new default, why).
CHANGED_DEFAULTS: dict[str, tuple[Any, Any, str]] = {
    "data.pipeline": ("fast", "auto", "the fused per-sample pipeline was removed; auto = device on CUDA, "
                      "reference on a CPU"),
}

V1_FIELD_COUNT = 58


def config_dict(cfg: RunConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def hashed_values(cfg: RunConfig) -> dict[str, Any]:
    """Every hashed field of ``cfg``, flattened with dots, as JSON values. ``data.taxonomy`` is
    hashed by the file's content, not its path: an edited tree trains differently, a moved one
    does not."""
    values = {k: v for k, v in flatten(config_dict(cfg)).items() if k not in UNHASHED_FIELDS}
    if values.get("data.taxonomy") is not None:
        values["data.taxonomy"] = file_digest(values["data.taxonomy"])
    return values


def file_digest(path: str) -> str:
    """``sha256:<16 hex digits>`` of a file's bytes; the path itself when it cannot be read (the
    check before training then says what is wrong with it)."""
    try:
        with open(path, "rb") as handle:
            return "sha256:" + hashlib.sha256(handle.read()).hexdigest()[:16]
    except OSError:
        return path


def _digest(values: dict[str, Any], prefix: str = "") -> str:
    blob = prefix + json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def config_diff(cfg: RunConfig) -> dict[str, Any]:
    """The hashed values that differ from HASH_DEFAULTS (what the hash is made of)."""
    return {k: v for k, v in hashed_values(cfg).items() if k not in HASH_DEFAULTS or HASH_DEFAULTS[k] != v}


def hash_config(cfg: RunConfig) -> str:
    """The 12-hex-digit config hash (version 2; rule in the module docstring)."""
    return _digest(config_diff(cfg), f"v{HASH_VERSION}:")


def legacy_hash(cfg: RunConfig) -> str | None:
    """The version-1 hash a run of this config was tagged with, or None when version 1 could
    not have written this config (a field added since holds a value other than its entry)."""
    values = hashed_values(cfg)
    v1 = tuple(HASH_DEFAULTS)[:V1_FIELD_COUNT]
    if any(k not in v1 and v != HASH_DEFAULTS.get(k) for k, v in values.items()):
        return None
    # a field removed since: version 1 saw it at its default
    return _digest({k: values.get(k, HASH_DEFAULTS[k]) for k in v1})
