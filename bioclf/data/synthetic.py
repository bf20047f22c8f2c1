"""The built-in generated dataset (``data.source: synthetic``).

Each class c has a fixed look, a function of c alone (not of the seed, so "class 3" means
the same thing in every run): a background colour (hue spread by the golden ratio, one of
three brightness levels, two saturations), a shape (circle, square, triangle, striped disc,
ring, cross, diamond, checkerboard) and a foreground colour that contrasts with the
background. Every image then gets its own jitter: shape position, size and rotation, colour
shifts, a brightness gradient and pixel noise. The background colour alone makes the task
learnable by a small CNN from scratch in a few epochs; the shapes make it more than a
colour lookup, and the jitter keeps images from being copies of each other.

Images are drawn lazily in ``image(i)`` from a numpy Generator seeded by (cfg.seed, split,
i): no memory is used, DataLoader workers produce identical pixels, and splits differ.
They are returned as PIL RGB images, so the same augmentation pipeline as for photos applies.
"""

from __future__ import annotations

import colorsys
import functools
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from bioclf.errors import BioclfError

if TYPE_CHECKING:  # type only: keeps bioclf.data importable without bioclf.spec
    from bioclf.spec.schema import SyntheticConfig

SPLITS = ("train", "val", "test")
_GOLDEN = 0.6180339887498949


# --- shapes, on coordinates (u, v) normalised by the shape's radius -----------------------

def _circle(u, v):
    return u * u + v * v <= 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.8


def _triangle(u, v):
    root3 = 1.7320508
    return (v >= -0.5) & (root3 * u + v <= 1.0) & (-root3 * u + v <= 1.0)


def _stripes(u, v):
    return (u * u + v * v <= 1.0) & (np.sin(u * (3.0 * np.pi)) > 0)


def _ring(u, v):
    rho2 = u * u + v * v
    return (rho2 <= 1.0) & (rho2 >= 0.3)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))


def _diamond(u, v):
    return np.abs(u) + np.abs(v) <= 1.0


def _checker(u, v):
    inside = np.maximum(np.abs(u), np.abs(v)) <= 0.85
    return inside & ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0)


SHAPES: dict[str, Callable] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "stripes": _stripes,
    "ring": _ring,
    "cross": _cross,
    "diamond": _diamond,
    "checker": _checker,
}
_SHAPE_LIST = tuple(SHAPES.values())


# --- class looks --------------------------------------------------------------------------

