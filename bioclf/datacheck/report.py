"""``bioclf-exp check-data ROOT``: what is in a class-folder dataset, before anything trains.

- images per class per split, classes in one split only, class imbalance (max / min images per
  class), image size, mode and format distribution, unreadable files (bioclf.data.scan);
- exact duplicates (same bytes: content sha256) and near-duplicates (resized / re-encoded copies:
  64- and 256-bit pHashes within a few bits, see bioclf.datacheck.neardup), within and across train /
  val / test: a val or test image that is also in train inflates every number of an ablation table;
- the content fingerprint of train + val (bioclf.datacheck.hashing), which every run logs.

``check_dataset`` returns a DataReport: ``summary_text()`` for the terminal, ``to_dict()`` for
JSON, ``write(out_dir)`` for summary.json, counts.csv, duplicates.csv, unreadable.csv and two
plots. ``problems`` are what makes training fail (a missing split, class folders that differ
between train and val, an empty class); ``warnings`` are what makes numbers doubtful.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from bioclf.data.folder import list_class_folders, order_classes, resolve_root
from bioclf.data.scan import FLAT_SPLITS, LABELLED_SPLITS, bad_images_message, remember_scan
from bioclf.datacheck.hashing import (
    DatasetFingerprint,
    FileRecord,
    data_fingerprint,
    default_cache_root,
    fingerprint_of,
    hash_files,
    relative_image_files,
)
from bioclf.datacheck.neardup import (
    MAX_PAIRS,
    PHASH256_THRESHOLD,
    PHASH_THRESHOLD,
    hex256_to_words,
    near_duplicate_pairs,
)
from bioclf.errors import BioclfError

if TYPE_CHECKING:
    from bioclf.spec.schema import DataConfig

log = logging.getLogger(__name__)

SPLITS = LABELLED_SPLITS + FLAT_SPLITS
# Warn when the largest class of a split has this many times the images of its smallest.
IMBALANCE_WARN = 5.0
EXAMPLES = 3  # duplicate examples named in a warning line
SUMMARY_ROWS = 10  # rows of each table in the terminal summary


@dataclass
class Duplicate:
    """Two files with the same content (``kind`` "exact") or that look the same ("near")."""

    kind: str
    a: str
    b: str
    group: int  # exact: the group's number (a group of k files gives k - 1 rows); near: the pair's
    phash_distance: int = 0  # of the 64-bit pHashes
    phash256_distance: int = 0  # of the 256-bit pHashes

    @property
    def splits(self) -> tuple[str, str]:
        return self.a.split("/", 1)[0], self.b.split("/", 1)[0]

    @property
    def cross_split(self) -> bool:
        return self.splits[0] != self.splits[1]

    @property
    def labels(self) -> tuple[str | None, str | None]:
        return _label(self.a), _label(self.b)

    @property
    def label_conflict(self) -> bool:
        """Both files are labelled, with different classes."""
        a, b = self.labels
        return a is not None and b is not None and a != b

    def row(self) -> dict:
        (split_a, split_b), (label_a, label_b) = self.splits, self.labels
        return {"kind": self.kind, "group": self.group, "path_a": self.a, "path_b": self.b,
                "split_a": split_a, "split_b": split_b, "class_a": label_a or "", "class_b": label_b or "",
                "cross_split": self.cross_split, "label_conflict": self.label_conflict,
                "phash_distance": self.phash_distance, "phash256_distance": self.phash256_distance}


def _label(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[1] if parts[0] in LABELLED_SPLITS and len(parts) > 2 else None


def _split_order(rel: str):
    split = rel.split("/", 1)[0]
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), rel)


def _natural(name: str):
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


@dataclass
class DataReport:
    root: str
    fingerprint: str | None = None  # content fingerprint of train + val (None when neither exists)
    split_fingerprints: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)  # label order (train's), then val-only classes
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    n_images: dict[str, int] = field(default_factory=dict)  # split -> images
    records: dict[str, FileRecord] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    exact_groups: list[list[str]] = field(default_factory=list)
    near: list[Duplicate] = field(default_factory=list)
    near_truncated: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # what each warning is about, in the same order: "leakage", "label_conflict", "near", "truncated",
    # "imbalance", "unreadable"
    warning_kinds: list[str] = field(default_factory=list)
    phash_threshold: int = PHASH_THRESHOLD
    phash256_threshold: int = PHASH256_THRESHOLD
    seconds: float = 0.0

    # ---- derived
    @property
    def usable(self) -> bool:
        return not self.problems

    def only_in(self, split: str, other: str) -> list[str]:
        if split not in self.counts or other not in self.counts:
            return []
        return sorted(set(self.counts[split]) - set(self.counts[other]), key=_natural)

    def imbalance(self, split: str) -> float | None:
        """Images of the largest class / of the smallest (None: no classes; inf: an empty class)."""
        values = list(self.counts.get(split, {}).values())
        if not values:
            return None
        return max(values) / min(values) if min(values) > 0 else float("inf")

    def exact_duplicates(self) -> list[Duplicate]:
        return [Duplicate("exact", group[0], other, number)
                for number, group in enumerate(self.exact_groups, 1) for other in group[1:]]

    def duplicates(self) -> list[Duplicate]:
        return self.exact_duplicates() + self.near

    def duplicate_groups(self) -> tuple[tuple[str, ...], ...]:
        """Absolute paths of every exact group and near pair within train and val: what a K-fold
        split keeps inside one fold (bioclf.data.folds). Near pairs beyond ``max_pairs`` are not
        listed (``near_truncated``), so they are not kept together."""
        root = Path(self.root)

        def labelled(rels) -> tuple[str, ...]:
            return tuple(str(root / rel) for rel in rels if rel.split("/", 1)[0] in LABELLED_SPLITS)

        groups = [labelled(g) for g in self.exact_groups] + [labelled((d.a, d.b)) for d in self.near]
        return tuple(g for g in groups if len(g) > 1)

    def cross_split_groups(self) -> list[list[str]]:
        return [g for g in self.exact_groups if len({rel.split("/", 1)[0] for rel in g}) > 1]

    def formats(self) -> Counter:
        return Counter(r.format for r in self.records.values() if r.format)

    def modes(self) -> Counter:
        return Counter(r.mode for r in self.records.values() if r.mode)

    def sizes(self) -> list[tuple[str, int, int]]:
        """(split, width, height) of every decoded image."""
        return [(r.split, r.width, r.height) for r in self.records.values() if r.width]

    # ---- outputs
    def counts_rows(self) -> list[dict]:
        labelled = [s for s in LABELLED_SPLITS if s in self.counts]
        return [{"class": name, **{s: self.counts[s].get(name, 0) for s in labelled}} for name in self.classes]

    def to_dict(self) -> dict:
        sizes = self.sizes()
        widths = [w for _, w, _ in sizes]
        heights = [h for _, _, h in sizes]
        size_stats = {}
        if sizes:
            size_stats = {
                "width": {"min": min(widths), "median": statistics.median(widths), "max": max(widths)},
                "height": {"min": min(heights), "median": statistics.median(heights), "max": max(heights)},
                "most_common": [{"size": f"{w}x{h}", "images": n}
                                for (w, h), n in Counter(zip(widths, heights)).most_common(10)],
            }
        return {
            "root": self.root,
            "usable": self.usable,
            "problems": self.problems,
            "warnings": self.warnings,
            "fingerprint": self.fingerprint,
            "fingerprint_covers": [s for s in LABELLED_SPLITS if s in self.n_images],
            "split_fingerprints": self.split_fingerprints,
            "images": self.n_images,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "counts": self.counts_rows(),
            "only_in_train": self.only_in("train", "val"),
            "only_in_val": self.only_in("val", "train"),
            "imbalance": {s: _finite(self.imbalance(s)) for s in LABELLED_SPLITS if s in self.counts},
            "formats": dict(self.formats().most_common()),
            "modes": dict(self.modes().most_common()),
            "sizes": size_stats,
            "unreadable": [{"path": rel, "reason": reason} for rel, reason in self.unreadable],
            "exact_duplicate_groups": [{"paths": group, "cross_split": group in self.cross_split_groups()}
                                       for group in self.exact_groups],
            "near_duplicates": [d.row() for d in self.near],
            "near_duplicates_truncated": self.near_truncated,
            "thresholds": {"phash": self.phash_threshold, "phash256": self.phash256_threshold,
                           "imbalance_warn": IMBALANCE_WARN},
            "seconds": round(self.seconds, 3),
        }

    def summary_text(self) -> str:
        # Long but flat: one block per section of the printed report, in print order.
        lines = [f"dataset {self.root}"]
        if self.fingerprint:
            covers = "+".join(s for s in LABELLED_SPLITS if s in self.n_images)
            lines.append(f"fingerprint {self.fingerprint} (content of {covers})")
        lines.append("")
        lines.append(f"{'split':<6} {'images':>8} {'classes':>8} {'min/class':>10} {'max/class':>10} {'imbalance':>10}")
        for split in SPLITS:
            if split not in self.n_images:
                continue
            per_class = self.counts.get(split)
            if per_class:
                ratio = self.imbalance(split)
                ratio_text = "inf" if ratio == float("inf") else f"{ratio:.2f}"
                low, high = min(per_class.values()), max(per_class.values())
                lines.append(f"{split:<6} {self.n_images[split]:>8,} {len(per_class):>8} {low:>10,} {high:>10,} "
                             f"{ratio_text:>10}")
            else:
                lines.append(f"{split:<6} {self.n_images[split]:>8,} {'-':>8} {'-':>10} {'-':>10} {'-':>10}")
        only_train, only_val = self.only_in("train", "val"), self.only_in("val", "train")
        lines.append(f"classes only in train: {_preview(only_train) or 'none'}; "
                     f"only in val: {_preview(only_val) or 'none'}")
        formats = ", ".join(f"{k} {v:,}" for k, v in self.formats().most_common(6)) or "-"
        modes = ", ".join(f"{k} {v:,}" for k, v in self.modes().most_common(6)) or "-"
        lines.append(f"formats: {formats}; modes: {modes}")
        sizes = self.to_dict()["sizes"]
        if sizes:
            w, h = sizes["width"], sizes["height"]
            lines.append(f"image sizes: width {w['min']}..{w['max']} (median {w['median']:g}), "
                         f"height {h['min']}..{h['max']} (median {h['median']:g}); "
                         f"most common {sizes['most_common'][0]['size']} ({sizes['most_common'][0]['images']:,})")
        lines.append(f"unreadable: {len(self.unreadable)}"
                     + (f" (e.g. {', '.join(f'{r} ({why})' for r, why in self.unreadable[:EXAMPLES])})"
                        if self.unreadable else ""))
        cross = self.cross_split_groups()
        n_exact_files = sum(len(g) for g in self.exact_groups)
        lines.append(f"exact duplicates: {len(self.exact_groups)} group(s), {n_exact_files} file(s); "
                     f"{len(cross)} group(s) across splits")
        near_cross = sum(d.cross_split for d in self.near)
        lines.append(f"near-duplicates: {len(self.near)} pair(s){' (truncated)' if self.near_truncated else ''}, "
                     f"{near_cross} across splits (pHash distance <= {self.phash_threshold} of 64 bits and <= "
                     f"{self.phash256_threshold} of 256)")
        shown = sorted(self.duplicates(), key=lambda d: (not d.cross_split, d.kind != "exact",
                                                          _split_order(d.a)))[:SUMMARY_ROWS]
        if shown:
            lines.append("")
            lines.append(f"{'kind':<6} {'splits':<10} {'dist':>5}  files")
            for d in shown:
                dist = "-" if d.kind == "exact" else str(d.phash_distance)
                lines.append(f"{d.kind:<6} {'/'.join(d.splits):<10} {dist:>5}  {d.a}  {d.b}")
            more = len(self.duplicates()) - len(shown)
            if more > 0:
                lines.append(f"... and {more} more (--out DIR writes duplicates.csv)")
        if self.problems or self.warnings:
            lines.append("")
        lines.extend(f"problem: {p}" for p in self.problems)
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append("")
        lines.append(f"{'usable' if self.usable else 'NOT usable for training'} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> list[Path]:
        """summary.json, counts.csv, duplicates.csv, unreadable.csv, class_counts.png, image_sizes.png."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "summary.json", out / "counts.csv", out / "duplicates.csv", out / "unreadable.csv"]
        written[0].write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        labelled = [s for s in LABELLED_SPLITS if s in self.counts]
        _write_csv(written[1], ["class", *labelled], self.counts_rows())
        duplicate_fields = list(Duplicate("exact", "a", "b", 0).row())
        _write_csv(written[2], duplicate_fields, [d.row() for d in self.duplicates()])
        _write_csv(written[3], ["path", "reason"], [{"path": p, "reason": r} for p, r in self.unreadable])
        if self.classes and labelled:
            written.append(plot_class_counts(self, out / "class_counts.png"))
        if self.sizes():
            written.append(plot_sizes(self, out / "image_sizes.png"))
        return written


