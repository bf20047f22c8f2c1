"""``bioclf-exp fetch-data NAME DEST``: a public fine-grained dataset in the class-folder layout.

Downloads through torchvision's dataset classes (their URLs and checksums) into a download
cache (default ``$XDG_CACHE_HOME/bioclf/datasets``, else ``~/.cache/bioclf/datasets``), then lays
the files out as::

    DEST/train/<label>/<image>   DEST/val/<label>/<image>   DEST/test/<image>   (flat, unlabeled)
    DEST/classes.txt             one display name per line, in label order (data.class_names_file)
    DEST/test_labels.csv         image_name,label of the test split (to score a prediction CSV)
    DEST/.bioclf-fetch.json      what was fetched, from where, and how many files per split

Class folders are the integers 0..K-1 (the label). Files are hard links to the download (no
extra disk space; a copy where linking is not possible, or with ``copy=True``): the download is
never moved or changed, and the layout is built in a temporary sibling folder that is renamed to
DEST only when complete, so an interrupted fetch leaves no half dataset.

Datasets (``DATASETS``):

| name | classes | train / val / test | source |
|---|---|---|---|
| flowers102 | 102 | 1,020 / 1,020 / 6,149 | Oxford 102 Flowers, the official splits (setid.mat) |
| oxford_pets | 37 | 80% / 20% of trainval (per class, seeded) / 3,669 | Oxford-IIIT Pet |
| fgvc_aircraft | 100 variants | 3,334 / 3,333 / 3,333 | FGVC-Aircraft 2013b, the official splits |

iNaturalist is left out: its smallest torchvision version ("2021_train_mini") is a 42 GB
download of 10,000 classes, no quick table. Without network access the download fails with one
line saying where to put the files (downloaded on another machine) so that the next run finds them.
"""

from __future__ import annotations

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
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass
class Layout:
    """What to put where: (source file, split, label or None for test)."""

    items: list[tuple[Path, str, int | None]]
    class_names: list[str] | None
    num_classes: int


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
    num_classes = max(names) + 1
    return Layout(items, [names.get(k, str(k)) for k in range(num_classes)], num_classes)


def _fgvc_aircraft_layout(raw: Path, val_fraction: float, seed: int) -> Layout:
    data = raw / "fgvc-aircraft-2013b" / "data"
    _require(data, [data / "images", data / "variants.txt"] +
             [data / f"images_variant_{s}.txt" for s in ("train", "val", "test")])
    lines = (data / "variants.txt").read_text(encoding="utf-8").splitlines()
    classes = [line.strip() for line in lines if line.strip()]
    index = {name: k for k, name in enumerate(classes)}
    items = []
    for split in ("train", "val", "test"):
        for line in (data / f"images_variant_{split}.txt").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            image, variant = line.strip().split(" ", 1)
            if variant not in index:
                raise BioclfError(f"{data / f'images_variant_{split}.txt'}: variant {variant!r} is not in variants.txt")
            items.append((data / "images" / f"{image}.jpg", split, index[variant]))
    return Layout(items, classes, len(classes))


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
    """classes.txt (display names), test_labels.csv and the marker saying what was laid out."""
    if layout.class_names:
        (staging / "classes.txt").write_text("\n".join(layout.class_names) + "\n", encoding="utf-8")
    with open(staging / "test_labels.csv", "w", encoding="utf-8") as handle:
        handle.write("image_name,label\n")
        handle.writelines(f"{stem},{label}\n" for stem, label in sorted(test_rows))
    marker = {"dataset": source.name, "about": source.about, "download_dir": str(raw_dir),
              "counts": result.counts, "num_classes": layout.num_classes, "val_fraction": val_fraction,
              "seed": seed, "linked": result.linked, "copied": result.copied,
              "class_names_file": "classes.txt" if layout.class_names else None}
    (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _raw_present(source: DatasetSource, raw_dir: Path) -> bool:
    try:
        source.layout(raw_dir, 0.2, 0)
    except (FileNotFoundError, OSError, ValueError, KeyError, BioclfError):
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
