"""The fast pipeline: the spec's component list run with fused, cheaper kernels (``data.pipeline``).

The same ordered list of named components builds either pipeline:

- ``reference``: ``build_transform`` (torchvision v2, one transform per component, PIL kernels,
  per-sample ``ToDtype`` / ``Normalize`` / ``RandomErasing``): the report's pipeline.
- ``fast``: the same components, the same parameter draws, faster kernels:

  * random parameters are drawn by the torchvision transforms themselves (``make_params``), in
    the same order, from the same torch RNG: for a given seed the fast and the reference
    pipelines draw identical crop boxes, flips, angles, jitter factors and orders;
  * JPEGs are decoded at reduced size (libjpeg DCT scaling, Pillow ``draft``) when the first
    component is ``random_resized_crop`` and the sampled box, scaled down by 2, 4 or 8, still
    holds at least the output size in both directions (so the crop is still downscaled, never
    upsampled). The box is sampled on the full-size header dimensions and scaled to the
    drafted image, so the crop distribution does not change;
  * ``random_resized_crop`` resizes the box straight out of the decoded image (Pillow
    ``resize(box=...)``, antialiased bilinear, as the reference; pixels just outside the box
    feed the filter at its border, where the reference clamps at the crop edge). When only
    flips follow it (the GPU split, or a crop + flip pipeline) torch's uint8 antialiased
    kernel resizes straight into the output tensor (within one level of Pillow's);
  * flips are folded into the adjacent rotation / affine (one nearest-neighbour warp of the
    composed matrix; alone, a flip is a transpose). Two rotations / affines in a row are NOT
    composed: the first one's canvas edge would be lost (what it fills with 0, the composed
    warp would fetch from the source; measured 2-6% of pixels on the report's angles), so
    each keeps its own nearest warp, fill 0, as in the reference;
  * ``color_jitter``: brightness, contrast and saturation are linear colour maps, so the ops
    between two hue steps are folded into one 3x3 matrix + offset, applied in one pass
    (Pillow ``convert("RGB", matrix)``), in the random order torchvision drew. Hue: exact
    (Pillow's HSV round trip, the very function the reference calls; ``fast``) or a rotation
    of the RGB cube about its grey axis folded into the same matrix (``fast_approx_hue``: an
    approximation, named as such: see below);
  * with a GPU (``split="device"``) images leave the workers as uint8 right after the last
    crop / resize; flips, rotations, colour jitter, affines, ``Normalize`` and
    ``RandomErasing`` run on the whole batch on the GPU (``BatchTransform``), so the CPU
    workers only decode and crop. On the CPU (``split="none"``) every component stays in the
    workers and ``Normalize`` is a lookup table per channel; normalising on the batch there
    was measured no cheaper (it moves 4 bytes per pixel through memory in the training
    process instead of a cache-resident image in a parallel worker).

Measured (benchmarks/README.md): on a CPU, exact ``fast`` is 1.0-1.4x the report's pipeline
per core (JPEG decoding, the crop's resize and Pillow's HSV hue round trip are most of the
cost and are the same kernels), ``fast_approx_hue`` 1.5-1.8x; with a GPU the CPU share is
2.7-3.0x smaller, 4-7x with ``data.resize_cache``.

Where ``fast`` is not bit-exact (see tests/test_fast_pipeline.py for the measured sizes):

- colour matrix: Pillow's ImageEnhance truncates to uint8 after every op and clamps to
  [0, 255] in between; the fused matrix rounds once and clamps once. The truncation bias
  (-0.5 level per op) is reproduced by the offset; clamping in between is not (pixels pushed
  past 255 by one op and pulled back by the next differ). The contrast mean (the reference
  takes the mean grey level of the image at the contrast step) is the luma of the group's
  input channel means (from 4 x 4 block means) mapped through the preceding ops (exact but
  for clamping and rounding);
- a flip folded into a warp: exact but for rounding ties;
- ``fast_approx_hue``: an HSV hue shift moves colours round a hexagon and keeps each pixel's
  max and min; a rotation about the grey axis moves them round a circle and keeps the mean of
  R, G, B. Measured on hymenoptera photos (224 px crops) against torchvision's HSV hue:
  mean |difference| 8.0 levels at hue +-0.1 (9.6 at -0.1), 5.1 at 0.05, 2.1 at 0.02, and the
  mean level 1.4-3.6 higher (HSV shifts lower luma). A YIQ rotation (the other usual matrix
  approximation) was measured further off: 10.9 / 13.8 / 6.4 / 2.8 levels. The ColorJitter hue
  draw itself moves pixels by tens of levels, so this is the same kind of augmentation, not
  the same one: an option, never the default;
- batch stage (float): no uint8 rounding between colour ops (the truncation bias is
  reproduced), HSV hue in continuous arithmetic (the reference quantises H, S, V to 8 bits;
  the shift itself is quantised to 1/255 turn as in the reference).

Everything here is module-level (no lambdas), so transforms pickle into DataLoader workers.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image, ImageStat
from torchvision.transforms import InterpolationMode
from torchvision.transforms import _functional_pil as _FP
from torchvision.transforms.functional import _get_inverse_affine_matrix

from bioclf.data.images import load_rgb
from bioclf.data.transforms import AUGMENTATIONS, TENSOR_STAGE, build_transform, normalize_pipeline

PIPELINES = ("fast", "fast_approx_hue", "reference")
DEFAULT_PIPELINE = "fast"
# Where the work of a fast pipeline runs:
#   "none":   everything per sample, normalised float32 out (the contract of build_transform);
#   "batch":  image components per sample, uint8 out; Normalize + RandomErasing on the batch;
#   "device": per sample only up to the last crop / resize (uint8 out); flips, rotations,
#             colour jitter and affines run on the batch too (on the GPU).
SPLITS = ("none", "batch", "device")

# Components that need the whole, variable-size image (they make the size fixed): per sample.
SIZING = frozenset({"random_resized_crop", "resize", "center_crop", "random_crop"})
GEOMETRIC = frozenset({"horizontal_flip", "vertical_flip", "rotation", "affine"})
COLOUR = frozenset({"color_jitter"})

# ITU-R 601-2 luma, as Pillow's convert("L") (19595, 38470, 7471 / 65536).
LUMA = np.array([19595, 38470, 7471], dtype=np.float64) / 65536.0
# Pillow's ImageEnhance truncates each op's result to uint8: on average half a level down.
TRUNCATION_BIAS = 0.5


def check_pipeline(name: str) -> str:
    if name not in PIPELINES:
        raise ValueError(f"data.pipeline: unknown pipeline {name!r}; valid: {', '.join(PIPELINES)}")
    return name


def build_pipeline(
    items: Sequence[Any],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    pipeline: str = DEFAULT_PIPELINE,
    split: str = "none",
    draft: bool = True,
) -> tuple[Callable, "BatchTransform"]:
    """(per-sample transform, batch transform) for the spec pipeline ``items``.

    The per-sample transform takes a PIL image or an image path (the fast one decodes the path
    itself, with draft); the batch transform takes the collated batch and a device and returns
    the normalised float32 batch there. ``reference`` (and ``split="none"``) give normalised
    float samples; their batch transform only moves the batch.
    """
    check_pipeline(pipeline)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if pipeline == "reference":
        return ReferenceSample(build_transform(items, mean, std)), BatchTransform(mean, std, normalize=False)
    hue = "rotation" if pipeline == "fast_approx_hue" else "exact"
    items = normalize_pipeline(items)
    image_items = [item for item in items if item["name"] not in TENSOR_STAGE]
    tensor_items = [item for item in items if item["name"] in TENSOR_STAGE]
    cut = len(image_items)
    if split == "device":
        last_sizing = max((i for i, item in enumerate(image_items) if item["name"] in SIZING), default=-1)
        cut = last_sizing + 1
        if any(item["name"] not in (GEOMETRIC | COLOUR) for item in image_items[cut:]):
            cut = len(image_items)  # a component the batch stage cannot run: keep all per sample
    batch = BatchTransform(mean, std, image_items[cut:] + tensor_items, hue=hue)
    if split == "none":
        sample = FastSample(image_items, hue=hue, draft=draft, finish=batch)
        return sample, BatchTransform(mean, std, normalize=False)
    return FastSample(image_items[:cut], hue=hue, draft=draft), batch


class ReferenceSample:
    """build_transform's transform, taking a path too (decoded with load_rgb)."""

    takes_path = True

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, image):
        if isinstance(image, (str, os.PathLike)):
            image = load_rgb(image)
        return self.transform(image)


