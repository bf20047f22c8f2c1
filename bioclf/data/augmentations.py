"""The augmentation registry: one entry per component. Imports no torch (specs validate fast).

A pipeline in a spec is an ordered list; each item is a component name (``horizontal_flip``)
or a mapping ``{name: rotation, degrees: 10}``. Each component is ONE entry here, registered
with ``@augmentation(stage=..., batch=...)``:

- the builder checks its parameters (in plain Python: ``bioclf-exp validate`` never imports
  torch; tests/test_transforms.py checks that the checks accept exactly what torchvision's
  constructor accepts) and returns ``TV(name, kwargs)``: the torchvision v2 transform it is,
  with its arguments. That transform is the reference: ``data.pipeline: reference`` runs it
  per PIL image in the loader workers; its keyword defaults are the component's defaults;
- ``stage``: ``"sizing"`` (takes an image of any size and makes it a fixed size: crops and
  resizes; on the device pipeline torchvision's own transform runs per decoded image on the
  device, drawing its parameters exactly as torchvision does), ``"image"`` (on the [0, 1]
  image) or ``"tensor"`` (on the normalised tensor: random_erasing, which the report applied
  after Normalize, so value=0 means the mean);
- ``batch`` (optional): the name of the BatchKernel class in bioclf/data/transforms.py that
  runs the component on a whole float batch on the device, drawing each sample's parameters
  from the distributions torchvision draws from. A component without one (or with parameters
  its kernel does not cover) runs per sample in the workers, and so does everything before it;
  the run logs which components ran where (tag bioclf.data.pipeline).

Adding a component: write its builder here; give it a batch kernel (a class in
transforms.py) when it is cheap on a batch.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from typing import Any, Callable, NamedTuple, Sequence

from bioclf.registry import Registry

AUGMENTATIONS = Registry("augmentation")
STAGES: dict[str, str] = {}  # component name -> "sizing" | "image" | "tensor"
BATCH_KERNELS: dict[str, str] = {}  # component name -> kernel class name in bioclf.data.transforms


class TV(NamedTuple):
    """A torchvision.transforms.v2 class by name, with the arguments to build it."""

    name: str
    kwargs: dict[str, Any]


def augmentation(stage: str = "image", batch: str | None = None) -> Callable:
    """Register a component's builder, the stage it belongs to and its optional batch kernel."""
    if stage not in ("sizing", "image", "tensor"):
        raise ValueError(f"stage must be sizing, image or tensor, got {stage!r}")

    def add(builder: Callable) -> Callable:
        AUGMENTATIONS.register()(builder)
        STAGES[builder.__name__] = stage
        if batch is not None:
            BATCH_KERNELS[builder.__name__] = batch
        return builder

    return add


# --- parameter checks: what torchvision's constructors check, and what they let through --------

def _tuple(value: Any) -> Any:
    """YAML gives lists where torchvision wants tuples."""
    return tuple(value) if isinstance(value, list) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _size(value: Any, what: str = "size") -> int | tuple[int, ...]:
    """An int >= 1 or a pair (h, w) of them; torchvision accepts negative sizes silently."""
    value = _tuple(value)
    parts = value if isinstance(value, tuple) else (value,)
    if not 1 <= len(parts) <= 2 or not all(_is_int(p) and p >= 1 for p in parts):
        raise ValueError(f"{what} must be a positive integer or a pair [height, width] of them, got {value!r}")
    return value