def _finite(value: float | None):
    return None if value is None else ("inf" if value == float("inf") else round(value, 4))


def _preview(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# --- plots (matplotlib's object API: no pyplot, no backend, nothing global) -----------------

def plot_class_counts(report: DataReport, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    labelled = [s for s in LABELLED_SPLITS if s in report.counts]
    k = len(report.classes)
    width = min(24.0, max(7.0, 0.16 * k + 2.0))
    fig = Figure(figsize=(width, 2.4 * len(labelled) + 0.9), layout="constrained")
    axes = fig.subplots(len(labelled), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(k)
    colors = {"train": "#4C72B0", "val": "#DD8452"}
    for ax, split in zip(axes, labelled):
        values = np.array([report.counts[split].get(name, 0) for name in report.classes])
        ax.bar(x, values, width=0.8, color=colors.get(split, "#55A868"))
        missing = x[values == 0]
        if len(missing):
            ax.plot(missing, np.zeros(len(missing)), "x", color="crimson", label="no images", clip_on=False, ms=8)
            ax.legend(loc="upper right", fontsize=8)
        ratio = report.imbalance(split)
        if ratio is None:
            ratio_text = ""
        else:
            ratio_text = ", imbalance inf" if ratio == float("inf") else f", imbalance {ratio:.2f}"
        ax.set_title(f"{split}: {report.n_images.get(split, 0):,} images, {len(report.counts[split])} classes"
                     f"{ratio_text}", fontsize=10, loc="left")
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if len(values) and values.max() > 0:
            ax.axhline(values.mean(), color="0.3", lw=0.8, ls="--")
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.6, k - 0.4)
    step = max(1, int(np.ceil(k / 50)))
    axes[-1].set_xticks(x[::step])
    labels = [name if len(name) <= 14 else name[:13] + "…" for name in report.classes[::step]]
    axes[-1].set_xticklabels(labels, rotation=90 if k > 12 or max(map(len, labels)) > 3 else 0, fontsize=7)
    axes[-1].set_xlabel("class (label order)")
    test = report.n_images.get("test")
    fig.suptitle(f"Images per class — {Path(report.root).name}" + (f" (test: {test:,} unlabeled)" if test else ""),
                 fontsize=11)
    fig.savefig(path, dpi=110)
    return path


def plot_sizes(report: DataReport, path: Path) -> Path:
    from matplotlib.figure import Figure

    sizes = report.sizes()
    fig = Figure(figsize=(11, 4), layout="constrained")
    hist_ax, scatter_ax = fig.subplots(1, 2)
    widths = np.array([w for _, w, _ in sizes])
    heights = np.array([h for _, _, h in sizes])
    low, high = int(min(widths.min(), heights.min())), int(max(widths.max(), heights.max()))
    pad = max(1, (high - low) // 20)
    bins = np.linspace(low - pad, high + pad, 41)
    for values, label, color in ((widths, "width", "#4C72B0"), (heights, "height", "#DD8452")):
        hist_ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.25, color=color)
        hist_ax.hist(values, bins=bins, histtype="step", lw=1.8, color=color,
                     label=f"{label} (median {statistics.median(values.tolist()):g})")
    hist_ax.set_xlabel("pixels")
    hist_ax.set_ylabel("images")
    hist_ax.set_title("Image width and height", fontsize=10, loc="left")
    hist_ax.legend()
    colors = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}
    # One marker per distinct size and split, its area proportional to the number of images.
    counts = Counter(sizes)
    most = max(counts.values())
    for split in SPLITS:
        points = [(w, h, n) for (s, w, h), n in counts.items() if s == split]
        if points:
            xs, ys, ns = map(np.array, zip(*points))
            scatter_ax.scatter(xs, ys, s=12 + 300 * ns / most, alpha=0.45, color=colors[split],
                               label=f"{split} ({int(ns.sum()):,})", edgecolors="none")
    scatter_ax.set_xlim(low - 3 * pad, high + 3 * pad)
    scatter_ax.set_ylim(low - 3 * pad, high + 3 * pad)
    scatter_ax.set_xlabel("width")
    scatter_ax.set_ylabel("height")
    scatter_ax.set_title("Width x height (marker area: number of images)", fontsize=10, loc="left")
    legend = scatter_ax.legend(markerscale=0.6)
    for handle in legend.legend_handles:
        handle.set_sizes([30])
    for ax in (hist_ax, scatter_ax):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


# --- the check ------------------------------------------------------------------------------

def _class_structure(root: Path, report: DataReport) -> None:
    """Class folders per labelled split, in label order; problems for what breaks training."""
    orders: dict[str, list[str]] = {}
    for split in LABELLED_SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            report.problems.append(f"{split_dir}: split folder not found (expected {split_dir}/<class>/<image>)")
            continue
        try:
            names = list_class_folders(split_dir)
        except BioclfError as error:
            report.problems.append(str(error))
            report.counts[split] = {}
            report.n_images[split] = 0
            continue
        try:
            orders[split] = order_classes(names, split_dir)
        except BioclfError as error:
            report.problems.append(str(error))
            orders[split] = sorted(names, key=_natural)
        report.counts[split] = {name: 0 for name in orders[split]}
        report.n_images[split] = 0
    classes = list(orders.get("train", []))
    classes += [name for name in orders.get("val", []) if name not in set(classes)]
    report.classes = classes
    if "train" in orders and "val" in orders and set(orders["train"]) != set(orders["val"]):
        parts = []
        for label, names in (("only in train", report_only(orders, "train", "val")),
                             ("only in val", report_only(orders, "val", "train"))):
            if names:
                parts.append(f"{label}: {_preview(names, 5)}")
        report.problems.append(f"{root}: train and val have different class folders ({'; '.join(parts)})")


def report_only(orders: dict[str, list[str]], split: str, other: str) -> list[str]:
    return sorted(set(orders[split]) - set(orders[other]), key=_natural)


def check_dataset(
    root: str | Path,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    phash_threshold: int = PHASH_THRESHOLD,
    phash256_threshold: int = PHASH256_THRESHOLD,
    progress: Callable[[int, int], None] | None = None,
    max_pairs: int = MAX_PAIRS,
    on_bad_image: str = "error",
) -> DataReport:
    """The data report of ``ROOT/train/<class>/*``, ``ROOT/val/<class>/*`` and ``ROOT/test/*``.

    ``on_bad_image``: ``data.on_bad_image`` as a run applies it, so the verdict is the run's:
    unreadable train / val images are a problem under "error" (the run would stop, exit 2 with
    the same line) and a warning under "skip" (the run leaves them out). Unreadable test images
    are a warning either way (training never reads them; predict needs --skip-bad).

    ``cache_dir``: the bioclf cache folder (hashes/ and scans/ under it; default
    ``$XDG_CACHE_HOME/bioclf`` or ``~/.cache/bioclf``). ``progress(done, total)`` is called while
    files are hashed. A missing root is a BioclfError; everything else ends up in the report.
    """
    started = time.perf_counter()
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise BioclfError(f"{root}: dataset folder not found")
    report = DataReport(str(root), phash_threshold=phash_threshold, phash256_threshold=phash256_threshold)
    _class_structure(root, report)
    rels = relative_image_files(root)
    _count_images(root, rels, report)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    records = _hash_and_scan(root, rels, report, cache_root, use_cache, workers, progress)
    _fingerprints(rels, records, report)
    _find_duplicates(report, max_pairs)
    _warnings(report, on_bad_image)
    report.seconds = time.perf_counter() - started
    return report


def _count_images(root: Path, rels: list[str], report: DataReport) -> None:
    """Images per split and per class; empty class folders and an empty dataset are problems."""
    if (root / "test").is_dir():
        report.n_images["test"] = 0
    for rel in rels:
        split = rel.split("/", 1)[0]
        report.n_images[split] = report.n_images.get(split, 0) + 1
        label = _label(rel)
        if label is not None and split in report.counts:
            report.counts[split][label] = report.counts[split].get(label, 0) + 1
    for split in LABELLED_SPLITS:
        empty = [name for name, n in report.counts.get(split, {}).items() if n == 0]
        if empty:
            report.problems.append(f"{root / split}: {len(empty)} class folder(s) without images: {_preview(empty, 5)}")
    if not rels:
        report.problems.append(f"{root}: no images under train/, val/ or test/")


def _hash_and_scan(root: Path, rels: list[str], report: DataReport, cache_root: Path, use_cache: bool,
                   workers: int | None, progress: Callable[[int, int], None] | None) -> dict:
    """Every file hashed (exact and perceptual) and checked as the image scan checks it, on one
    decode per image; the scan's result is stored, so the suite's own scan (and every run's)
    finds it cached. Unreadable files go to ``report.unreadable``. Returns the hash records."""
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(rels))

    records, unread = hash_files(root, rels, perceptual=True, cache_dir=cache_root, use_cache=use_cache,
                                 workers=workers, progress=tick)
    bad = {rel: r.error for rel, r in records.items() if r.error is not None}
    for line in unread:  # gone or unreadable between the listing and the hashing
        rel, _, reason = line.partition(": ")
        bad.setdefault(rel, reason)
    report.unreadable = sorted(bad.items())
    if use_cache:
        remember_scan(root, report.unreadable, cache_root / "scans")
    report.records = {rel: r for rel, r in records.items() if rel not in bad}
    return records


