"""Datasets over image folders: ``SPLIT/<class>/*`` (labelled) and a flat folder (unlabelled).

No torch here (DataLoader needs only ``__len__`` and ``__getitem__``): listing a dataset's
classes for ``bioclf-exp list`` / ``--dry-run`` stays fast.

Class order and labels (DESIGN.md, "Data layout"):
- all class folders named by integers ("0".."99"): sorted numerically and the integer IS the
  label, so the integers must be exactly 0..K-1 (the report's layout);
- otherwise: sorted as text, label = position (torchvision ImageFolder's rule);
- a mix of the two is an error: it is almost always a stray folder, and either rule would
  silently give labels the user did not mean.

Hidden entries (".name") are ignored; files without an image extension are skipped (as in
ImageFolder); files are found recursively under a class folder and sorted, so the sample
order is the same on every machine.

Symlinks: a symlink to a file is listed like the file (a dangling one too: reading it then
fails with a clear error, and the scan in bioclf.data.scan reports it). Symlinked folders
are followed, but every real folder is visited once, so a link back up the tree (a loop,
e.g. ``train/0/loop -> ..``) or a second link to an already listed folder is skipped with a
warning: the walk cannot hang or list the same image twice. A folder that cannot be read is
an error, not an empty folder.

``exclude``: absolute paths (e.g. files found unreadable by the scan under
``data.on_bad_image: skip``) left out of the samples.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from bioclf.data.images import is_image_file, load_rgb
from bioclf.errors import BioclfError

if TYPE_CHECKING:
    from bioclf.spec.schema import DataConfig

_INTEGER_NAME = re.compile(r"[0-9]+")

log = logging.getLogger(__name__)


def resolve_root(cfg: "DataConfig", base_dir: str | Path | None = None) -> Path:
    """cfg.root, relative to ``base_dir`` (the spec file's folder; None: the working directory)."""
    root = Path(cfg.root).expanduser()
    if not root.is_absolute():
        root = Path(base_dir if base_dir is not None else Path.cwd()) / root
    if not root.is_dir():
        raise BioclfError(f"data.root: dataset folder {root} not found")
    return root


def count_classes(cfg: "DataConfig", base_dir: str | Path | None = None) -> int:
    """The class folders of the train split (the names are checked as for training)."""
    split = resolve_root(cfg, base_dir) / "train"
    return len(order_classes(list_class_folders(split), split))


def check_num_classes(cfg: "DataConfig", found: int) -> None:
    """``data.num_classes``, when set, must equal the class folders found (a BioclfError naming both)."""
    if cfg.num_classes is not None and cfg.num_classes != found:
        raise BioclfError(f"data.num_classes is {cfg.num_classes} but {cfg.root} has {found} class folders")


def list_class_folders(split_dir: str | Path) -> list[str]:
    """The non-hidden sub-folder names of ``split_dir`` (unsorted); errors if there are none."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise BioclfError(f"{split_dir}: split folder not found (expected {split_dir}/<class>/<image>)")
    names = [entry.name for entry in _scan_folder(str(split_dir)) if _is_dir(entry) and not entry.name.startswith(".")]
    if not names:
        raise BioclfError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
    return names


def order_classes(names: list[str], split_dir: str | Path) -> list[str]:
    """Class folder names in label order (rules in the module docstring)."""
    integer = [name for name in names if _INTEGER_NAME.fullmatch(name)]
    if not integer:
        return sorted(names)
    if len(integer) != len(names):
        text = sorted(set(names) - set(integer))
        # Name the minority: that is the folder most likely to be the stray one.
        if len(text) <= len(integer):
            odd, kind, others = text, "text", "integers"
        else:
            odd, kind, others = sorted(integer, key=int), "an integer", "text"
        raise BioclfError(
            f"{Path(split_dir) / odd[0]}: class folder name is {kind} while the other class folders are {others} "
            f"(mixed names: {_preview(odd)}); name all class folders 0..K-1 or all by text"
        )
    ordered = sorted(names, key=int)
    numbers = [int(name) for name in ordered]
    if len(set(numbers)) != len(numbers):
        twins = sorted((name for name in ordered if numbers.count(int(name)) > 1), key=lambda name: (int(name), name))
        raise BioclfError(f"{split_dir}: class folders {', '.join(twins)} name the same integer label")
    if numbers != list(range(len(numbers))):
        missing = [str(n) for n in range(max(numbers) + 1) if n not in set(numbers)]
        raise BioclfError(
            f"{split_dir}: integer class folders must be exactly 0..K-1 (the folder name is the label); "
            f"found {_preview(ordered)}; missing {_preview(missing)}"
        )
    return ordered


def list_images(folder: str | Path) -> list[str]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted by path.

    Symlinked folders are followed once per real folder. Skipped with a warning: a link to
    ``folder`` itself or to a folder above it (a loop, which would also pull in other classes'
    images) and a second path to an already listed folder. An unreadable folder is a
    BioclfError naming it.
    """
    top = os.path.realpath(folder)
    found: list[str] = []
    visited: dict[tuple[int, int], str] = {}
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            info = os.stat(current)
        except OSError as error:
            raise BioclfError(f"{current}: cannot read folder ({error.strerror or error})") from None
        key = (info.st_dev, info.st_ino)
        if key in visited:
            _warn_once(f"{current}: skipped, it is a symlink to {visited[key]}, which is already listed "
                       "(a loop or a second link)")
            continue
        visited[key] = current
        for entry in _scan_folder(current):
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                if entry.is_symlink() and _contains(os.path.realpath(entry.path), top):
                    _warn_once(f"{entry.path}: skipped, it is a symlink to {os.path.realpath(entry.path)}, "
                               f"which contains {folder} (a loop)")
                    continue
                pending.append(entry.path)
            elif is_image_file(entry.name):
                found.append(entry.path)
    return sorted(found)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A skipped path is said once per process, however many times its folder is listed
    (the data check, the scan, each run's loaders)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def list_flat_images(folder: str | Path) -> list[str]:
    """Image files directly in ``folder`` (not in sub-folders; hidden entries skipped), sorted."""
    return sorted(
        entry.path
        for entry in _scan_folder(str(folder))
        if not entry.name.startswith(".") and not _is_dir(entry) and is_image_file(entry.name)
    )


def _scan_folder(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except PermissionError:
        raise BioclfError(f"{folder}: cannot read folder (permission denied)") from None
    except OSError as error:
        raise BioclfError(f"{folder}: cannot read folder ({error.strerror or error})") from None


def _is_dir(entry: os.DirEntry) -> bool:
    """A folder or a symlink to one; False for a dangling or looping symlink (listed as a file)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _normalized(paths: Iterable[str | os.PathLike]) -> frozenset[str]:
    return frozenset(os.path.normpath(os.fspath(path)) for path in paths)


def _preview(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class ClassFolderDataset:
    """``split_dir/<class>/*`` images as ``(transform(image), label)`` pairs.

    Attributes: ``classes`` (folder names in label order), ``samples`` ([(path, label)]),
    ``targets`` ([label]).
    """

    def __init__(
        self,
        split_dir: str | Path,
        transform: Callable | None = None,
        exclude: Iterable[str | os.PathLike] = frozenset(),
    ):
        self.root = Path(split_dir)
        self.transform = transform
        # Where to read each sample from when that is not its own path (the resize cache);
        # ``samples`` keeps the original paths (predictions name them).
        self.read_paths: dict[str, str] = {}
        self.classes = order_classes(list_class_folders(self.root), self.root)
        self.samples: list[tuple[str, int]] = []
        excluded = _normalized(exclude)
        self.excluded: list[str] = []  # paths left out because they were in ``exclude``
        for label, name in enumerate(self.classes):
            files = list_images(self.root / name)
            if not files:
                raise BioclfError(
                    f"{self.root / name}: class folder has no images (extensions: jpg, png, ... any case)"
                )
            if excluded:
                kept = [path for path in files if os.path.normpath(path) not in excluded]
                self.excluded.extend(path for path in files if os.path.normpath(path) in excluded)
                if not kept:
                    raise BioclfError(
                        f"{self.root / name}: class folder has no readable images (all {len(files)} are unreadable "
                        "and skipped by data.on_bad_image: skip)"
                    )
                files = kept
            self.samples.extend((path, label) for path in files)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return _load(self.read_paths.get(path, path), self.transform), label


class FlatFolderDataset:
    """Unlabelled images directly in ``folder`` (a test split) as ``(transform(image), index)``."""

    def __init__(self, folder: str | Path, transform: Callable | None = None):
        self.root = Path(folder)
        self.transform = transform
        if not self.root.is_dir():
            raise BioclfError(f"{self.root}: image folder not found")
        self.samples: list[str] = list_flat_images(self.root)
        if not self.samples:
            raise BioclfError(f"{self.root}: no images found (extensions: jpg, png, ... any case)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return _load(self.samples[index], self.transform), index


def _load(path: str, transform: Callable | None):
    """transform(image at ``path``); a transform marked ``takes_path`` decodes the file itself
    (the fast pipeline decodes JPEGs at reduced size when its crop allows)."""
    if transform is not None and getattr(transform, "takes_path", False):
        return transform(path)
    image = load_rgb(path)
    return transform(image) if transform else image


def read_class_names(path: str | Path, num_classes: int) -> list[str]:
    """Display names, one per line in label order; trailing blank lines are ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise BioclfError(f"{path}: cannot read class names file ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise BioclfError(f"{path}: class names file is not UTF-8 text") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if "" in names:
        # A blank line in the middle would shift every later name by one label.
        raise BioclfError(f"{path}: line {names.index('') + 1} is blank; one class name per line")
    if len(names) != num_classes:
        raise BioclfError(f"{path}: {len(names)} class names for {num_classes} classes; one name per class")
    return names
