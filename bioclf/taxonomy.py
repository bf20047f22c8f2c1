"""A class taxonomy (species -> genus -> family ...) read from a CSV, and the measures of how bad
a classifier's mistakes are in it.

The CSV's header names the ranks from the class upward (``class,genus,family``), one row per
class (``class`` = the class folder name). ``read_taxonomy`` checks it and says what is wrong in
one line naming the row: a class listed twice, a class the dataset does not have (or one it has
that the file lacks), an empty cell, a value with two parents (a genus in two families), a name
at two ranks (which would make the tree a cycle).

The tree has the classes at height 0, rank r at height r, and a root joining the top rank at
height R + 1. Measures (Bertinetto et al., "Making Better Mistakes", CVPR 2020; Karthik et al.,
"No Cost Likelihood Manipulation at Test Time", ICLR 2021), from a softmax matrix alone:

- ``lca_heights``: H[a, b], the height of the lowest common ancestor of classes a and b (0 on the
  diagonal);
- ``mistake_severity``: mean H[y, ŷ] over the misclassified images;
- ``hierarchical_distance_at_k``: mean over images of the mean H[y, ·] of the top-k predictions;
- ``crm_ranking``: classes ranked by expected cost ``P @ H`` instead of probability (conditional
  risk minimisation, no retraining); its first column is the CRM prediction.

numpy and pandas only: the report (analysis.hierarchy) computes these for any run that logged
its softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bioclf.errors import BioclfError

CLASS = "class"


@dataclass(frozen=True)
class Taxonomy:
    ranks: tuple[str, ...]  # ("class", "genus", "family"): rank 0 is the class
    table: pd.DataFrame  # one row per class in the dataset's label order, one column per rank

    @property
    def classes(self) -> list[str]:
        return self.table[CLASS].tolist()

    def lca_heights(self) -> np.ndarray:
        """(C, C) int matrix: the height of the lowest common ancestor of every pair of classes."""
        n, top = len(self.table), len(self.ranks)
        heights = np.full((n, n), top, dtype=np.int64)  # the root, unless a rank joins them lower
        for level in range(top - 1, -1, -1):  # the lowest shared rank wins: fill from the top down
            values = self.table[self.ranks[level]].to_numpy()
            heights[values[:, None] == values[None, :]] = level
        return heights

    def at_rank(self, labels: np.ndarray, rank: str) -> np.ndarray:
        """Each class label mapped to its value at ``rank`` (as codes, equal iff the values are)."""
        codes = pd.factorize(self.table[rank])[0]
        return codes[np.asarray(labels)]

    def rank_sizes(self) -> dict[str, int]:
        """Number of distinct values per rank (the class rank: the number of classes)."""
        return {rank: int(self.table[rank].nunique()) for rank in self.ranks}

    def write_csv(self, path: str | Path) -> Path:
        """The tree as ``read_taxonomy`` reads it (one row per class, label order)."""
        self.table.to_csv(path, index=False)
        return Path(path)

    def summary(self) -> pd.DataFrame:
        """Per rank above the class: how many values, and how many hold a single class."""
        rows = []
        for rank in self.ranks[1:]:
            sizes = self.table.groupby(rank).size()
            rows.append({"rank": rank, "values": len(sizes), "singletons": int((sizes == 1).sum()),
                         "largest": int(sizes.max())})
        return pd.DataFrame(rows)


def describe_taxonomy(tree: Taxonomy) -> str:
    """One line: the ranks, with how many values each has and how many hold a single class."""
    parts = [f"{len(tree.classes)} classes"]
    for _, row in tree.summary().iterrows():
        alone = f", {row['singletons']} with one class" if row["singletons"] else ""
        parts.append(f"{row['values']} {row['rank']} values{alone}")
    return f"{' -> '.join(tree.ranks)}: " + "; ".join(parts)


def synthetic_taxonomy(num_classes: int, hierarchy: list[int]) -> Taxonomy:
    """The tree of the generated dataset (``data.synthetic.hierarchy``): class c in genus
    ``g{c // s1}``, genus g in family ``f{g // s2}``, ... (bioclf.data.synthetic draws siblings alike)."""
    from bioclf.spec.schema import synthetic_ranks

    ranks = synthetic_ranks(hierarchy)
    codes = np.arange(num_classes)
    columns = {CLASS: [str(c) for c in codes]}
    for rank, size in zip(ranks[1:], hierarchy):
        codes = codes // size
        columns[rank] = [f"{rank[0]}{g}" for g in codes]
    return Taxonomy(ranks, pd.DataFrame(columns))


def run_taxonomy(cfg, classes: list[str]) -> Taxonomy | None:
    """The taxonomy of a run (a RunConfig) over ``classes`` (folder names in label order):
    ``data.taxonomy``'s file, else the generated tree of a synthetic hierarchy, else None.
    BioclfError (naming the key, the file and the row) when the file does not fit the classes
    or ``model.head.rank_weights`` names a rank it does not have."""
    from bioclf.spec.schema import check_rank_weights

    data = cfg.data
    if data.taxonomy is not None:
        try:
            tree = read_taxonomy(data.taxonomy, classes)
        except BioclfError as exc:
            raise BioclfError(f"data.taxonomy: {exc}") from None
    elif data.source == "synthetic" and data.synthetic.hierarchy is not None:
        tree = synthetic_taxonomy(len(classes), data.synthetic.hierarchy)
    else:
        return None
    try:
        check_rank_weights(cfg.model.head.rank_weights, tree.ranks, data.taxonomy or "data.synthetic.hierarchy")
    except ValueError as exc:
        raise BioclfError(str(exc)) from None
    return tree


def read_taxonomy(path: str | Path, classes: list[str]) -> Taxonomy:
    """The taxonomy of ``path`` for a dataset with ``classes`` (folder names in label order);
    BioclfError naming the file and row when it is not a tree over exactly those classes."""
    path = Path(path).expanduser()
    where = str(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise BioclfError(f"{where}: no such taxonomy file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BioclfError(f"{where}: not a CSV ({str(exc).splitlines()[0]})") from None
    return parse_taxonomy(raw, classes, where)


def parse_taxonomy(raw: pd.DataFrame, classes: list[str], where: str) -> Taxonomy:
    """``read_taxonomy`` of a CSV already read as strings (``dtype=str, keep_default_na=False``);
    ``where`` names it in the messages."""
    ranks = tuple(str(c).strip() for c in raw.columns)
    if not ranks or ranks[0] != CLASS or len(ranks) < 2:
        raise BioclfError(f"{where}: the header must name the ranks from the class upward, first '{CLASS}' "
                          f"(e.g. class,genus,family); got {','.join(ranks) or 'nothing'}")
    if len(set(ranks)) != len(ranks):
        raise BioclfError(f"{where}: a rank is named twice in the header: {','.join(ranks)}")
    raw.columns = list(ranks)
    raw = raw.apply(lambda col: col.str.strip())
    _check_rows(raw, ranks, classes, where)
    table = raw.set_index(CLASS).loc[classes].reset_index()[list(ranks)]
    return Taxonomy(ranks, table)


def _check_rows(raw: pd.DataFrame, ranks: tuple[str, ...], classes: list[str], where: str) -> None:
    row_of = lambda i: i + 2  # noqa: E731 - file line: header is line 1
    known = set(classes)
    first_row: dict[str, int] = {}
    for i, rec in raw.iterrows():
        for rank in ranks:
            if not rec[rank]:
                raise BioclfError(f"{where} row {row_of(i)}: empty '{rank}'")
        name = rec[CLASS]
        if name in first_row:
            raise BioclfError(f"{where} row {row_of(i)}: class '{name}' is listed twice (also row {first_row[name]})")
        first_row[name] = row_of(i)
        if name not in known:
            raise BioclfError(f"{where} row {row_of(i)}: '{name}' is not a class of the dataset "
                              f"(its classes are the class folder names, e.g. '{classes[0]}')")
    missing = [c for c in classes if c not in first_row]
    if len(missing) == 1:
        raise BioclfError(f"{where}: class '{missing[0]}' of the dataset has no row")
    if missing:
        named = ", ".join(f"'{c}'" for c in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BioclfError(f"{where}: {len(missing)} classes of the dataset have no row: {named}")
    rank_of: dict[str, tuple[str, int]] = {}
    for level, rank in enumerate(ranks):
        for i, value in raw[rank].items():
            seen = rank_of.setdefault(value, (rank, row_of(i)))
            if seen[0] != rank:
                raise BioclfError(f"{where} row {row_of(i)}: '{value}' is a {rank} here and a {seen[0]} in row "
                                  f"{seen[1]}: a name at two ranks would make the tree a cycle")
        if level + 1 < len(ranks):
            parent = ranks[level + 1]
            for value, group in raw.groupby(rank, sort=False):
                parents = list(dict.fromkeys(group[parent]))
                if len(parents) > 1:
                    rows = [row_of(i) for i in group.index[group[parent] == parents[1]]]
                    raise BioclfError(f"{where} row {rows[0]}: {rank} '{value}' has two {parent} values: "
                                      f"'{parents[0]}' (row {row_of(group.index[0])}) and '{parents[1]}'")


# ---------------------------------------------------------------- measures


def top_k(probs: np.ndarray, k: int, first: np.ndarray | None = None) -> np.ndarray:
    """(N, k) labels of the k highest probabilities, best first (ties: lower label first).
    ``first``: each image's label to put first among equal probabilities — the run's own
    prediction, which a float16 copy of its softmax can tie with a lower label."""
    if first is None:
        return np.argsort(-probs, axis=1, kind="stable")[:, :k]
    not_first = np.arange(probs.shape[1])[None, :] != np.asarray(first)[:, None]
    return np.lexsort((np.broadcast_to(not_first, probs.shape), -probs), axis=1)[:, :k]


def mistake_severity(labels: np.ndarray, predicted: np.ndarray, heights: np.ndarray) -> float:
    """Mean LCA height between the true and the predicted class over the misclassified images
    (NaN when there is no mistake)."""
    wrong = labels != predicted
    return float(heights[labels[wrong], predicted[wrong]].mean()) if wrong.any() else float("nan")


def hierarchical_distance_at_k(labels: np.ndarray, ranking: np.ndarray, heights: np.ndarray, k: int) -> float:
    """Mean over images of the mean LCA height between the true class and each of the first k
    classes of ``ranking`` ((N, >= k) labels, best first)."""
    top = ranking[:, :k]
    return float(heights[labels[:, None], top].mean())


def crm_ranking(probs: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """Classes ranked by expected tree cost ``sum_c p(c) H[c, j]``, lowest first (ties: lower label)."""
    cost = probs.astype(np.float64) @ heights.astype(np.float64)
    return np.argsort(cost, axis=1, kind="stable")