def _fingerprints(rels: list[str], records: dict, report: DataReport) -> None:
    """The content fingerprint of train + val, and one per split."""
    covered = [rel for rel in rels if rel.split("/", 1)[0] in LABELLED_SPLITS and rel in records]
    if covered:
        report.fingerprint = fingerprint_of((rel, records[rel].sha256) for rel in covered)
    for split in SPLITS:
        members = [rel for rel in rels if rel.split("/", 1)[0] == split and rel in records]
        if members:
            report.split_fingerprints[split] = fingerprint_of((rel, records[rel].sha256) for rel in members)


def _find_duplicates(report: DataReport, max_pairs: int) -> None:
    by_sha: dict[str, list[str]] = defaultdict(list)
    for rel in sorted(report.records):
        by_sha[report.records[rel].sha256].append(rel)
    groups = [sorted(g, key=_split_order) for g in by_sha.values() if len(g) > 1]
    report.exact_groups = sorted(groups, key=lambda g: _split_order(g[0]))
    # One representative per content: the members of an exact group are near whatever it is near.
    reps = [min(g, key=_split_order) for g in by_sha.values() if report.records[g[0]].phash is not None]
    reps.sort(key=_split_order)
    if len(reps) < 2:
        return
    phashes = np.array([report.records[rel].phash for rel in reps], dtype=np.uint64)
    words = hex256_to_words([report.records[rel].phash256 for rel in reps])
    i, j, dp, dd, truncated = near_duplicate_pairs(phashes, words, report.phash_threshold,
                                                   report.phash256_threshold, max_pairs=max_pairs)
    report.near_truncated = truncated
    pairs = [Duplicate("near", reps[a], reps[b], 0, int(p), int(d)) for a, b, p, d in zip(i, j, dp, dd)]
    pairs.sort(key=lambda d: (not d.cross_split, d.phash_distance, _split_order(d.a), _split_order(d.b)))
    for number, pair in enumerate(pairs, 1):
        pair.group = number
    report.near = pairs