# --- parameter draws: torchvision's own ------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _size_proxy(height: int, width: int) -> torch.Tensor:
    """A zero-copy stand-in for an image of this size, for torchvision's ``make_params``."""
    return torch.zeros(1, dtype=torch.uint8).expand(3, height, width)


def _build(item: dict) -> Any:
    return AUGMENTATIONS.get(item["name"])(**{k: v for k, v in item.items() if k != "name"})


# --- geometry: 3x3 inverse matrices (output pixel -> input pixel, corner-origin coordinates) --

def _flip_matrix(width: int, height: int, horizontal: bool) -> np.ndarray:
    if horizontal:
        return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height], [0.0, 0.0, 1.0]])


def _rotation_matrix(angle: float, width: int, height: int) -> np.ndarray:
    """Pillow's ``Image.rotate`` matrix (centre (w/2, h/2), counter-clockwise degrees)."""
    rad = -math.radians(angle % 360.0)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)
    d, e = round(-math.sin(rad), 15), round(math.cos(rad), 15)
    cx, cy = width / 2, height / 2
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])


def _affine_matrix(params: dict, width: int, height: int) -> np.ndarray:
    """torchvision's PIL affine matrix (centre (w/2, h/2))."""
    m = _get_inverse_affine_matrix(
        [width * 0.5, height * 0.5], float(params["angle"]), [float(t) for t in params["translate"]],
        float(params["scale"]), [float(s) for s in params["shear"]],
    )
    return np.array([m[0:3], m[3:6], [0.0, 0.0, 1.0]])