def class_look(label: int, hierarchy: tuple[int, ...] | None = None
               ) -> tuple[Callable, tuple[float, float, float], tuple[float, float, float]]:
    """(shape, background HSV, foreground HSV) of class ``label``: a fixed function of it (and of
    the tree, with ``hierarchy``: see ``_tree_look``)."""
    if hierarchy:
        return _tree_look(label, hierarchy)
    # Shifting the shape by one per round of shapes keeps classes c and c + 8 (the closest
    # hues of the golden-ratio sequence at small K) from also sharing a shape.
    rounds = label // len(_SHAPE_LIST)
    shape = _SHAPE_LIST[(label + rounds) % len(_SHAPE_LIST)]
    hue = (label * _GOLDEN) % 1.0
    value = (0.85, 0.5, 0.7)[label % 3]
    saturation = (0.55, 0.9)[(label // 3) % 2]
    # Complementary hue, nudged per round of shapes; dark on light backgrounds and vice versa.
    fg_hue = (hue + 0.5 + 0.12 * (rounds % 3 - 1)) % 1.0
    fg_value = 0.25 if value >= 0.7 else 0.95
    return shape, (hue, saturation, value), (fg_hue, 0.8, fg_value)


def _tree_look(label: int, hierarchy: tuple[int, ...]):
    """Looks that follow the tree (``data.synthetic.hierarchy``), so that confusions follow it
    too: a family owns a hue (golden-ratio spread over families), the genera of a family sit
    0.07 apart around it, and the siblings of a genus differ only by shape and a 0.015 nudge.
    With ``difficulty`` the colour jitter then blurs siblings most, genera of one family less and
    families least: a model's mistakes fall mostly inside a genus, some inside a family and few
    across families, as with real species (rank 3, an order, only shifts the brightness)."""
    per_genus = hierarchy[0]
    per_family = hierarchy[1] if len(hierarchy) > 1 else 1
    genus, sibling = divmod(label, per_genus)
    family, in_family = divmod(genus, per_family)
    order = family // hierarchy[2] if len(hierarchy) > 2 else 0
    shape = _SHAPE_LIST[(sibling + genus) % len(_SHAPE_LIST)]
    hue = (family * _GOLDEN + 0.07 * (in_family - (per_family - 1) / 2)
           + 0.015 * (sibling - (per_genus - 1) / 2)) % 1.0
    value = (0.8, 0.6)[order % 2]
    saturation = 0.75
    fg_hue = (hue + 0.5) % 1.0
    fg_value = 0.25 if value >= 0.7 else 0.95
    return shape, (hue, saturation, value), (fg_hue, 0.8, fg_value)


@functools.lru_cache(maxsize=8)
def _pixel_centres(size: int) -> np.ndarray:
    centres = np.arange(size, dtype=np.float32) + 0.5
    centres.setflags(write=False)  # shared between calls
    return centres


def _unit(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, _unit(saturation), _unit(value)), dtype=np.float32)


def render(label: int, size: int, rng: np.random.Generator, difficulty: float = 0.0,
           hierarchy: tuple[int, ...] | None = None) -> np.ndarray:
    """One HxWx3 uint8 image of class ``label``, its jitter drawn from ``rng``.

    ``difficulty`` widens the background colour jitter until neighbouring classes overlap
    (hue spread up to +-0.25, value up to +-0.3) and raises the pixel noise, so that colour
    alone no longer separates the classes and accuracy stays below 100% for a few epochs.
    """
    shape, (hue, sat, val), (fg_hue, fg_sat, fg_val) = class_look(label, hierarchy)
    jitter = rng.uniform(-1.0, 1.0, size=6)
    d = float(difficulty)
    background = _rgb(hue + (0.015 + 0.25 * d) * jitter[0], sat + (0.05 + 0.3 * d) * jitter[1],
                      val + (0.05 + 0.3 * d) * jitter[2])
    foreground = _rgb(fg_hue + 0.03 * jitter[3], fg_sat + 0.1 * jitter[4], fg_val + 0.05 * jitter[5])
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    radius = rng.uniform(0.2, 0.34) * size
    angle = rng.uniform(0.0, 2.0 * np.pi)
    gradient, direction = rng.uniform(0.0, 0.25), rng.uniform(0.0, 2.0 * np.pi)

    centres = _pixel_centres(size)
    dx = ((centres - cx) / radius)[None, :]
    dy = ((centres - cy) / radius)[:, None]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    mask = shape(cos * dx + sin * dy, cos * dy - sin * dx)

    ramp = ((centres / size - 0.5) * np.float32(np.cos(direction)))[None, :] + (
        (centres / size - 0.5) * np.float32(np.sin(direction))
    )[:, None]
    image = background * (1.0 + np.float32(gradient) * ramp)[:, :, None]
    image[mask] = foreground
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(0.03 + 0.15 * d)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --- the dataset --------------------------------------------------------------------------

class SyntheticDataset(Dataset):
    """Split ``split`` of the generated dataset described by ``cfg`` (a SyntheticConfig).

    train / val: ``(transform(image), label)``, class-major order like ClassFolderDataset;
    test: unlabelled, ``(transform(image), index)``; its generating classes are kept in
    ``hidden_targets`` (label = index mod num_classes) for checking predictions.
    """

    def __init__(self, cfg: "SyntheticConfig", split: str, transform: Callable | None = None):
        if split not in SPLITS:
            raise BioclfError(f"synthetic split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.cfg = cfg
        self.split = split
        self.transform = transform
        self.size = int(cfg.image_size)
        num_classes = int(cfg.num_classes)
        self.classes = [str(c) for c in range(num_classes)]
        # Seeds are non-negative 64-bit words for SeedSequence; % keeps -1 and 1 apart.
        self._entropy = (int(cfg.seed) % 2**64, SPLITS.index(split))
        if split == "test":
            self.samples: list = [f"synthetic/test/{i:06d}.png" for i in range(int(cfg.test_images))]
            self.targets: list[int] = []
            self.hidden_targets = [i % num_classes for i in range(len(self.samples))]
            self._labels = self.hidden_targets
        else:
            per_class = int(cfg.train_per_class if split == "train" else cfg.val_per_class)
            self.samples = [
                (f"synthetic/{split}/{label}/{j:06d}.png", label)
                for label in range(num_classes)
                for j in range(per_class)
            ]
            self.targets = [label for _, label in self.samples]
            self._labels = self.targets

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, index: int) -> Image.Image:
        """The raw generated image ``index`` (deterministic, no transform)."""
        if not 0 <= index < len(self):
            raise IndexError(f"synthetic {self.split} index {index} out of range 0..{len(self) - 1}")
        rng = np.random.default_rng(np.random.SeedSequence((*self._entropy, index)))
        hierarchy = getattr(self.cfg, "hierarchy", None)
        return Image.fromarray(render(self._labels[index], self.size, rng, getattr(self.cfg, "difficulty", 0.0),
                                      tuple(hierarchy) if hierarchy else None))

    def __getitem__(self, index: int):
        image = self.image(index)
        output = self.transform(image) if self.transform else image
        return output, (index if self.split == "test" else self._labels[index])
