"""``bioclf-exp fetch-data NAME DEST``: a public fine-grained dataset in the class-folder layout.

Downloads through torchvision's dataset classes (their URLs and checksums) into a download
cache (default ``$XDG_CACHE_HOME/bioclf/datasets``, else ``~/.cache/bioclf/datasets``), then lays
the files out as::

    DEST/train/<label>/<image>   DEST/val/<label>/<image>   DEST/test/<image>   (flat, unlabeled)
    DEST/classes.txt             one display name per line, in label order (data.class_names_file)
    DEST/test_labels.csv         image_name,label of the test split (to score a prediction CSV)
    DEST/taxonomy.csv            the class tree, where the dataset defines one (table below)
    DEST/.bioclf-fetch.json      what was fetched, from where, how many files per split, and
                                 "taxonomy_file": "taxonomy.csv" or null

Class folders are the integers 0..K-1 (the label). Files are hard links to the download (no
extra disk space; a copy where linking is not possible, or with ``copy=True``): the download is
never moved or changed, and the layout is built in a temporary sibling folder that is renamed to
DEST only when complete, so an interrupted fetch leaves no half dataset.

Datasets (``DATASETS``):

| name | classes | train / val / test | source | taxonomy.csv |
|---|---|---|---|---|
| flowers102 | 102 | 1,020 / 1,020 / 6,149 | Oxford 102 Flowers, the official splits (setid.mat) | none |
| oxford_pets | 37 | 80% / 20% of trainval (per class, seeded) / 3,669 | Oxford-IIIT Pet | class,species |
| fgvc_aircraft | 100 variants | 3,334 / 3,333 / 3,333 | FGVC-Aircraft 2013b, the official splits | class,family,manufacturer |

``taxonomy.csv`` is the CSV that ``bioclf.taxonomy.read_taxonomy`` reads: a header naming the
ranks from the class upward, then one row per class in label order, ``class`` being the class
folder name (``0``..``K-1``). The other cells keep the dataset's own names (``Boeing 737``,
``Boeing``, ``cat``), joined per image from its annotation files (FGVC: images_family_*.txt and
images_manufacturer_*.txt; Pet: annotations/list.txt, SPECIES 1 = cat, 2 = dog). A class with
two parents, or a name at two ranks, is an error naming the files (the tree would not be one),
never a guess. A download without those files (an older FGVC archive without the family /
manufacturer lists, a Pet download without list.txt) is laid out without taxonomy.csv. Use it
with ``data.taxonomy: DEST/taxonomy.csv`` in a spec (an absolute path: relative ones are read
from the spec's folder) or ``bioclf-report --taxonomy DEST/taxonomy.csv``.

iNaturalist is left out: its smallest torchvision version ("2021_train_mini") is a 42 GB
download of 10,000 classes, no quick table. Without network access the download fails with one
line saying where to put the files (downloaded on another machine) so that the next run finds them.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bioclf.errors import BioclfError
from bioclf.netutil import socket_timeout

log = logging.getLogger(__name__)

MARKER = ".bioclf-fetch.json"
TAXONOMY = "taxonomy.csv"
DOWNLOAD_TIMEOUT_S = 30.0
SPLITS = ("train", "val", "test")


@dataclass
class Layout:
    """What to put where: (source file, split, label or None for test); and the class tree, when
    the dataset defines one: ``taxonomy[label]`` holds that class's names at ``taxonomy_ranks``
    (the ranks above the class, lowest first)."""

    items: list[tuple[Path, str, int | None]]
    class_names: list[str] | None
    num_classes: int
    taxonomy: list[tuple[str, ...]] | None = None
    taxonomy_ranks: tuple[str, ...] = ()


@dataclass
class FetchResult:
    name: str
    dest: Path
    counts: dict[str, int] = field(default_factory=dict)
    num_classes: int = 0
    linked: int = 0
    copied: int = 0
    already_there: bool = False


# --- the layouts (read the files torchvision leaves on disk; no torchvision needed) ----------

def _flowers102_layout(raw: Path, val_fraction: float, seed: int) -> Layout:
    from scipy.io import loadmat

    base = raw / "flowers-102"
    images = base / "jpg"
    _require(base, [images, base / "imagelabels.mat", base / "setid.mat"])
    labels = np.asarray(loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"]).astype(int).ravel() - 1
    set_ids = loadmat(base / "setid.mat", squeeze_me=True)
    items = []
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        for image_id in np.atleast_1d(set_ids[key]).astype(int).tolist():
            label = int(labels[image_id - 1])
            items.append((images / f"image_{image_id:05d}.jpg", split, label))
    num_classes = int(labels.max()) + 1
    return Layout(items, _torchvision_classes("Flowers102", num_classes), num_classes)


def _oxford_pets_layout(raw: Path, val_fraction: float, seed: int) -> Layout:
    base = raw / "oxford-iiit-pet"
    images, annotations = base / "images", base / "annotations"
    _require(base, [images, annotations / "trainval.txt", annotations / "test.txt"])
    names: dict[int, str] = {}

    def read(split_file: Path) -> list[tuple[str, int]]:
        rows = []
        for line in split_file.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            image_id, label = line.split()[:2]
            rows.append((image_id, int(label) - 1))
            names.setdefault(int(label) - 1, " ".join(p.title() for p in image_id.rsplit("_", 1)[0].split("_")))
        return rows

    trainval, test = read(annotations / "trainval.txt"), read(annotations / "test.txt")
    num_classes = max(names) + 1
    class_names = [names.get(k, str(k)) for k in range(num_classes)]
    taxonomy = _pets_species(annotations, dict(trainval + test), class_names)
    items = []
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = {}
    for image_id, label in trainval:
        by_class.setdefault(label, []).append(image_id)
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        n_val = int(round(val_fraction * len(ids))) if len(ids) > 1 else 0
        n_val = min(max(n_val, 1 if val_fraction > 0 and len(ids) > 1 else 0), len(ids) - 1)
        chosen = set(rng.permutation(len(ids))[:n_val].tolist())
        for k, image_id in enumerate(ids):
            items.append((images / f"{image_id}.jpg", "val" if k in chosen else "train", label))
    items += [(images / f"{image_id}.jpg", "test", label) for image_id, label in test]
    return Layout(items, class_names, num_classes, taxonomy, ("species",) if taxonomy else ())


PET_SPECIES = {"1": "cat", "2": "dog"}


def _pets_species(annotations: Path, label_of: dict[str, int], class_names: list[str]) -> list[tuple[str, ...]] | None:
    """breed -> cat / dog from annotations/list.txt (``Image CLASS-ID SPECIES BREED-ID``, CLASS-ID
    = label + 1); None without list.txt."""
    path = annotations / "list.txt"
    if not path.is_file():
        log.info("oxford_pets: no taxonomy.csv (%s is missing)", path)
        return None
    observations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[1].isdigit():
            raise BioclfError(f"{path} line {number}: expected 'Image CLASS-ID SPECIES BREED-ID', got {line.strip()!r}")
        image_id, label, species = fields[0], int(fields[1]) - 1, fields[2]
        if species not in PET_SPECIES:
            raise BioclfError(f"{path} line {number}: SPECIES {species!r} is neither 1 (cat) nor 2 (dog)")
        if not 0 <= label < len(class_names):
            raise BioclfError(f"{path} line {number}: CLASS-ID {fields[1]} is not a class of trainval.txt / "
                              f"test.txt (1..{len(class_names)})")
        if label_of.get(image_id, label) != label:
            raise BioclfError(f"{path} line {number}: {image_id} has CLASS-ID {fields[1]}, "
                              f"trainval.txt / test.txt say {label_of[image_id] + 1}")
        observations.append((label, (PET_SPECIES[species],), (f"line {number}",)))
    return _class_tree("oxford_pets", "breed", class_names, ("species",), observations, str(path))


def _fgvc_aircraft_layout(raw: Path, val_fraction: float, seed: int) -> Layout:
    data = raw / "fgvc-aircraft-2013b" / "data"
    _require(data, [data / "images", data / "variants.txt"] +
             [data / f"images_variant_{s}.txt" for s in ("train", "val", "test")])
    classes = _name_list(data / "variants.txt")
    index = {name: k for k, name in enumerate(classes)}
    items = []
    label_of: dict[str, dict[str, int]] = {}  # split -> image -> label
    for split in SPLITS:
        label_of[split] = {}
        for image, variant in _image_names(data / f"images_variant_{split}.txt"):
            if variant not in index:
                raise BioclfError(f"{data / f'images_variant_{split}.txt'}: variant {variant!r} is not in variants.txt")
            items.append((data / "images" / f"{image}.jpg", split, index[variant]))
            label_of[split][image] = index[variant]
    taxonomy = _fgvc_tree(data, label_of, classes)
    return Layout(items, classes, len(classes), taxonomy, FGVC_RANKS if taxonomy else ())


FGVC_RANKS = ("family", "manufacturer")
FGVC_LISTS = {"family": "families.txt", "manufacturer": "manufacturers.txt"}


def _fgvc_tree(data: Path, label_of: dict[str, dict[str, int]], classes: list[str]) -> list[tuple[str, ...]] | None:
    """variant -> family -> manufacturer, joined per image id across images_{variant,family,
    manufacturer}_<split>.txt; None when the family / manufacturer files are not there."""
    files = [data / FGVC_LISTS[rank] for rank in FGVC_RANKS]
    files += [data / f"images_{rank}_{split}.txt" for rank in FGVC_RANKS for split in SPLITS]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        log.info("fgvc_aircraft: no taxonomy.csv (%s lacks %s)", data, ", ".join(missing))
        return None
    known = {rank: set(_name_list(data / FGVC_LISTS[rank])) for rank in FGVC_RANKS}
    observations = []
    for split in SPLITS:
        named = {}
        for rank in FGVC_RANKS:
            path = data / f"images_{rank}_{split}.txt"
            named[rank] = dict(_image_names(path))
            unknown = sorted(set(named[rank].values()) - known[rank])
            if unknown:
                raise BioclfError(f"{path}: {rank} {unknown[0]!r} is not in {FGVC_LISTS[rank]}")
        for image, label in label_of[split].items():
            if all(image in named[rank] for rank in FGVC_RANKS):
                observations.append((label, tuple(named[rank][image] for rank in FGVC_RANKS),
                                     tuple(f"image {image} in images_{rank}_{split}.txt" for rank in FGVC_RANKS)))
    return _class_tree("fgvc_aircraft", "variant", classes, FGVC_RANKS, observations, str(data))


def _name_list(path: Path) -> list[str]:
    """One name per line (variants.txt, families.txt, manufacturers.txt)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _image_names(path: Path) -> list[tuple[str, str]]:
    """(image id, name) of each line ``<image id> <name with spaces>`` of an FGVC annotation file."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) < 2 or not parts[1].strip():
            raise BioclfError(f"{path} line {number}: expected '<image id> <name>', got {line.strip()!r}")
        rows.append((parts[0], parts[1].strip()))
    return rows


def _class_tree(dataset: str, class_word: str, class_names: list[str], ranks: tuple[str, ...],
                observations, where: str) -> list[tuple[str, ...]]:
    """Each class's names at ``ranks`` (lowest first), in label order, from ``observations``:
    (label, names at ranks, where each name was read). BioclfError, naming the files, when a class
    or a name has two parents, a class has none, or a name is at two ranks (as read_taxonomy
    checks: the tree keeps the raw names, so they must be distinct across ranks)."""
    parent: list[dict[str, tuple[str, str]]] = [{} for _ in ranks]  # child -> (its name at the rank, where)
    for label, names, origins in observations:
        child, child_word = str(label), f"{class_word} {class_names[label]!r}"
        for level, (rank, name, origin) in enumerate(zip(ranks, names, origins)):
            if not name:
                raise BioclfError(f"{dataset}: empty {rank} name ({origin}, in {where})")
            seen = parent[level].setdefault(child, (name, origin))
            if seen[0] != name:
                raise BioclfError(f"{dataset}: {child_word} has two {rank} names, {seen[0]!r} ({seen[1]}) and "
                                  f"{name!r} ({origin}), in {where}: a taxonomy needs one {rank} per "
                                  f"{class_word if level == 0 else ranks[level - 1]}")
            child, child_word = name, f"{rank} {name!r}"
    rows = []
    for label, class_name in enumerate(class_names):
        if str(label) not in parent[0]:
            raise BioclfError(f"{dataset}: {class_word} {class_name!r} (class {label}) has no {ranks[0]} "
                              f"in {where}")
        chain, child = [], str(label)
        for level in range(len(ranks)):
            child = parent[level][child][0]
            chain.append(child)
        rows.append(tuple(chain))
    rank_of = {str(label): "class" for label in range(len(class_names))}
    for level, rank in enumerate(ranks):
        for name in dict.fromkeys(row[level] for row in rows):
            other = rank_of.setdefault(name, rank)
            if other != rank:
                raise BioclfError(f"{dataset}: {name!r} is both a {other} and a {rank} name in {where}: "
                                  f"taxonomy.csv keeps the dataset's names, and a name at two ranks would make "
                                  f"the tree a cycle")
    return rows


@dataclass(frozen=True)
class DatasetSource:
    name: str
    torchvision_class: str
    download_kwargs: dict
    layout: Callable[[Path, float, int], Layout]
    about: str


DATASETS: dict[str, DatasetSource] = {
    "flowers102": DatasetSource("flowers102", "Flowers102", {"split": "train"}, _flowers102_layout,
                                "Oxford 102 Flowers: 102 classes, official train / val / test splits"),
    "oxford_pets": DatasetSource("oxford_pets", "OxfordIIITPet", {"split": "trainval"}, _oxford_pets_layout,
                                 "Oxford-IIIT Pet: 37 breeds, val carved from trainval (seeded, per class)"),
    "fgvc_aircraft": DatasetSource("fgvc_aircraft", "FGVCAircraft", {"split": "train"}, _fgvc_aircraft_layout,
                                   "FGVC-Aircraft 2013b: 100 variants, official train / val / test splits"),
}
ALIASES = {"flowers": "flowers102", "flowers-102": "flowers102", "oxford-iiit-pet": "oxford_pets",
           "oxfordiiitpet": "oxford_pets", "pets": "oxford_pets", "oxford-pets": "oxford_pets",
           "fgvc-aircraft": "fgvc_aircraft", "fgvcaircraft": "fgvc_aircraft", "aircraft": "fgvc_aircraft"}


def dataset_source(name: str) -> DatasetSource:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise BioclfError(f"fetch-data: unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[key]


def _require(base: Path, paths: list[Path]) -> None:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(", ".join(str(p) for p in missing))


def _torchvision_classes(class_name: str, num_classes: int) -> list[str] | None:
    try:
        import torchvision.datasets as datasets

        names = list(getattr(getattr(datasets, class_name), "classes", None) or [])
    except Exception:  # noqa: BLE001 - names are a nicety
        return None
    return names if len(names) == num_classes else None


def default_download_dir() -> Path:
    from bioclf.datacheck.hashing import default_cache_root

    return default_cache_root() / "datasets"


# --- download -------------------------------------------------------------------------------

def download(source: DatasetSource, download_dir: Path) -> None:
    """torchvision's download of ``source`` into ``download_dir`` (it skips files already there)."""
    import torchvision.datasets as datasets

    download_dir.mkdir(parents=True, exist_ok=True)
    cls = getattr(datasets, source.torchvision_class)
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            cls(str(download_dir), download=True, **source.download_kwargs)
    except Exception as error:  # noqa: BLE001 - URLError, timeouts, checksum mismatches, a full disk ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BioclfError(
            f"could not download {source.name} ({type(error).__name__}: {reason[:160]}): needs network access; "
            f"or download it on another machine (torchvision.datasets.{source.torchvision_class}(root, "
            f"download=True)) into {download_dir} and rerun"
        ) from None