class _GeometricOp:
    """A flip, rotation or affine: draws its parameters like torchvision, returns its matrix."""

    def __init__(self, item: dict):
        self.name = item["name"]
        self.transform = _build(item)
        t = self.transform
        if self.name == "rotation" or self.name == "affine":
            nearest = InterpolationMode(t.interpolation) == InterpolationMode.NEAREST
            if not nearest or t.center is not None or getattr(t, "expand", False) or _fill_of(t) != 0:
                raise ValueError(f"{self.name}: the fast pipeline supports nearest, centred, same-size warps")

    @property
    def is_flip(self) -> bool:
        return self.name in ("horizontal_flip", "vertical_flip")

    def flips(self) -> bool:
        """Draw a flip: RandomHorizontalFlip.forward's own test."""
        return bool(torch.rand(1) < self.transform.p)

    def draw(self, width: int, height: int) -> np.ndarray | None:
        """The inverse matrix of this draw, or None for the identity (a flip not taken)."""
        t = self.transform
        if self.is_flip:
            if not self.flips():
                return None
            return _flip_matrix(width, height, self.name == "horizontal_flip")
        params = t.make_params([_size_proxy(height, width)])
        if self.name == "rotation":
            return _rotation_matrix(params["angle"], width, height)
        return _affine_matrix(params, width, height)


def _fill_of(transform) -> Any:
    fill = transform.fill
    return fill.get("others", 0) if isinstance(fill, dict) else fill


def _compose(matrices: list[np.ndarray]) -> np.ndarray:
    """Ops applied in list order: total inverse = inv_first @ inv_second @ ..."""
    total = np.eye(3)
    for m in matrices:
        total = total @ m
    return total


def _is_flip(name: str) -> bool:
    return name in ("horizontal_flip", "vertical_flip")


def _warp_pil(image: Image.Image, pending: list[tuple[str, np.ndarray]]) -> Image.Image:
    """Apply the pending (name, inverse matrix) ops (flips and at most one rotation / affine):
    flips alone exactly (transpose), else one nearest-neighbour warp of the composed matrix."""
    if all(_is_flip(name) for name, _ in pending):
        for flip in ("horizontal_flip", "vertical_flip"):
            if sum(name == flip for name, _ in pending) % 2:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT if flip == "horizontal_flip"
                                        else Image.Transpose.FLIP_TOP_BOTTOM)
        return image
    data = tuple(float(v) for v in _compose([m for _, m in pending])[:2].ravel())
    return image.transform(image.size, Image.Transform.AFFINE, data, resample=Image.Resampling.NEAREST, fillcolor=0)


# --- colour: linear maps -----------------------------------------------------------------------

BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3



def hue_shift_turns(hue_factor: float) -> float:
    """The hue shift the reference applies: Pillow's H is in 1/255 turns and torchvision adds
    ``int(hue_factor * 255)`` (truncated toward zero)."""
    return int(np.int32(hue_factor * 255)) / 255.0


def hue_rotation_matrix(hue_factor: float) -> np.ndarray:
    """3x3 RGB matrix turning colours about the grey axis (1, 1, 1) by the reference's hue
    shift (``fast_approx_hue``). Positive turns red towards yellow (R -> G -> B), as HSV's hue
    increase does; greys and the mean of R, G, B are kept."""
    theta = 2.0 * math.pi * hue_shift_turns(hue_factor)
    cos, sin = math.cos(theta), math.sin(theta)
    third, root = (1.0 - cos) / 3.0, math.sqrt(1.0 / 3.0) * sin
    return np.array([[cos + third, third - root, third + root],
                     [third + root, cos + third, third - root],
                     [third - root, third + root, cos + third]])


