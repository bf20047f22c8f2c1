"""Augmentation registry, spec pipeline validation and the built transform (CPU, generated images)."""

import inspect
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bioclf.data.augmentations import AUGMENTATIONS, TENSOR_STAGE, normalize_pipeline
from bioclf.data.transforms import build_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def random_image(width=24, height=16, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# --- registry ------------------------------------------------------------------------------

def test_registry_has_the_report_components():
    assert set(AUGMENTATIONS) == {
        "resize", "center_crop", "random_crop", "random_resized_crop", "horizontal_flip", "vertical_flip",
        "rotation", "color_jitter", "affine", "random_erasing",
    }
    assert TENSOR_STAGE == {"random_erasing"}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_component_runs_with_its_defaults(name):
    torch.manual_seed(0)
    out = build_transform([name], MEAN, STD)(random_image(256, 256))
    assert out.dtype == torch.float32 and out.ndim == 3 and out.shape[0] == 3


# --- normalize_pipeline --------------------------------------------------------------------

def test_normalize_pipeline_keeps_only_given_params():
    items = [
        "horizontal_flip",
        {"name": "rotation", "degrees": 10},
        {"name": "random_resized_crop", "scale": [0.7, 1.0]},
    ]
    assert normalize_pipeline(items) == [
        {"name": "horizontal_flip"},
        {"name": "rotation", "degrees": 10},
        {"name": "random_resized_crop", "scale": [0.7, 1.0]},
    ]
    # Idempotent: a validated pipeline validates to itself (configs are re-validated on load).
    assert normalize_pipeline(normalize_pipeline(items)) == normalize_pipeline(items)
    assert normalize_pipeline([]) == []


def test_unknown_component_lists_valid_names():
    with pytest.raises(ValueError) as info:
        normalize_pipeline(["resize", "horizonal_flip"])
    message = str(info.value)
    assert message.startswith("[1] unknown augmentation 'horizonal_flip'")
    assert "did you mean horizontal_flip" in message
    assert "valid: " in message and "random_erasing" in message


def test_unknown_parameter_suggests_close_match():
    with pytest.raises(ValueError) as info:
        normalize_pipeline(["resize", "center_crop", {"name": "rotation", "degres": 10}])
    assert str(info.value) == "[2] rotation: unknown parameter 'degres' (did you mean 'degrees'?); valid: degrees"


@pytest.mark.parametrize(
    "item, fragment",
    [
        ({"name": "rotation", "degrees": "abc"}, "degrees"),
        ({"name": "random_resized_crop", "scale": [0.1, 0.2, 0.3]}, "scale"),
        ({"name": "random_resized_crop", "scale": [0.9, 0.1]}, "min <= max"),
        ({"name": "center_crop", "size": -1}, "size"),
        ({"name": "resize", "size": "big"}, "size"),
        ({"name": "horizontal_flip", "p": 2}, "p"),
        ({"name": "color_jitter", "hue": 0.9}, "hue"),
        ({"name": "random_erasing", "value": "x"}, "value"),
    ],
)
def test_bad_parameter_values_are_errors(item, fragment):
    with pytest.raises(ValueError) as info:
        normalize_pipeline([item])
    message = str(info.value)
    assert message.startswith(f"[0] {item['name']}: invalid parameters (")
    assert fragment in message


@pytest.mark.parametrize(
    "items, fragment",
    [
        ([3], "[0] expected a component name"),
        (["resize", None], "[1] expected a component name"),
        ([["resize"]], "[0] expected a component name"),
        ([{"degrees": 3}], "[0] mapping without 'name'"),
        ([{"name": 5}], "[0] name must be a string"),
        ("horizontal_flip", "must be a list"),
        ({"name": "resize"}, "must be a list"),
    ],
)
def test_malformed_items_are_errors(items, fragment):
    with pytest.raises(ValueError) as info:
        normalize_pipeline(items)
    assert fragment in str(info.value)


def test_data_config_reports_the_pipeline_error_with_its_key():
    from pydantic import ValidationError

    from bioclf.spec.schema import DataConfig

    with pytest.raises(ValidationError) as info:
        DataConfig(train_transforms=["horizontal_flip", {"name": "rotation", "degres": 5}])
    text = str(info.value)
    assert "train_transforms" in text and "[1] rotation: unknown parameter 'degres'" in text


# --- build_transform -----------------------------------------------------------------------

def test_empty_pipeline_is_plain_normalisation():
    image = random_image(width=6, height=4)
    out = build_transform([], MEAN, STD)(image)
    assert type(out) is torch.Tensor  # not a tv_tensors subclass
    assert out.dtype == torch.float32 and out.shape == (3, 4, 6)
    pixels = np.asarray(image, dtype=np.float64).transpose(2, 0, 1)
    expected = (pixels / 255.0 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_resize_and_crop_give_the_requested_size():
    transform = build_transform([{"name": "resize", "size": 20}, {"name": "center_crop", "size": 16}], MEAN, STD)
    assert transform(random_image(40, 30)).shape == (3, 16, 16)
    assert transform(random_image(17, 50)).shape == (3, 16, 16)
    pair = build_transform([{"name": "resize", "size": [10, 12]}], MEAN, STD)
    assert pair(random_image(40, 30)).shape == (3, 10, 12)


def test_random_erasing_runs_after_normalize():
    # All-white image with mean = std = 0.5 normalises to exactly 1.0 everywhere, so the only
    # zeros can come from erasing in normalised space (erasing before Normalize would give -1).
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    items = [{"name": "random_erasing", "p": 1.0, "scale": [0.1, 0.2], "value": 0}]
    torch.manual_seed(0)
    out = build_transform(items, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(white)
    erased = (out == 0).all(dim=0)
    assert 0.1 * 32 * 32 * 0.5 <= erased.sum().item() <= 0.2 * 32 * 32 * 1.5
    assert torch.all((out == 0) | (out == 1.0))
    assert not torch.any(out == -1.0)


def test_erasing_listed_first_still_runs_on_the_tensor():
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    items = [{"name": "random_erasing", "p": 1.0, "value": 0}, {"name": "center_crop", "size": 32}]
    torch.manual_seed(0)
    out = build_transform(items, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(white)
    assert (out == 0).any() and out.shape == (3, 32, 32)


def test_identity_parameters_leave_the_image_unchanged():
    image = random_image(24, 16, seed=3)
    identity = [
        {"name": "rotation", "degrees": 0},
        {"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0},
        {"name": "horizontal_flip", "p": 0},
        {"name": "vertical_flip", "p": 0.0},
        {"name": "affine", "degrees": 0, "translate": [0, 0], "scale": [1, 1]},
        {"name": "random_erasing", "p": 0},
    ]
    torch.manual_seed(0)
    assert torch.equal(build_transform(identity, MEAN, STD)(image), build_transform([], MEAN, STD)(image))


def test_flip_with_p_one_mirrors_exactly():
    image = random_image(10, 6, seed=1)
    plain = build_transform([], MEAN, STD)(image)
    flipped = build_transform([{"name": "horizontal_flip", "p": 1}], MEAN, STD)(image)
    assert torch.equal(flipped, plain.flip(-1))


def test_same_torch_seed_gives_same_augmentation():
    image = random_image(64, 48, seed=2)
    items = [{"name": "random_resized_crop", "size": 32, "scale": [0.3, 1.0]}, "horizontal_flip", "rotation",
             "color_jitter", "affine", {"name": "random_erasing", "p": 0.5}]
    transform = build_transform(items, MEAN, STD)
    torch.manual_seed(7)
    first = transform(image)
    torch.manual_seed(7)
    assert torch.equal(first, transform(image))
    assert first.shape == (3, 32, 32)


def test_built_transform_pickles():
    items = [{"name": "resize", "size": 20}, {"name": "center_crop", "size": 16}, "horizontal_flip", "random_erasing"]
    transform = build_transform(items, MEAN, STD)
    clone = pickle.loads(pickle.dumps(transform))
    image = random_image(30, 20)
    torch.manual_seed(1)
    expected = transform(image)
    torch.manual_seed(1)
    assert torch.equal(clone(image), expected)


# --- the registry's checks accept exactly what torchvision's constructors accept ------------

PARITY = {
    "horizontal_flip": [{"p": v} for v in (0, 0.5, 1, -0.1, 1.5, "x", None, True)],
    "rotation": [{"degrees": v} for v in (0, 20, -5, [-10, 10], [10, -10], [1, 2, 3], "x", None)],
    "color_jitter": [{k: v} for k in ("brightness", "contrast", "saturation")
                     for v in (0, 0.5, 2, -0.1, [0.5, 1.5], [-1, 1], [2, 1], "x")]
                    + [{"hue": v} for v in (0, 0.1, 0.5, 0.6, -0.1, [-0.2, 0.2], [-0.6, 0.1], [0.3, 0.1])],
    "affine": [{"translate": v} for v in ([0.1, 0.1], [0, 1], [1.5, 0.1], [-0.1, 0.1], [0.1], None)]
              + [{"scale": v} for v in ([0.9, 1.1], [0, 1], [-1, 1], [1.1, 0.9], None)]
              + [{"degrees": v} for v in (0, 10, -1, [5, -5])],
    "random_erasing": [{"p": v} for v in (0, 0.2, 1.2)]
                      + [{"scale": v} for v in ([0.02, 0.1], [0.0, 1.0], [-0.1, 0.5], [0.5, 1.5], [0.2, 0.1])]
                      + [{"value": v} for v in (0, 1.5, [0.1, 0.2, 0.3], "random", "x", None)],
    "random_resized_crop": [{"scale": v} for v in ([0.08, 1.0], [0.5, 0.2], [0.1, 0.2, 0.3])]
                           + [{"size": v} for v in (224, [224, 200], 0, "x")],
    "random_crop": [{"padding": v} for v in (None, 4, [1, 2], [1, 2, 3, 4], [1, 2, 3], "x")],
}


def _torchvision_accepts(name: str, params: dict) -> bool:
    """torchvision's constructor on the same arguments (reversed ranges, which torchvision only
    warns about, count as refused: the registry refuses them on purpose)."""
    import warnings

    from torchvision.transforms import v2

    from bioclf.data import augmentations as A

    tv_names = {"horizontal_flip": "RandomHorizontalFlip", "rotation": "RandomRotation",
                "color_jitter": "ColorJitter", "affine": "RandomAffine", "random_erasing": "RandomErasing",
                "random_resized_crop": "RandomResizedCrop", "random_crop": "RandomCrop"}
    defaults = {k: p.default for k, p in inspect.signature(A.AUGMENTATIONS.get(name)).parameters.items()}
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in {**defaults, **params}.items()}
    if name == "random_erasing" and args.get("value") is None:
        return False  # torchvision: "value should be either a number or str or a sequence"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            getattr(v2, tv_names[name])(**args)
        return True
    except Exception:  # noqa: BLE001 - any refusal
        return False


# Refused here on purpose although torchvision takes them without a word: reversed [min, max]
# ranges (an empty range is almost always a typo), booleans as numbers, sizes that are not
# positive integers.
STRICTER = {
    ("affine", "scale", (1.1, 0.9)), ("affine", "degrees", (5, -5)), ("rotation", "degrees", (10, -10)),
    ("horizontal_flip", "p", True), ("random_resized_crop", "size", 0), ("random_resized_crop", "size", "x"),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_parameter_checks_agree_with_torchvision(name):
    """What the registry accepts, torchvision builds (else a spec that validates fails at run
    time); what it refuses, torchvision refuses too, but for the deliberate STRICTER cases."""
    for params in PARITY[name]:
        try:
            normalize_pipeline([{"name": name, **params}])
            ours = True
        except ValueError:
            ours = False
        theirs = _torchvision_accepts(name, params)
        (key, value), = params.items()
        frozen = tuple(value) if isinstance(value, list) else value
        if ours:
            assert theirs, f"{name} {params}: validates but torchvision refuses it"
        elif theirs:
            assert (name, key, frozen) in STRICTER, f"{name} {params}: refused, torchvision takes it"
