"""Generated photo-like images and image folders for the data tests (no test here)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std that leave x / 255: differences in levels
# The report's train augmentation at test size.
REPORT = [
    {"name": "random_resized_crop", "size": 48, "scale": [0.7, 1.0]},
    {"name": "horizontal_flip", "p": 0.5},
    {"name": "rotation", "degrees": 20},
    {"name": "color_jitter", "brightness": 0.15, "contrast": 0.15, "saturation": 0.15, "hue": 0.1},
    {"name": "affine", "degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
    {"name": "random_erasing", "p": 0.2, "scale": [0.02, 0.1]},
]


def photo(width=96, height=72, seed=0) -> Image.Image:
    """Photo-like: smooth colour gradients, a few blobs, fine texture and some saturated areas."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    img = np.zeros((height, width, 3))
    for c in range(3):
        a, b, ph = rng.uniform(2, 6, 3)
        img[:, :, c] = 0.5 + 0.35 * np.sin(a * x * 3 + ph) * np.cos(b * y * 3 + c)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.2)]
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += blob[:, :, None] * rng.uniform(-0.6, 0.6, 3)
    img += rng.normal(0, 0.04, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def levels(t: torch.Tensor) -> torch.Tensor:
    return t.double() * 255 if t.dtype != torch.uint8 else t.double()


def make_dataset(root, n=3, size=(120, 90)) -> list[str]:
    """ROOT/{train,val}/{0,1}/<i>.jpg, quality 90; returns the paths."""
    paths = []
    for split in ("train", "val"):
        for label in ("0", "1"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                path = folder / f"{i}.jpg"
                photo(*size, seed=i + 10 * int(label)).save(path, quality=90)
                paths.append(str(path))
    return paths
