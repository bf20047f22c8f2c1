"""DataConfig -> datasets -> DataLoaders, reproducible for a given seed.

Reproducibility: the train loader shuffles with its own torch.Generator seeded by the run's
seed. With workers, each worker's torch RNG (which drives the v2 augmentations) is seeded by
DataLoader from that generator, and seed_worker passes it on to numpy and random. With
num_workers=0 the augmentations use torch's global RNG, which the trainer seeds.

Pipelines (``data.pipeline``, see bioclf.data.pipeline): ``reference`` runs the spec's
components per sample in the workers; ``device`` has the workers read files and decodes and
augments on the training device; ``auto`` picks ``device`` with CUDA. The loaders feed
``DataBundle.train_batch_transform`` / ``eval_batch_transform``, which the training loop calls
on every batch: ``images = data.train_batch_transform(images, device, memory_format)``
(for ``reference`` they only move the batch).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bioclf.data.cache import resized_paths
from bioclf.data.folds import FoldPlan, fold_datasets
from bioclf.data.pipeline import BatchStage, build_pipeline, resolve_pipeline
from bioclf.data.scan import ScanReport, apply_bad_image_policy, scan_dataset
from bioclf.data.folder import (  # noqa: F401 (resolve_root re-exported)
    ClassFolderDataset,
    FlatFolderDataset,
    list_class_folders,
    read_class_names,
    resolve_root,
)
from bioclf.data.synthetic import SyntheticDataset
from bioclf.errors import BioclfError

if TYPE_CHECKING:  # type only: keeps bioclf.data importable without bioclf.spec
    from bioclf.spec.schema import DataConfig


@dataclass
class DataBundle:
    train: DataLoader
    val: DataLoader
    classes: list[str]  # folder names (or "0".."K-1") in label order
    class_names: list[str]  # display names: from class_names_file, else = classes
    num_classes: int
    # ``(images, device, memory_format=None) -> normalised float32 batch on device``; call on
    # every batch (bioclf.data.pipeline.BatchStage).
    train_batch_transform: BatchStage = dataclasses.field(default_factory=BatchStage.move_only)
    eval_batch_transform: BatchStage = dataclasses.field(default_factory=BatchStage.move_only)
    resized_now: int = 0  # images the resize cache decoded and resized for this run (0: all reused)
    pipeline: str = "reference"  # data.pipeline as resolved for this device
    # where each component ran, e.g. {"train": "workers: read | device: decode, ...", "eval": ...}
    stages: dict[str, str] = dataclasses.field(default_factory=dict)
    fold_rows: list | None = None  # evaluation.folds: (path, label, fold) of every pooled image

    def eval_input(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The first validation image as the model sees it (1, C, H, W), on ``device``."""
        dataset = self.val.dataset
        batch = self.val.collate_fn([dataset[0]])
        return self.eval_batch_transform(batch[0], device)


def build_datasets(
    cfg: "DataConfig",
    base_dir: str | Path | None = None,
    exclude: Iterable[str] = frozenset(),
    pipeline: str = "reference",
    fold: FoldPlan | None = None,
):
    """(train_ds, val_ds, classes, class_names) for ``cfg``: train gets train_transforms, val eval_transforms.

    ``exclude``: absolute image paths to leave out (from apply_bad_image_policy / check_dataset_images).
    ``pipeline``: the resolved data.pipeline (resolve_pipeline); each dataset gets the matching
    ``batch_transform`` and ``plan`` attributes. No image is decoded here.
    ``fold`` (evaluation.folds): train and val pooled; train_ds is every fold but ``fold.fold``,
    val_ds that fold (bioclf.data.folds); the split's rows are ``train_ds.fold_rows``.
    """
    train_tf, train_batch, train_plan = build_pipeline(cfg.train_transforms, cfg.mean, cfg.std, pipeline)
    eval_tf, eval_batch, eval_plan = build_pipeline(cfg.eval_transforms, cfg.mean, cfg.std, pipeline)
    train_ds, val_ds, classes, class_names = _datasets(cfg, base_dir, exclude, train_tf, eval_tf)
    if fold is not None:  # each split also seen through the other split's transforms (no second listing)
        train_as_eval, val_as_train = _with_transform(train_ds, eval_tf), _with_transform(val_ds, train_tf)
        train_ds, val_ds = fold_datasets((train_ds, val_as_train), (train_as_eval, val_ds), fold)
    train_ds.batch_transform, val_ds.batch_transform = train_batch, eval_batch
    train_ds.plan, val_ds.plan = train_plan, eval_plan
    return train_ds, val_ds, classes, class_names


