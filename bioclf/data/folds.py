"""K-fold out-of-fold evaluation (``evaluation.folds``): train and val pooled, split into K
folds, each run training on K - 1 of them and validated on the one it did not see.

The split is a pure function of the pooled listing (paths and labels, train first, each split
in dataset order), the groups of duplicate images and ``evaluation.fold_seed``: every fold run of
every variant and seed computes the same one, wherever it runs, so out-of-fold predictions of two
variants are paired image by image. scikit-learn's StratifiedGroupKFold keeps each class's share
about equal across folds and every group (an image and its exact or near copies, found by the
data check before the suite starts) inside one fold: a leaked copy never scores a model that
trained on its twin.

``Picked`` views items of the two splits as one dataset; the training fold reads all of them
through the train transforms and the held-out fold through the eval transforms.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from bioclf.errors import BioclfError


@dataclass(frozen=True)
class FoldPlan:
    """Which fold a run holds out, of how many, the split's seed, and the duplicate groups
    (tuples of image paths, as the datasets list them) that must stay together."""

    folds: int
    fold: int
    seed: int = 0
    groups: tuple[tuple[str, ...], ...] = field(default=())


class Picked(Dataset):
    """Items ``(part, index)`` of datasets with the same classes, as one dataset (``samples``,
    ``targets``, ``classes`` and ``transform`` as the parts have them)."""

    def __init__(self, parts: list, picks: list[tuple[int, int]]):
        self.parts, self.picks = parts, picks
        self.fold_rows: list | None = None  # the whole split, on a fold's training set (fold_datasets)
        self.samples = [parts[p].samples[i] for p, i in picks]
        self.targets = [label for _, label in self.samples]
        self.classes = parts[0].classes
        self.transform = parts[0].transform

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, index: int):
        part, i = self.picks[index]
        return self.parts[part][i]


def pooled(train_ds, val_ds) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of train then val, in dataset order: the listing the split is made of."""
    samples = list(train_ds.samples) + list(val_ds.samples)
    return [str(path) for path, _ in samples], np.asarray([label for _, label in samples], dtype=np.int64)


def check_fold_counts(labels: np.ndarray, classes: list[str], folds: int) -> None:
    """BioclfError (one line) unless every class has at least ``folds`` labelled images: a fold
    without a class cannot score it, and stratification needs one image per fold."""
    counts = Counter(labels.tolist())
    short = [(classes[c], counts.get(c, 0)) for c in range(len(classes)) if counts.get(c, 0) < folds]
    if short:
        name, n = min(short, key=lambda item: item[1])
        more = f" ({len(short)} classes in all)" if len(short) > 1 else ""
        raise BioclfError(f"evaluation.folds: {folds} folds need at least {folds} labelled images (train + val) of "
                          f"every class; class '{name}' has {n}{more}: lower evaluation.folds")


def group_ids(paths: list[str], groups: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """One id per path: paths of a duplicate group share one (union-find over the groups)."""
    index = {os.path.normpath(p): i for i, p in enumerate(paths)}
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in groups:
        members = [index[q] for q in map(os.path.normpath, group) if q in index]
        for other in members[1:]:
            parent[root(other)] = root(members[0])
    return np.asarray([root(i) for i in range(len(paths))], dtype=np.int64)


def assign_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..K-1) of every item: stratified by label, groups kept whole, seeded."""
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        out[held] = fold
    return out


def fold_split(train_ds, val_ds, plan: FoldPlan) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, fold of each) of the pooled listing; BioclfError when a class is too small."""
    paths, labels = pooled(train_ds, val_ds)
    check_fold_counts(labels, list(train_ds.classes), plan.folds)
    return paths, labels, assign_folds(labels, group_ids(paths, plan.groups), plan.folds, plan.seed)


def fold_datasets(train_parts: tuple, eval_parts: tuple, plan: FoldPlan) -> tuple[Picked, Picked]:
    """(training set, held-out set) of fold ``plan.fold``: ``train_parts`` / ``eval_parts`` are
    (train split, val split) with the train / eval transforms. The training set's ``fold_rows``
    is the whole split, ``(path, label, fold)`` per pooled image (logged as folds.csv)."""
    paths, labels, folds = fold_split(*train_parts, plan)
    n_train = len(train_parts[0])
    picks = [(0, i) if i < n_train else (1, i - n_train) for i in range(len(paths))]
    train = Picked(list(train_parts), [picks[i] for i in np.flatnonzero(folds != plan.fold)])
    held = Picked(list(eval_parts), [picks[i] for i in np.flatnonzero(folds == plan.fold)])
    train.fold_rows = list(zip(paths, labels.tolist(), folds.tolist()))
    return train, held