def _saturation_matrix(factor: float) -> np.ndarray:
    return factor * np.eye(3) + (1.0 - factor) * np.outer(np.ones(3), LUMA)


def _jitter_order(params: dict) -> list[tuple[int, float]]:
    factors = (params["brightness_factor"], params["contrast_factor"], params["saturation_factor"],
               params["hue_factor"])
    return [(int(i), factors[int(i)]) for i in params["fn_idx"] if factors[int(i)] is not None]


def _channel_means(image: Image.Image) -> np.ndarray:
    """Mean R, G, B: of the 4 x 4 block means (Pillow ``reduce``, 5x cheaper than the full
    histogram; the mean of block means is the mean, up to the blocks' uint8 rounding and the
    weight of partial blocks at the edges of sizes not divisible by 4)."""
    small = image.reduce(4) if min(image.size) >= 16 else image
    return np.array(ImageStat.Stat(small).mean, dtype=np.float64)


class _ColorJitterOp:
    def __init__(self, item: dict, hue: str):
        self.transform = _build(item)
        self.hue = hue

    def draw(self) -> list[tuple[int, float]]:
        return _jitter_order(self.transform.make_params([]))

    def apply(self, image: Image.Image, ops: list[tuple[int, float]]) -> Image.Image:
        group: list[tuple[int, float]] = []
        for op, factor in ops:
            if op == HUE and self.hue == "exact":
                image = _apply_colour_group(image, group)
                image = _FP.adjust_hue(image, factor)  # the reference's own kernel
                group = []
            else:
                group.append((op, factor))
        return _apply_colour_group(image, group)


def _apply_colour_group(image: Image.Image, group: list[tuple[int, float]]) -> Image.Image:
    """Brightness / contrast / saturation (/ approximate hue) in order, as one matrix pass.

    The map so far is ``x -> matrix @ x + offset``; ImageEnhance.Contrast blends with the mean
    grey level of the image it is given, which for the composed map is the luma of
    ``matrix @ channel_means + offset`` (exact but for clamping and per-pixel rounding).
    """
    if not group:
        return image
    matrix, offset = np.eye(3), np.zeros(3)
    means = _channel_means(image) if any(op == CONTRAST for op, _ in group) else np.zeros(3)
    for op, factor in group:
        if op == BRIGHTNESS:
            step, add = factor * np.eye(3), np.zeros(3)
        elif op == CONTRAST:
            grey = int(float(LUMA @ (matrix @ means + offset)) + 0.5)  # ImageEnhance.Contrast's grey
            step, add = factor * np.eye(3), np.full(3, (1.0 - factor) * grey)
        elif op == SATURATION:
            step, add = _saturation_matrix(factor), np.zeros(3)
        else:  # approximate hue: a turn about the grey axis; no truncation (Pillow's HSV path rounds)
            turn = hue_rotation_matrix(factor)
            matrix, offset = turn @ matrix, turn @ offset
            continue
        matrix, offset = step @ matrix, step @ offset + add - TRUNCATION_BIAS
    coefficients = tuple(float(v) for row, o in zip(matrix, offset) for v in (*row, o))
    return image.convert("RGB", coefficients)


# --- the per-sample transform ------------------------------------------------------------------

class _ResizedCropOp:
    def __init__(self, item: dict):
        self.transform = _build(item)
        size = self.transform.size
        self.out_h, self.out_w = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])

    def draw(self, width: int, height: int) -> dict:
        return self.transform.make_params([_size_proxy(height, width)])

    def needed_size(self, width: int, height: int, params: dict) -> tuple[int, int]:
        """Smallest full-image size at which the box still holds out_w x out_h pixels."""
        return (math.ceil(width * self.out_w / params["width"]), math.ceil(height * self.out_h / params["height"]))

    def apply(self, image: Image.Image, params: dict, scale: float = 1.0) -> Image.Image:
        """The crop as a PIL image, for the Pillow kernels that follow: Pillow's resize straight
        from the box (torch's faster kernel measured no faster once its planar output is
        interleaved back for Pillow)."""
        left, top = params["left"] / scale, params["top"] / scale
        box = (left, top, left + params["width"] / scale, top + params["height"] / scale)
        return image.resize((self.out_w, self.out_h), Image.Resampling.BILINEAR, box=box)

    def apply_tensor(self, image: Image.Image, params: dict, scale: float = 1.0) -> torch.Tensor:
        """The same crop as a uint8 CHW tensor, resized by torch's antialiased bilinear uint8
        kernel (vectorised: ~1.6x faster than Pillow's here; within 1 level of it). A box
        scaled by a draft factor is rounded to whole pixels of the drafted image."""
        width, height = image.size
        left = min(max(0, round(params["left"] / scale)), width - 1)
        top = min(max(0, round(params["top"] / scale)), height - 1)
        right = min(width, max(left + 1, round((params["left"] + params["width"]) / scale)))
        bottom = min(height, max(top + 1, round((params["top"] + params["height"]) / scale)))
        with warnings.catch_warnings():  # Pillow's array is read-only; it is only read
            warnings.simplefilter("ignore", UserWarning)
            pixels = torch.from_numpy(np.asarray(image))
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        crop = pixels.permute(2, 0, 1)[None, :, top:bottom, left:right]
        return nnf.interpolate(crop, size=(self.out_h, self.out_w), mode="bilinear", antialias=True,
                               align_corners=False)[0]