def _examples(pairs: list[tuple[str, str]], joiner: str) -> str:
    shown = "; ".join(f"{a} {joiner} {b}" for a, b in pairs[:EXAMPLES])
    return shown + ("; ..." if len(pairs) > EXAMPLES else "")


def _warnings(report: DataReport, on_bad_image: str = "error") -> None:
    def warn(kind: str, text: str) -> None:
        report.warning_kinds.append(kind)
        report.warnings.append(text)

    cross = report.cross_split_groups()
    if cross:
        splits = sorted({rel.split("/", 1)[0] for g in cross for rel in g})
        warn("leakage", f"{len(cross)} exact duplicate group(s) span splits ({'/'.join(splits)}), e.g. "
                        f"{_examples([(g[0], g[1]) for g in cross], '=')}: the same image in train and val/test "
                        "inflates every val/test number")
    conflicts = [d for d in report.exact_duplicates() if d.label_conflict]
    if conflicts:
        warn("label_conflict", f"{len(conflicts)} exact duplicate pair(s) with different class labels, e.g. "
                               f"{_examples([(d.a, d.b) for d in conflicts], '=')}")
    near_cross = [d for d in report.near if d.cross_split]
    if near_cross:
        warn("near", f"{len(near_cross)} near-duplicate pair(s) across splits (resized or re-encoded copies?), "
                     f"e.g. {_examples([(d.a, d.b) for d in near_cross], '~')}")
    if report.near_truncated:
        warn("truncated", f"more than {MAX_PAIRS:,} near-duplicate pairs (many blank or near-identical images?); "
                          "only the first are listed")
    for split in LABELLED_SPLITS:
        ratio = report.imbalance(split)
        if ratio is not None and ratio != float("inf") and ratio > IMBALANCE_WARN:
            per_class = report.counts[split]
            small = min(per_class, key=per_class.get)
            large = max(per_class, key=per_class.get)
            warn("imbalance", f"{split} is imbalanced: class {large} has {per_class[large]:,} images, class "
                              f"{small} {per_class[small]:,} (ratio {ratio:.1f} > {IMBALANCE_WARN:g}); look at "
                              "macro F1 / per-class accuracy")
    labelled = [(rel, why) for rel, why in report.unreadable if rel.split("/", 1)[0] in LABELLED_SPLITS]
    unlabelled = [(rel, why) for rel, why in report.unreadable if rel.split("/", 1)[0] not in LABELLED_SPLITS]
    if labelled and on_bad_image == "error":
        report.problems.append(bad_images_message(labelled, report.root))
    elif labelled:
        shown = ", ".join(f"{rel} ({why})" for rel, why in labelled[:EXAMPLES])
        warn("unreadable", f"{len(labelled)} unreadable train/val image(s), e.g. {shown}: a run leaves them out "
                           "(data.on_bad_image: skip)")
    if unlabelled:
        shown = ", ".join(f"{rel} ({why})" for rel, why in unlabelled[:EXAMPLES])
        warn("unreadable", f"{len(unlabelled)} unreadable test image(s), e.g. {shown}: training does not read "
                           "them; predict needs --skip-bad")