def _range(value: Any, what: str, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """A (min, max) pair of numbers in [low, high] with min <= max; torchvision only warns when reversed."""
    value = _tuple(value)
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ValueError(f"{what} must be a pair [min, max] of numbers, got {value!r}")
    if value[0] > value[1]:
        raise ValueError(f"{what} must be [min, max] with min <= max, got {list(value)}")
    if not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{what} values must be in [{low}, {high}], got {list(value)}")
    return value


def _pair(value: Any, what: str, low: float, high: float) -> tuple[float, float]:
    """Two numbers, each in [low, high] (not a range: RandomAffine's translate is (x, y))."""
    value = _tuple(value)
    if not (isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ValueError(f"{what} must be a pair of numbers, got {value!r}")
    if not all(low <= v <= high for v in value):
        raise ValueError(f"{what} values must be in [{low}, {high}], got {list(value)}")
    return value


def _probability(p: Any) -> float:
    if not _is_number(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got {p!r}")
    return p


def _degrees(value: Any, what: str = "degrees") -> Any:
    """A number >= 0 (meaning [-d, d]) or a [min, max] pair."""
    value = _tuple(value)
    if _is_number(value):
        if value < 0:
            raise ValueError(f"{what} must be >= 0 as a single number, got {value!r}")
        return value
    return _range(value, what)


def _jitter(value: Any, what: str, centre: float, bound: tuple[float, float]) -> Any:
    """ColorJitter's rule: a number v >= 0 means [centre - v, centre + v] (brightness, contrast
    and saturation clipped at 0), or a [min, max] pair; either within ``bound``."""
    value = _tuple(value)
    if _is_number(value):
        if value < 0:
            raise ValueError(f"{what} must be >= 0 as a single number, got {value!r}")
        low, high = centre - value, centre + value
        if centre == 1.0:
            low = max(low, 0.0)
        _range((low, high), what, *bound)
        return value
    return _range(value, what, *bound)


def _padding(value: Any) -> Any:
    value = _tuple(value)
    if value is None or _is_int(value):
        return value
    if isinstance(value, tuple) and len(value) in (1, 2, 4) and all(_is_int(v) for v in value):
        return value
    raise ValueError(f"padding must be an integer or 1, 2 or 4 integers, got {value!r}")


def _erase_value(value: Any) -> Any:
    value = _tuple(value)
    if _is_number(value) or value == "random":
        return value
    if isinstance(value, tuple) and value and all(_is_number(v) for v in value):
        return value
    raise ValueError(f"value must be a number, a list of numbers (one per channel) or 'random', got {value!r}")


# --- the components -----------------------------------------------------------------------

@augmentation(stage="sizing")
def resize(size=256):
    """Resize the shorter side to ``size`` (a pair: to exactly [h, w]), antialiased."""
    return TV("Resize", dict(size=_size(size), antialias=True))


@augmentation(stage="sizing")
def center_crop(size=224):
    """Crop the central ``size`` x ``size`` (or [h, w]) region."""
    return TV("CenterCrop", dict(size=_size(size)))


@augmentation(stage="sizing")
def random_crop(size=224, padding=None):
    """Crop a random ``size`` region, after optional zero padding (int, or 2 / 4 ints)."""
    return TV("RandomCrop", dict(size=_size(size), padding=_padding(padding)))


@augmentation(stage="sizing")
def random_resized_crop(size=224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crop a random area fraction ``scale`` and aspect ``ratio``, resize to ``size``."""
    return TV("RandomResizedCrop", dict(size=_size(size), scale=_range(scale, "scale", 0.0),
                                        ratio=_range(ratio, "ratio", 0.0), antialias=True))


@augmentation(batch="FlipKernel")
def horizontal_flip(p=0.5):
    """Mirror left-right with probability ``p``."""
    return TV("RandomHorizontalFlip", dict(p=_probability(p)))


@augmentation(batch="FlipKernel")
def vertical_flip(p=0.5):
    """Mirror top-bottom with probability ``p``."""
    return TV("RandomVerticalFlip", dict(p=_probability(p)))


@augmentation(batch="RotationKernel")
def rotation(degrees=20):
    """Rotate by a uniform angle in [-degrees, degrees] (or [min, max])."""
    return TV("RandomRotation", dict(degrees=_degrees(degrees)))


@augmentation(batch="ColorJitterKernel")
def color_jitter(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1):
    """Random brightness, contrast, saturation and hue changes (0 turns one off)."""
    unbounded = (0.0, math.inf)
    return TV("ColorJitter", dict(
        brightness=_jitter(brightness, "brightness", 1.0, unbounded),
        contrast=_jitter(contrast, "contrast", 1.0, unbounded),
        saturation=_jitter(saturation, "saturation", 1.0, unbounded),
        hue=_jitter(hue, "hue", 0.0, (-0.5, 0.5))))


@augmentation(batch="AffineKernel")
def affine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)):
    """Random affine: rotation, translation (fractions of width, height) and scaling."""
    translate = None if translate is None else _pair(translate, "translate", 0.0, 1.0)
    scale = None if scale is None else _range(scale, "scale", 0.0)
    if scale is not None and scale[0] <= 0:
        raise ValueError(f"scale values must be > 0, got {list(scale)}")
    return TV("RandomAffine", dict(degrees=_degrees(degrees), translate=translate, scale=scale))


@augmentation(stage="tensor", batch="ErasingKernel")
def random_erasing(p=0.2, scale=(0.02, 0.1), ratio=(0.3, 3.3), value=0):
    """Erase a random rectangle of the NORMALISED tensor with ``value`` (tensor stage)."""
    return TV("RandomErasing", dict(p=_probability(p), scale=_range(scale, "scale", 0.0, 1.0),
                                    ratio=_range(ratio, "ratio", 0.0), value=_erase_value(value)))


# Components that act on the normalised float tensor instead of the image.
TENSOR_STAGE = frozenset(name for name, stage in STAGES.items() if stage == "tensor")


def component_spec(item: dict[str, Any]) -> TV:
    """The torchvision transform (by name) and arguments of one normalised pipeline item."""
    return AUGMENTATIONS.get(item["name"])(**{key: value for key, value in item.items() if key != "name"})


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
        builder(**params)  # the builder's checks (plain Python)
    except (ValueError, TypeError) as error:
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