def _with_transform(dataset, transform):
    """The same listing through another transform (a shallow copy: the samples are shared)."""
    other = copy.copy(dataset)
    other.transform = transform
    return other


def _datasets(cfg, base_dir, exclude, train_tf, eval_tf):
    """(train split, val split, classes, class names), each split with the transform given for it."""
    if cfg.source == "synthetic":
        train_ds = SyntheticDataset(cfg.synthetic, "train", train_tf)
        val_ds = SyntheticDataset(cfg.synthetic, "val", eval_tf)
        return train_ds, val_ds, train_ds.classes, list(train_ds.classes)
    if cfg.source != "folder":
        raise BioclfError(f"data.source: unknown source {cfg.source!r}; valid: folder, synthetic")

    root = resolve_root(cfg, base_dir)
    # Compare the class folders before building: a val split lacking a class would otherwise
    # fail on its own (e.g. "missing 57"), hiding that the two splits disagree.
    _check_same_classes(root / "train", root / "val")
    exclude = frozenset(exclude)
    train_ds = ClassFolderDataset(root / "train", train_tf, exclude=exclude)
    val_ds = ClassFolderDataset(root / "val", eval_tf, exclude=exclude)
    class_names = list(train_ds.classes)
    if cfg.class_names_file:
        names_path = Path(cfg.class_names_file).expanduser()
        class_names = read_class_names(names_path if names_path.is_absolute() else root / names_path, len(class_names))
    return train_ds, val_ds, train_ds.classes, class_names


def _check_same_classes(train_dir: Path, val_dir: Path) -> None:
    train, val = set(list_class_folders(train_dir)), set(list_class_folders(val_dir))
    if train == val:
        return
    parts = []
    for label, names in (("only in train", train - val), ("only in val", val - train)):
        if names:
            ordered = sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
            parts.append(f"{label}: {', '.join(ordered[:5])}{f' ... ({len(names)} in all)' if len(names) > 5 else ''}")
    raise BioclfError(f"{train_dir.parent}: train and val have different class folders ({'; '.join(parts)})")


def build_loaders(
    cfg: "DataConfig",
    seed: int,
    device_type: str = "cpu",
    base_dir: str | Path | None = None,
    exclude: Iterable[str] = frozenset(),
    batch_transforms: bool = False,
    rank: int = 0,
    world: int = 1,
    fold: FoldPlan | None = None,
) -> DataBundle:
    """Train (shuffled, seeded) and val (in order) loaders for ``cfg``, without the ``exclude`` paths.

    ``rank`` / ``world`` (data-parallel training): this process's share. Train: a
    DistributedSampler (shuffled by ``seed`` and the epoch: call ``train.sampler.set_epoch``;
    padded so every rank has ``ceil(n / world)`` images and takes the same number of steps).
    Val: images ``rank, rank + world, ...``, no padding (the trainer gathers the shards).

    ``batch_transforms``: the caller applies ``bundle.train_batch_transform`` /
    ``eval_batch_transform`` to every batch, so data.pipeline may resolve to ``device``
    (without it, ``auto`` is ``reference`` and ``device`` is an error).
    With ``data.resize_cache`` the train images are read from the pre-resized copies
    (bioclf.data.cache), built here on first use. ``fold``: see build_datasets.
    """
    pipeline = resolve_pipeline(cfg.pipeline, device_type if batch_transforms else "cpu")
    if pipeline == "device" and not batch_transforms:
        raise BioclfError("data.pipeline: 'device' needs a caller that runs the batch stage (the trainer); "
                          "use 'reference' here")
    train_ds, val_ds, classes, class_names = build_datasets(cfg, base_dir, exclude=exclude, pipeline=pipeline,
                                                            fold=fold)
    resized_now = _use_resize_cache(cfg, train_ds, base_dir)
    if len(train_ds) < 2:
        raise BioclfError(f"data: the train split has {len(train_ds)} image(s); training needs at least 2")
    generator = torch.Generator()
    # Under DDP the generator seeds this rank's workers (their augmentation streams): one per rank.
    generator.manual_seed(int(seed) + 1_000_003 * rank)
    train_sampler = val_sampler = None
    per_rank = len(train_ds)
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        train_sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=int(seed))
        val_sampler = range(rank, len(val_ds), world)
        per_rank = len(train_sampler)
    # Drop the incomplete last batch when there is more than one batch: it could hold a
    # single image, which BatchNorm rejects in training, and shuffling means every image is
    # still seen across epochs. A train set of at most one batch is kept whole.
    drop_last = per_rank > cfg.batch_size
    train = _loader(train_ds, cfg, device_type, cfg.batch_size, shuffle=train_sampler is None, drop_last=drop_last,
                    generator=generator, sampler=train_sampler)
    val = _loader(val_ds, cfg, device_type, eval_batch_size(cfg), sampler=val_sampler)
    return DataBundle(train=train, val=val, classes=list(classes), class_names=class_names, num_classes=len(classes),
                      train_batch_transform=train_ds.batch_transform, eval_batch_transform=val_ds.batch_transform,
                      resized_now=resized_now, pipeline=pipeline,
                      stages={"train": train_ds.plan.describe(), "eval": val_ds.plan.describe()},
                      fold_rows=getattr(train_ds, "fold_rows", None))  # a Picked fold set carries its split