# --- at the start of a suite ------------------------------------------------------------------

def suite_data_check(
    cfg: "DataConfig",
    base_dir: str | Path | None = None,
    *,
    echo: Callable[[str], None] = print,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> tuple[DatasetFingerprint, DataReport | None]:
    """The data check a suite runs before its first run: (fingerprint to log with every run,
    report). Folder data: the full report (hashes cached per file, so a second suite on the same
    data only stats the files), its warnings echoed; a problem raises BioclfError. Synthetic data:
    the fingerprint of the generator's settings, no report."""
    if cfg.source != "folder":
        return data_fingerprint(cfg, base_dir), None
    root = resolve_root(cfg, base_dir)
    report = check_dataset(root, cache_dir=cache_dir, workers=workers, on_bad_image=cfg.on_bad_image)
    if report.problems:
        raise BioclfError(report.problems[0])
    for kind, line in zip(report.warning_kinds, report.warnings):
        if kind != "unreadable":  # the suite's own scan reports those, with data.on_bad_image
            echo(f"data: warning: {line}")
    rels = [rel for rel in report.records if rel.split("/", 1)[0] in LABELLED_SPLITS]
    profile = {
        "splits": {s: report.n_images.get(s, 0) for s in LABELLED_SPLITS},
        "num_classes": len(report.classes),
        "fingerprint_covers": list(LABELLED_SPLITS),
        "exact_duplicate_groups_across_splits": len(report.cross_split_groups()),
        "near_duplicates_across_splits": sum(d.cross_split for d in report.near),
    }
    fingerprint = DatasetFingerprint(
        digest=report.fingerprint or fingerprint_of([]), name=root.name or str(root), source_type="local",
        source=json.dumps({"uri": root.absolute().as_uri()}), profile=json.dumps(profile, sort_keys=True),
    )
    log.info("data check of %s: %d images hashed, fingerprint %s", root, len(rels), fingerprint.digest)
    return fingerprint, report
