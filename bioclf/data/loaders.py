"""DataConfig -> datasets -> DataLoaders, reproducible for a given seed.

Reproducibility: the train loader shuffles with its own torch.Generator seeded by the run's
seed. With workers, each worker's torch RNG (which drives the v2 augmentations) is seeded by
DataLoader from that generator, and seed_worker passes it on to numpy and random. With
num_workers=0 the augmentations use torch's global RNG, which the trainer seeds.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bioclf.data.folder import ClassFolderDataset, FlatFolderDataset, list_class_folders, read_class_names
from bioclf.data.synthetic import SyntheticDataset
from bioclf.data.transforms import build_transform
from bioclf.errors import BioclfError

if TYPE_CHECKING:  # type only: keeps bioclf.data importable without bioclf.spec
    from bioclf.data.scan import ScanReport
    from bioclf.spec.schema import DataConfig


@dataclass
class DataBundle:
    train: DataLoader
    val: DataLoader
    classes: list[str]  # folder names (or "0".."K-1") in label order
    class_names: list[str]  # display names: from class_names_file, else = classes
    num_classes: int


def resolve_root(cfg: "DataConfig", base_dir: str | Path | None = None) -> Path:
    """cfg.root, relative to ``base_dir`` (the spec file's folder; None: the working directory)."""
    root = Path(cfg.root).expanduser()
    if not root.is_absolute():
        root = Path(base_dir if base_dir is not None else Path.cwd()) / root
    if not root.is_dir():
        raise BioclfError(f"data.root: dataset folder {root} not found")
    return root


def build_datasets(
    cfg: "DataConfig", base_dir: str | Path | None = None, exclude: Iterable[str] = frozenset()
):
    """(train_ds, val_ds, classes, class_names) for ``cfg``: train gets train_transforms, val eval_transforms.

    ``exclude``: absolute image paths to leave out (from apply_bad_image_policy / check_dataset_images).
    """
    train_tf = build_transform(cfg.train_transforms, cfg.mean, cfg.std)
    eval_tf = build_transform(cfg.eval_transforms, cfg.mean, cfg.std)
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
) -> DataBundle:
    """Train (shuffled, seeded) and val (in order) loaders for ``cfg``, without the ``exclude`` paths."""
    train_ds, val_ds, classes, class_names = build_datasets(cfg, base_dir, exclude=exclude)
    if len(train_ds) < 2:
        raise BioclfError(f"data: the train split has {len(train_ds)} image(s); training needs at least 2")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    # Drop the incomplete last batch when there is more than one batch: it could hold a
    # single image, which BatchNorm rejects in training, and shuffling means every image is
    # still seen across epochs. A train set of at most one batch is kept whole.
    drop_last = len(train_ds) > cfg.batch_size
    train = _loader(train_ds, cfg, device_type, cfg.batch_size, shuffle=True, drop_last=drop_last, generator=generator)
    val = _loader(val_ds, cfg, device_type, eval_batch_size(cfg))
    return DataBundle(train=train, val=val, classes=list(classes), class_names=class_names, num_classes=len(classes))


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
    from bioclf.data.scan import apply_bad_image_policy, scan_dataset

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
) -> DataLoader:
    """A flat folder of unlabelled images through the eval transforms; batches are (images, indices)
    into ``loader.dataset.samples``."""
    dataset = FlatFolderDataset(folder, build_transform(cfg.eval_transforms, cfg.mean, cfg.std))
    return _loader(dataset, cfg, device_type, batch_size or eval_batch_size(cfg))


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
) -> DataLoader:
    workers = num_workers(cfg)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        num_workers=workers,
        pin_memory=device_type == "cuda" and cfg.pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
    )