class _ReferenceOp:
    """A component without a fast kernel: the torchvision transform itself, on the PIL image."""

    def __init__(self, item: dict):
        self.transform = _build(item)

    def apply(self, image: Image.Image) -> Image.Image:
        return self.transform(image)


def _make_op(item: dict, hue: str):
    name = item["name"]
    if name == "random_resized_crop":
        return _ResizedCropOp(item)
    if name in GEOMETRIC:
        try:
            return _GeometricOp(item)
        except ValueError:
            return _ReferenceOp(item)
    if name in COLOUR:
        return _ColorJitterOp(item, hue)
    return _ReferenceOp(item)


def _draft_scale(full: tuple[int, int], decoded: tuple[int, int]) -> int:
    for scale in (1, 2, 4, 8):
        if (math.ceil(full[0] / scale), math.ceil(full[1] / scale)) == decoded:
            return scale
    raise ValueError(f"decoded size {decoded} is not a draft scale of {full}")


class FastSample:
    """Per-sample stage of the fast pipeline: PIL image or path -> uint8 CHW tensor (or, with
    ``finish``, that BatchTransform applied to it: a normalised float32 CHW tensor)."""

    takes_path = True  # ClassFolderDataset hands over the path: decoding is part of the plan

    def __init__(self, items: Sequence[dict], hue: str = "exact", draft: bool = True,
                 finish: "BatchTransform | None" = None):
        self.ops = [_make_op(item, hue) for item in items]
        self.draft = draft
        self.finish = finish
        # A random_resized_crop followed only by flips ends the plan: it is resized straight
        # into the output tensor (torch's uint8 kernel) and flipped there.
        self.tensor_from = len(self.ops)
        for i, op in enumerate(self.ops):
            if isinstance(op, _ResizedCropOp) and all(
                    isinstance(o, _GeometricOp) and o.is_flip for o in self.ops[i + 1:]):
                self.tensor_from = i
        self.first_crop = bool(self.ops) and isinstance(self.ops[0], _ResizedCropOp)

    def __call__(self, image) -> torch.Tensor:
        start, crop = 0, None
        if isinstance(image, (str, os.PathLike)):
            image, crop = self._decode(image)
            start = 1 if crop is not None else 0
        elif self.first_crop:
            crop = (self.ops[0].draw(*image.size), 1)
            start = 1
        if crop is not None and self.tensor_from > 0:
            image = self.ops[0].apply(image, *crop)
            crop = None
        pending: list[tuple[str, np.ndarray]] = []
        for op in self.ops[start:self.tensor_from]:
            if isinstance(op, _GeometricOp):
                m = op.draw(*image.size)
                if m is not None:
                    if not op.is_flip and any(not _is_flip(name) for name, _ in pending):
                        image, pending = _warp_pil(image, pending), []
                    pending.append((op.name, m))
                continue
            if pending:
                image, pending = _warp_pil(image, pending), []
            if isinstance(op, _ResizedCropOp):
                image = op.apply(image, op.draw(*image.size))
            elif isinstance(op, _ColorJitterOp):
                image = op.apply(image, op.draw())
            else:
                image = op.apply(image)
        if pending:
            image = _warp_pil(image, pending)
        if self.tensor_from < len(self.ops):
            last = self.ops[self.tensor_from]
            out = last.apply_tensor(image, *(crop or (last.draw(*image.size), 1)))
            for op in self.ops[self.tensor_from + 1:]:
                if op.flips():
                    out = out.flip(-1 if op.name == "horizontal_flip" else -2)
        else:
            out = pil_to_uint8(image)
        if self.finish is not None:
            out = self.finish.one(out)
        return out

    def _decode(self, path) -> tuple[Image.Image, tuple[dict, int] | None]:
        """The image at ``path`` and, when the plan starts with random_resized_crop, its drawn
        box and the draft scale it was decoded at."""
        if not self.first_crop:
            return load_rgb(path), None
        first = self.ops[0]
        drawn: dict = {}

        def wanted(size: tuple[int, int]) -> tuple[int, int] | None:
            # Drawn on the full-size header dimensions, as the reference draws after decoding.
            drawn["size"], drawn["params"] = size, first.draw(*size)
            return first.needed_size(*size, drawn["params"]) if self.draft else None

        image = load_rgb(path, draft=wanted)
        return image, (drawn["params"], _draft_scale(drawn["size"], image.size))


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 CHW tensor (a channels-last view; collate makes the batch contiguous)."""
    array = np.array(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


# --- the batch stage ------------------------------------------------------------------------------

class BatchTransform:
    """Collated batch -> normalised float32 batch on ``device``.

    Call: ``batch_transform(images, device=None, memory_format=None)``. A uint8 NCHW batch is
    moved as uint8 (4x less to copy), converted, run through the batch components (flips,
    rotations, colour jitter, affines: ``split="device"`` only), normalised, then randomly
    erased (per sample, in normalised space, as the reference). A float batch (already
    normalised per sample, e.g. by the reference pipeline) is only moved.

    Random parameters come from torch's global RNG of the calling process (seeded by the
    trainer, saved in resume checkpoints), drawn on the CPU, for the whole batch at once, from
    the distributions torchvision draws from. ``draws="torchvision"`` draws sample by sample
    through torchvision's own ``make_params`` instead (slower: ~0.1 ms per sample and
    component), which for a batch of one reproduces the reference's draws exactly (tests).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], items: Sequence[dict] = (),
                 hue: str = "exact", normalize: bool = True, draws: str = "batch"):
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.normalize = normalize
        self.hue = hue
        self.draws = draws
        self.image_ops = [_BatchGeometric(item) if item["name"] in GEOMETRIC else _BatchColorJitter(item, hue)
                          for item in items if item["name"] not in TENSOR_STAGE]
        self.tensor_ops = [_BatchErasing(item) for item in items if item["name"] in TENSOR_STAGE]

    def one(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 CHW sample -> normalised float32 (per-sample use, in a worker): a lookup
        table per channel instead of three float passes, erasing drawn with scalars."""
        if self.image_ops or not self.normalize:
            return self(image[None])[0]
        if not hasattr(self, "_lut"):
            levels = np.arange(256, dtype=np.float64) / 255.0
            self._lut = np.stack([((levels - m) / s) for m, s in zip(self.mean, self.std)]).astype(np.float32)
        pixels = image.numpy()
        out = np.empty(pixels.shape, dtype=np.float32)
        for c in range(pixels.shape[0]):
            np.take(self._lut[c % len(self._lut)], pixels[c], out=out[c])
        x = torch.from_numpy(out)
        for op in self.tensor_ops:
            x = op.one(x)
        return x

    def __call__(self, images: torch.Tensor, device: torch.device | str | None = None,
                 memory_format: torch.memory_format | None = None) -> torch.Tensor:
        if device is not None:
            images = images.to(device, non_blocking=True)
        if images.dtype == torch.uint8 and self.normalize:
            x = images.float()
            if self.image_ops:
                x = x.mul_(1.0 / 255.0)
                pending: list[_BatchGeometric] = []
                for op in self.image_ops:
                    if isinstance(op, _BatchGeometric):
                        if not op.is_flip and any(not o.is_flip for o in pending):
                            x, pending = _warp_batch(x, pending, self.draws), []
                        pending.append(op)
                        continue
                    x = _warp_batch(x, pending, self.draws)
                    pending = []
                    x = op(x, self.draws)
                x = _warp_batch(x, pending, self.draws)
                scale = torch.tensor([1.0 / s for s in self.std], device=x.device)
            else:
                scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=x.device)
            shift = torch.tensor([m / s for m, s in zip(self.mean, self.std)], device=x.device)
            x = x.mul_(scale[:, None, None]).sub_(shift[:, None, None])
            for op in self.tensor_ops:
                x = op(x)
            images = x
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        return images


def _warp_batch(x: torch.Tensor, ops: list["_BatchGeometric"], draws: str = "batch") -> torch.Tensor:
    """Flips and at most one rotation / affine: one nearest grid_sample, per-sample matrices."""
    if not ops:
        return x
    n, _, h, w = x.shape
    if draws == "torchvision":
        inverses = np.stack([_compose([m for m in (op.draw(w, h) for op in ops) if m is not None])
                             for _ in range(n)])
    else:
        inverses = np.broadcast_to(np.eye(3), (n, 3, 3))
        for op in ops:
            inverses = inverses @ op.draw_batch(n, w, h)
    if np.abs(inverses - np.eye(3)).max() < 1e-12:
        return x
    to_norm = np.array([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]])
    theta = (to_norm @ inverses @ np.linalg.inv(to_norm))[:, :2]
    grid = nnf.affine_grid(torch.as_tensor(theta, dtype=x.dtype, device=x.device), list(x.shape), align_corners=False)
    return nnf.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _uniform(n: int, bounds: Sequence[float]) -> np.ndarray:
    return torch.empty(n, dtype=torch.float64).uniform_(float(bounds[0]), float(bounds[1])).numpy()


class _BatchGeometric(_GeometricOp):
    def draw_batch(self, n: int, width: int, height: int) -> np.ndarray:
        """(n, 3, 3) inverse matrices, drawn for the whole batch from torchvision's distributions."""
        t = self.transform
        out = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        if self.is_flip:
            taken = (torch.rand(n) < t.p).numpy()
            out[taken] = _flip_matrix(width, height, self.name == "horizontal_flip")
            return out
        angle = _uniform(n, t.degrees)
        if self.name == "rotation":  # Pillow's rotate matrix, centre (w/2, h/2)
            rad = -np.radians(np.mod(angle, 360.0))
            a, b = np.round(np.cos(rad), 15), np.round(np.sin(rad), 15)
            d, e = np.round(-np.sin(rad), 15), np.round(np.cos(rad), 15)
            cx, cy = width / 2, height / 2
            out[:, 0, :] = np.stack([a, b, a * -cx + b * -cy + cx], 1)
            out[:, 1, :] = np.stack([d, e, d * -cx + e * -cy + cy], 1)
            return out
        # RandomAffine.make_params, vectorised; then torchvision's inverse matrix for PIL.
        tx = ty = np.zeros(n)
        if t.translate is not None:
            max_dx, max_dy = float(t.translate[0] * width), float(t.translate[1] * height)
            tx = np.round(_uniform(n, (-max_dx, max_dx)))  # int(round(.)): half to even, as here
            ty = np.round(_uniform(n, (-max_dy, max_dy)))
        scale = _uniform(n, t.scale) if t.scale is not None else np.ones(n)
        sx = sy = np.zeros(n)
        if t.shear is not None:
            sx = _uniform(n, t.shear[:2])
            if len(t.shear) == 4:
                sy = _uniform(n, t.shear[2:])
        for i in range(n):
            out[i] = _affine_matrix({"angle": angle[i], "translate": (tx[i], ty[i]), "scale": scale[i],
                                     "shear": (sx[i], sy[i])}, width, height)
        return out


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(LUMA, dtype=x.dtype, device=x.device)
    return (x * w[None, :, None, None]).sum(1, keepdim=True)


class _BatchColorJitter:
    """ColorJitter on a float [0, 1] batch: per-sample order and factors drawn as torchvision
    draws them; clamped to [0, 1] after every op, as the uint8 reference."""

    def __init__(self, item: dict, hue: str):
        self.transform = _build(item)
        self.hue = hue

    def _draw(self, n: int, draws: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, factors): per sample the permutation of the four ops (ColorJitter's
        ``randperm(4)``; absent ops are skipped where they fall) and the (n, 4) factors of
        brightness, contrast, saturation, hue (NaN: absent)."""
        t = self.transform
        bounds = (t.brightness, t.contrast, t.saturation, t.hue)
        if draws == "torchvision":
            params = [t.make_params([]) for _ in range(n)]
            order = torch.stack([p["fn_idx"] for p in params])
            keys = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
            factors = torch.tensor([[float("nan") if p[k] is None else p[k] for k in keys] for p in params],
                                   dtype=torch.float64)
            return order, factors
        order = torch.rand(n, 4).argsort(1)  # a uniform random permutation, as randperm(4)
        factors = torch.full((n, 4), float("nan"), dtype=torch.float64)
        for op, b in enumerate(bounds):
            if b is not None:
                factors[:, op].uniform_(float(b[0]), float(b[1]))
        return order, factors

    def __call__(self, x: torch.Tensor, draws: str = "batch") -> torch.Tensor:
        order, factors = self._draw(x.shape[0], draws)
        present = [op for op in range(4) if not torch.isnan(factors[:, op]).all()]
        bias = TRUNCATION_BIAS / 255.0
        for position in range(4):
            for op in present:
                rows = (order[:, position] == op).nonzero()[:, 0]
                if rows.numel() == 0:
                    continue
                f = factors[rows, op]
                index = rows.to(x.device)
                factor = f.to(x.device, x.dtype)[:, None, None, None]
                part = x.index_select(0, index)
                if op == BRIGHTNESS:
                    part = part * factor - bias
                elif op == CONTRAST:
                    grey = torch.floor(_luma(part).mean(dim=(1, 2, 3), keepdim=True) * 255.0 + 0.5) / 255.0
                    part = grey + factor * (part - grey) - bias
                elif op == SATURATION:
                    grey = _luma(part)
                    part = grey + factor * (part - grey) - bias
                elif self.hue == "rotation":
                    m = torch.as_tensor(np.stack([hue_rotation_matrix(v) for v in f.tolist()]), dtype=x.dtype,
                                        device=x.device)
                    part = torch.einsum("nij,njhw->nihw", m, part)
                else:  # the reference's quantised shift: int(h * 255) / 255 turn, truncated
                    shift = (torch.trunc(f * 255.0) / 255.0).to(x.device, x.dtype)
                    part = _hsv_hue_shift(part, shift)
                x.index_copy_(0, index, part.clamp_(0.0, 1.0))  # x is this call's own batch
        return x


def _hsv_hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """HSV hue + ``shift`` turns (per sample), value and saturation kept; continuous arithmetic."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    m, _ = x.min(1)
    c = v - m
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.remainder(h + 6.0 * shift[:, None, None], 6.0)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h, 6.0)
        out.append(v - c * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, 1)