def _use_resize_cache(cfg: "DataConfig", train_ds, base_dir) -> int:
    short_side = cfg.resize_cache
    if not short_side or cfg.source != "folder":
        return 0
    mapping, resized_now = resized_paths(resolve_root(cfg, base_dir), [p for p, _ in train_ds.samples], short_side)
    read_paths = {p: q for p, q in mapping.items() if p != q}
    for part in getattr(train_ds, "parts", [train_ds]):  # a fold's training set reads both splits
        part.read_paths = read_paths
    return resized_now


def check_dataset_images(
    cfg: "DataConfig",
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple["ScanReport | None", frozenset[str]]:
    """Scan a folder dataset's images (cached) and apply ``cfg.on_bad_image``.

    Returns (report, exclude): pass ``exclude`` to build_loaders / build_datasets, and log
    ``report.bad_list_text()`` as an artifact when it is not empty. "error" with bad files
    raises a one-line BioclfError. Synthetic data: (None, frozenset()).
    """
    if cfg.source != "folder":
        return None, frozenset()
    root = resolve_root(cfg, base_dir)
    report = scan_dataset(root, cache_dir, use_cache=use_cache)
    # Training reads train/ and val/ only: a bad file in the unlabeled test/ split is for
    # `predict` to report, not a reason to stop an ablation suite.
    report = dataclasses.replace(report, bad=[b for b in report.bad if b[0].split("/", 1)[0] in ("train", "val")])
    return report, frozenset(apply_bad_image_policy(report, getattr(cfg, "on_bad_image", "error"), root))


def build_predict_loader(
    folder: str | Path, cfg: "DataConfig", batch_size: int | None = None, device_type: str = "cpu"
) -> tuple[DataLoader, BatchStage]:
    """A flat folder of unlabelled images through the run's eval pipeline (``data.pipeline``
    resolved for ``device_type``, as training resolved it): (loader, its batch stage). Batches are
    (images, indices into ``loader.dataset.samples``); pass each through the batch stage."""
    pipeline = resolve_pipeline(cfg.pipeline, device_type)
    transform, stage, _ = build_pipeline(cfg.eval_transforms, cfg.mean, cfg.std, pipeline)
    dataset = FlatFolderDataset(folder, transform)
    return _loader(dataset, cfg, device_type, batch_size or eval_batch_size(cfg)), stage


def eval_batch_size(cfg: "DataConfig") -> int:
    return cfg.eval_batch_size or 2 * cfg.batch_size


def num_workers(cfg: "DataConfig") -> int:
    """cfg.num_workers, capped at the CPU count (more workers than cores only adds overhead)."""
    return max(0, min(cfg.num_workers, os.cpu_count() or 1))


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a worker from its torch seed (which DataLoader derives from the
    loader's generator), so anything not using torch's RNG is reproducible too."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _loader(
    dataset: Dataset,
    cfg: "DataConfig",
    device_type: str,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    sampler=None,
) -> DataLoader:
    workers = num_workers(cfg)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        drop_last=drop_last,
        generator=generator,
        num_workers=workers,
        pin_memory=device_type == "cuda" and cfg.pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        # the device pipeline's samples are file bytes of any length: its own collate
        collate_fn=getattr(getattr(dataset, "transform", None), "collate", None),
    )