# --- lay out ----------------------------------------------------------------------------------

def _place(src: Path, dst: Path, copy: bool) -> bool:
    """Hard link ``src`` at ``dst`` (True), or copy it (False) where linking is not possible."""
    if not copy:
        try:
            os.link(src, dst)
            return True
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES,
                                   getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
                raise
    shutil.copy2(src, dst)
    return False


def _dest_state(dest: Path, name: str) -> bool:
    """True when DEST already holds this dataset (a finished fetch); error if it holds anything else."""
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise BioclfError(f"{dest}: exists and is not a folder")
    marker = dest / MARKER
    if marker.exists():
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if info.get("dataset") == name:
            return True
        raise BioclfError(f"{dest}: holds another fetched dataset ({info.get('dataset', '?')}); pick another DEST")
    if any(dest.iterdir()):
        raise BioclfError(f"{dest}: folder exists and is not empty; fetch-data writes a new folder")
    return False


def lay_out(
    name: str,
    raw_dir: str | Path,
    dest: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    copy: bool = False,
) -> FetchResult:
    """Lay the downloaded files of ``name`` under ``raw_dir`` out in DEST (module docstring)."""
    source = dataset_source(name)
    raw_dir, dest = Path(raw_dir).expanduser().absolute(), Path(dest).expanduser().absolute()
    if not 0.0 <= val_fraction < 1.0:
        raise BioclfError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    if _dest_state(dest, source.name):
        info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
        return FetchResult(source.name, dest, info.get("counts", {}), info.get("num_classes", 0), already_there=True)
    try:
        layout = source.layout(raw_dir, val_fraction, seed)
    except FileNotFoundError as error:
        raise BioclfError(f"{source.name}: the download in {raw_dir} is incomplete (missing {error})") from None
    missing = [src for src, _, _ in layout.items if not src.is_file()]
    if missing:
        raise BioclfError(f"{source.name}: {len(missing)} image file(s) listed by the split files are missing, "
                          f"e.g. {missing[0]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    result = FetchResult(source.name, dest, num_classes=layout.num_classes)
    try:
        test_rows = _place_files(layout, staging, copy, result)
        _check_every_class_has_images(source.name, layout.num_classes, staging)
        _write_side_files(source, layout, staging, test_rows, raw_dir, val_fraction, seed, result)
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _place_files(layout, staging: Path, copy: bool, result: FetchResult) -> list[tuple[str, object]]:
    """Every image linked (or copied) to its split / class folder in ``staging``; counts in
    ``result``. Returns the test images' (name, label) rows."""
    for split in ("train", "val"):
        for label in range(layout.num_classes):
            (staging / split / str(label)).mkdir(parents=True, exist_ok=True)
    (staging / "test").mkdir()
    test_rows = []
    for src, split, label in layout.items:
        if split == "test":
            target = staging / "test" / src.name
            test_rows.append((src.stem, label))
        else:
            target = staging / split / str(label) / src.name
        if _place(src, target, copy):
            result.linked += 1
        else:
            result.copied += 1
        result.counts[split] = result.counts.get(split, 0) + 1
    return test_rows


def _check_every_class_has_images(name: str, num_classes: int, staging: Path) -> None:
    for split in ("train", "val"):  # a class without images in a split would stop training
        empty = [str(k) for k in range(num_classes) if not any((staging / split / str(k)).iterdir())]
        if empty:
            raise BioclfError(f"{name}: split {split} has no images of class(es) {', '.join(empty[:5])} "
                              "(raise --val-fraction?)")


def _write_side_files(source, layout, staging: Path, test_rows, raw_dir: Path, val_fraction: float, seed: int,
                      result: FetchResult) -> None:
    """classes.txt (display names), test_labels.csv, taxonomy.csv (where the dataset has a class
    tree) and the marker saying what was laid out."""
    if layout.class_names:
        (staging / "classes.txt").write_text("\n".join(layout.class_names) + "\n", encoding="utf-8")
    if layout.taxonomy:
        _write_taxonomy(source.name, layout, staging / TAXONOMY)
    with open(staging / "test_labels.csv", "w", encoding="utf-8") as handle:
        handle.write("image_name,label\n")
        handle.writelines(f"{stem},{label}\n" for stem, label in sorted(test_rows))
    marker = {"dataset": source.name, "about": source.about, "download_dir": str(raw_dir),
              "counts": result.counts, "num_classes": layout.num_classes, "val_fraction": val_fraction,
              "seed": seed, "linked": result.linked, "copied": result.copied,
              "class_names_file": "classes.txt" if layout.class_names else None,
              "taxonomy_file": TAXONOMY if layout.taxonomy else None}
    (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _write_taxonomy(name: str, layout: Layout, path: Path) -> None:
    """``class,<rank>,...`` then one row per class in label order; read back with read_taxonomy,
    so that a file the report or a run would refuse is never left in DEST."""
    from bioclf.taxonomy import read_taxonomy

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("class",) + tuple(layout.taxonomy_ranks))
        writer.writerows((str(label),) + tuple(row) for label, row in enumerate(layout.taxonomy))
    try:
        read_taxonomy(path, [str(label) for label in range(layout.num_classes)])
    except BioclfError as error:
        raise BioclfError(f"{name}: the taxonomy built from the download fails its check: "
                          f"{str(error).replace(str(path), TAXONOMY)}") from None


def _raw_present(source: DatasetSource, raw_dir: Path) -> bool:
    """Whether the download is there to lay out. Missing or unreadable files: no (download).
    Files that are there but contradict each other (a BioclfError naming them, e.g. a variant in
    two families) are raised as they are: downloading again would find the same files."""
    try:
        source.layout(raw_dir, 0.2, 0)
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return False
    return True


def fetch_data(
    name: str,
    dest: str | Path,
    *,
    download_dir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    copy: bool = False,
    echo: Callable[[str], None] = print,
) -> FetchResult:
    """Download ``name`` (unless its files are already in ``download_dir``) and lay it out in DEST."""
    source = dataset_source(name)
    dest = Path(dest).expanduser().absolute()
    if _dest_state(dest, source.name):
        echo(f"{dest}: {source.name} is already there")
        return lay_out(source.name, download_dir or default_download_dir(), dest)
    raw_dir = Path(download_dir).expanduser().absolute() if download_dir else default_download_dir()
    if _raw_present(source, raw_dir):
        echo(f"{source.name}: using the download in {raw_dir}")
    else:
        echo(f"{source.name}: downloading into {raw_dir} (torchvision.datasets.{source.torchvision_class}) ...")
        download(source, raw_dir)
    result = lay_out(source.name, raw_dir, dest, val_fraction=val_fraction, seed=seed, copy=copy)
    return result