class _BatchErasing:
    """RandomErasing on a batch: each sample draws like torchvision (p, then up to 10 boxes)."""

    def __init__(self, item: dict):
        t = _build(item)
        self.p, self.scale, self.ratio, self.value = t.p, t.scale, t.ratio, t.value
        self.log_ratio = tuple(float(v) for v in t._log_ratio)  # float32 logs, as torchvision draws between

    def one(self, x: torch.Tensor) -> torch.Tensor:
        """One CHW sample, in place: RandomErasing.make_params with scalars."""
        c, h, w = x.shape
        if torch.rand(1).item() >= self.p:
            return x
        for _ in range(10):
            area = h * w * torch.empty(1).uniform_(self.scale[0], self.scale[1]).item()
            aspect = math.exp(torch.empty(1).uniform_(*self.log_ratio).item())
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:  # the draws in RandomErasing.make_params's order
                fill = torch.empty(c, eh, ew).normal_() if self.value is None else \
                    torch.tensor(self.value).expand(c)[:, None, None]
                top = int(torch.randint(0, h - eh + 1, (1,)).item())
                left = int(torch.randint(0, w - ew + 1, (1,)).item())
                x[:, top:top + eh, left:left + ew] = fill
                return x
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        apply = torch.rand(n) < self.p
        area = h * w * torch.empty(n, 10, dtype=torch.float64).uniform_(self.scale[0], self.scale[1])
        aspect = torch.exp(torch.empty(n, 10, dtype=torch.float64).uniform_(*self.log_ratio))
        eh = torch.round(torch.sqrt(area * aspect)).long()
        ew = torch.round(torch.sqrt(area / aspect)).long()
        ok = (eh < h) & (ew < w)
        first = torch.argmax(ok.int(), 1)
        found = ok.any(1) & apply
        eh = eh.gather(1, first[:, None])[:, 0]
        ew = ew.gather(1, first[:, None])[:, 0]
        top = (torch.rand(n, dtype=torch.float64) * (h - eh + 1)).floor().long()
        left = (torch.rand(n, dtype=torch.float64) * (w - ew + 1)).floor().long()
        for i in found.nonzero()[:, 0].tolist():  # in place, the box only (p * batch of them)
            h_i, w_i, t_i, l_i = int(eh[i]), int(ew[i]), int(top[i]), int(left[i])
            if self.value is None:
                fill = torch.empty(c, h_i, w_i, dtype=torch.float32).normal_().to(x.device, x.dtype)
            else:
                fill = torch.tensor(self.value, dtype=x.dtype).to(x.device).expand(c)[:, None, None]
            x[i, :, t_i:t_i + h_i, l_i:l_i + w_i] = fill
        return x
