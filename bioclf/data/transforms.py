"""The augmentation registry and the spec pipeline -> torchvision v2 transform.

A pipeline in a spec is an ordered list; each item is a component name (``horizontal_flip``)
or a mapping ``{name: rotation, degrees: 10}``. Every component is a builder registered in
AUGMENTATIONS that returns a torchvision.transforms.v2 transform; its keyword defaults are
the component's defaults.

Where each component runs (see build_transform):
- image stage, in list order, on the PIL image: geometric and colour augmentations. PIL
  kernels were measured faster than uint8-tensor kernels for the report's train pipeline
  (ColorJitter's hue on tensors dominates), and they are what the report's pipeline ran on;
- then ToImage -> ToDtype(float32, scale=True) -> Normalize(mean, std);
- tensor stage, in list order, on the normalised tensor: components in TENSOR_STAGE
  (random_erasing, which the report applied after Normalize, so value=0 means the mean).

Everything here is module-level (no lambdas), so built transforms pickle into DataLoader
workers under fork and spawn alike.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms import v2

from bioclf.registry import Registry

AUGMENTATIONS = Registry("augmentation")

# Components that act on the normalised float tensor instead of the image.
TENSOR_STAGE = frozenset({"random_erasing"})


# --- parameter checks torchvision does not do at construction --------------------------------

def _tuple(value: Any) -> Any:
    """YAML gives lists where torchvision wants tuples."""
    return tuple(value) if isinstance(value, list) else value


def _size(value: Any, what: str = "size") -> int | tuple[int, ...]:
    """An int >= 1 or a pair (h, w) of them; torchvision accepts negative sizes silently."""
    value = _tuple(value)
    parts = value if isinstance(value, tuple) else (value,)
    if not 1 <= len(parts) <= 2 or not all(_is_int(p) and p >= 1 for p in parts):
        raise ValueError(f"{what} must be a positive integer or a pair [height, width] of them, got {value!r}")
    return value


def _range(value: Any, what: str) -> tuple[float, float]:
    """A (min, max) pair of numbers with min <= max; torchvision only warns when reversed."""
    value = _tuple(value)
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ValueError(f"{what} must be a pair [min, max] of numbers, got {value!r}")
    if value[0] > value[1]:
        raise ValueError(f"{what} must be [min, max] with min <= max, got {list(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# --- the components -----------------------------------------------------------------------

@AUGMENTATIONS.register()
def resize(size=256):
    """Resize the shorter side to ``size`` (a pair: to exactly [h, w]), antialiased."""
    return v2.Resize(_size(size), antialias=True)


@AUGMENTATIONS.register()
def center_crop(size=224):
    """Crop the central ``size`` x ``size`` (or [h, w]) region."""
    return v2.CenterCrop(_size(size))


@AUGMENTATIONS.register()
def random_crop(size=224, padding=None):
    """Crop a random ``size`` region, after optional zero padding (int, or 2 / 4 ints)."""
    return v2.RandomCrop(_size(size), padding=_tuple(padding))


@AUGMENTATIONS.register()
def random_resized_crop(size=224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crop a random area fraction ``scale`` and aspect ``ratio``, resize to ``size``."""
    return v2.RandomResizedCrop(
        _size(size), scale=_range(scale, "scale"), ratio=_range(ratio, "ratio"), antialias=True
    )


@AUGMENTATIONS.register()
def horizontal_flip(p=0.5):
    """Mirror left-right with probability ``p``."""
    return v2.RandomHorizontalFlip(p=p)


@AUGMENTATIONS.register()
def vertical_flip(p=0.5):
    """Mirror top-bottom with probability ``p``."""
    return v2.RandomVerticalFlip(p=p)


@AUGMENTATIONS.register()
def rotation(degrees=20):
    """Rotate by a uniform angle in [-degrees, degrees] (or [min, max])."""
    return v2.RandomRotation(_tuple(degrees))


@AUGMENTATIONS.register()
def color_jitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1):
    """Random brightness, contrast, saturation and hue changes (0 turns one off)."""
    return v2.ColorJitter(
        brightness=_tuple(brightness), contrast=_tuple(contrast), saturation=_tuple(saturation), hue=_tuple(hue)
    )


@AUGMENTATIONS.register()
def affine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)):
    """Random affine: rotation, translation (fractions of width, height) and scaling."""
    scale = None if scale is None else _range(scale, "scale")
    return v2.RandomAffine(_tuple(degrees), translate=_tuple(translate), scale=scale)


@AUGMENTATIONS.register()
def random_erasing(p=0.2, scale=(0.02, 0.1), ratio=(0.3, 3.3), value=0):
    """Erase a random rectangle of the NORMALISED tensor with ``value`` (tensor stage)."""
    return v2.RandomErasing(p=p, scale=_range(scale, "scale"), ratio=_range(ratio, "ratio"), value=_tuple(value))


# --- spec pipeline ------------------------------------------------------------------------

def normalize_pipeline(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Validate a spec pipeline and return it as ``[{"name": ..., **given_params}]``.

    Defaults are NOT filled in: the list is hashed and logged as the user wrote it.
    Raises ValueError starting with the item index (pydantic prefixes the key path).
    """
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, (list, tuple)):
        raise ValueError(
            f"a transform pipeline must be a list of names or {{name: ..., param: value}} mappings, got {items!r}"
        )
    return [_normalize_item(index, item) for index, item in enumerate(items)]


def _normalize_item(index: int, item: Any) -> dict[str, Any]:
    prefix = f"[{index}]"
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, dict):
        if "name" not in item:
            raise ValueError(
                f"{prefix} mapping without 'name': {item!r}; write e.g. {{name: rotation, degrees: 10}}"
            )
        name = item["name"]
        params = {key: value for key, value in item.items() if key != "name"}
    else:
        raise ValueError(
            f"{prefix} expected a component name or a {{name: ..., param: value}} mapping, "
            f"got {type(item).__name__} {item!r}"
        )
    if not isinstance(name, str):
        raise ValueError(f"{prefix} name must be a string, got {name!r}")
    if name not in AUGMENTATIONS:
        raise ValueError(f"{prefix} {AUGMENTATIONS.unknown_message(name)}")
    builder = AUGMENTATIONS.get(name)
    _check_param_names(prefix, name, builder, params)
    try:
        builder(**params)  # torchvision validates values at construction
    except Exception as error:  # noqa: BLE001 - ValueError, TypeError, ... all mean "bad value"
        given = ", ".join(f"{key}={value!r}" for key, value in params.items())
        raise ValueError(f"{prefix} {name}: invalid parameters ({given}): {error}") from None
    return {"name": name, **params}


def _check_param_names(prefix: str, name: str, builder: Callable, params: dict) -> None:
    valid = list(inspect.signature(builder).parameters)
    for key in params:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{prefix} {name}: unknown parameter {key!r}{hint}; valid: {', '.join(valid)}")


def build_transform(items: Sequence[Any], mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """PIL RGB image -> normalised float32 CHW tensor through the pipeline ``items``.

    ``items`` is a (normalised or raw) spec pipeline; an empty list gives just
    ToImage -> float -> Normalize.
    """
    image_stage, tensor_stage = [], []
    for item in normalize_pipeline(items):
        params = {key: value for key, value in item.items() if key != "name"}
        transform = AUGMENTATIONS.get(item["name"])(**params)
        (tensor_stage if item["name"] in TENSOR_STAGE else image_stage).append(transform)
    return v2.Compose(
        [
            *image_stage,
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std]),
            *tensor_stage,
            # A plain Tensor, so collate and the model never see the tv_tensors subclass.
            v2.ToPureTensor(),
        ]
    )
