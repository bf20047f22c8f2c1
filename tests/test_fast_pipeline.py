"""The fast pipeline draws from the same distribution as the reference (build_transform).

Three kinds of evidence, all on generated images (CPU, seconds):
- identity parameters: the same pixels as the reference (or within 1 level where a kernel differs);
- the same seed: torchvision's own make_params draws the fast pipeline's parameters in the
  reference's order, so both see the same boxes, flips, angles and jitter factors; the outputs
  then differ only by kernel rounding (measured: mean |difference| well under one level);
- independent draws: output statistics and parameter distributions agree (KS tests).
Levels are uint8 steps (1/255).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from bioclf.data import fast
from bioclf.data.cache import cache_folder, resized_paths
from bioclf.data.fast import BatchTransform, FastSample, build_pipeline
from bioclf.data.images import load_rgb
from bioclf.data.transforms import build_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std that leave x / 255: differences in levels
REPORT = [
    {"name": "random_resized_crop", "size": 48, "scale": [0.7, 1.0]},
    {"name": "horizontal_flip", "p": 0.5},
    {"name": "rotation", "degrees": 20},
    {"name": "color_jitter", "brightness": 0.15, "contrast": 0.15, "saturation": 0.15, "hue": 0.1},
    {"name": "affine", "degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1]},
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


def run_fast(items, image, seed, split="batch", pipeline="fast", mean_std=UNIT):
    sample, batch = build_pipeline(items, *mean_std, pipeline=pipeline, split=split)
    batch.draws = "torchvision"  # for one sample: the reference's draws, in its order
    torch.manual_seed(seed)
    out = sample(image)
    return batch(out[None])[0] if split != "none" else out


def run_reference(items, image, seed, mean_std=UNIT):
    torch.manual_seed(seed)
    return build_transform(items, *mean_std)(image)


# --- identity parameters -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "items",
    [
        [],
        [{"name": "horizontal_flip", "p": 1.0}],
        [{"name": "vertical_flip", "p": 1.0}, {"name": "horizontal_flip", "p": 1.0}],
        [{"name": "rotation", "degrees": 0}],
        [{"name": "affine", "degrees": 0, "translate": [0, 0], "scale": [1, 1]}],
        [{"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0}],
        [{"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": [0.1, 0.1]}],
        [{"name": "resize", "size": 40}, {"name": "center_crop", "size": 32}],
        [{"name": "rotation", "degrees": [90, 90]}],
        [{"name": "affine", "degrees": 0, "translate": [0.2, 0.2], "scale": [1, 1]}],
    ],
    ids=["empty", "hflip", "vflip+hflip", "rotation0", "affine-identity", "jitter-off", "hue-only-exact",
         "resize+crop", "rotation90", "integer-translate"],
)
def test_exact_components_give_the_reference_pixels(items):
    # Same kernels (Pillow's hue, resize, crop) or exact moves (flips, 90 degrees, whole-pixel
    # translations): identical output, the flips and warps composed or not.
    image = photo()
    for seed in range(3):
        np.testing.assert_allclose(run_fast(items, image, seed, mean_std=(MEAN, STD)),
                                   run_reference(items, image, seed, (MEAN, STD)), atol=1e-5)


@pytest.mark.parametrize(
    "jitter",
    [
        {"brightness": [1.2, 1.2], "contrast": 0, "saturation": 0, "hue": 0},
        {"brightness": [0.8, 0.8], "contrast": 0, "saturation": 0, "hue": 0},
        {"brightness": 0, "contrast": [0.8, 0.8], "saturation": 0, "hue": 0},
        {"brightness": 0, "contrast": [1.25, 1.25], "saturation": 0, "hue": 0},
        {"brightness": 0, "contrast": 0, "saturation": [0.7, 0.7], "hue": 0},
        {"brightness": 0, "contrast": 0, "saturation": [1.3, 1.3], "hue": 0},
    ],
)
def test_single_colour_ops_are_within_one_level(jitter):
    # One linear op as a colour matrix vs Pillow's ImageEnhance: both truncate (the matrix via
    # its -0.5 offset); the saturation grey is continuous instead of rounded, so a level can flip.
    items = [{"name": "color_jitter", **jitter}]
    image = photo(seed=1)
    diff = (levels(run_fast(items, image, 0)) - levels(run_reference(items, image, 0))).abs()
    assert diff.max() <= 1.0 + 1e-4
    assert diff.mean() < 0.3


def test_random_resized_crop_of_the_whole_image_is_the_reference_resize():
    image = photo(96, 72)
    items = [{"name": "random_resized_crop", "size": 40, "scale": [1, 1], "ratio": [4 / 3, 4 / 3]}]
    # Last per-sample op: torch's uint8 antialiased kernel, within one level of Pillow's.
    diff = (levels(run_fast(items, image, 0)) - levels(run_reference(items, image, 0))).abs()
    assert diff.max() <= 1.0 + 1e-4 and diff.mean() < 0.05
    # Followed by a rotation: Pillow's resize, the very kernel of the reference.
    items = items + [{"name": "rotation", "degrees": 0}]
    assert torch.equal(levels(run_fast(items, image, 0)), levels(run_reference(items, image, 0)))


# --- the same seed: the same draws ----------------------------------------------------------------

@pytest.mark.parametrize("split", ["none", "batch", "device"])
def test_report_pipeline_same_seed_same_draws(split):
    # The device split runs flips, rotation, jitter and affine on the batch (float, grid_sample);
    # with one process and batch size 1 its draws still come in the reference's order.
    diffs = []
    for seed in range(12):
        image = photo(seed=seed)
        d = levels(run_fast(REPORT, image, seed, split=split)) - levels(run_reference(REPORT, image, seed))
        diffs.append(d.abs())
    diffs = torch.stack(diffs)
    # Kernel rounding only: the fused colour matrix (clamping once, not after every op), one
    # nearest warp instead of two, continuous HSV on the batch. A different draw would give
    # tens of levels.
    assert diffs.mean() < 1.0, diffs.mean()
    assert (diffs > 8).double().mean() < 0.02


@pytest.mark.parametrize("degrees", [25, 0])
def test_batch_warps_are_the_pil_warps(degrees):
    # Flip + rotation + affine on the batch (grid_sample, nearest) vs per sample (Pillow): the
    # flip folded into the rotation, the affine a warp of its own, as the reference does it.
    items = [{"name": "horizontal_flip"}, {"name": "rotation", "degrees": degrees},
             {"name": "affine", "degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1]}]
    for seed in range(6):
        image = photo(48, 48, seed=seed)
        ref = levels(run_reference(items, image, seed))
        for split in ("batch", "device"):
            d = levels(run_fast(items, image, seed, split=split)) - ref
            assert (d.abs() > 0.5).double().mean() < 0.01  # rounding ties only


# --- independent draws: the same distributions -----------------------------------------------------

def test_crop_box_distribution_is_scale_free():
    # The resize cache and draft decoding draw boxes on a smaller image: the relative area and
    # aspect must keep their distribution (KS test; only whole-pixel rounding differs).
    t = fast._build({"name": "random_resized_crop", "size": 224, "scale": [0.7, 1.0]})
    torch.manual_seed(0)
    big = [t.make_params([fast._size_proxy(375, 500)]) for _ in range(1500)]
    small = [t.make_params([fast._size_proxy(188, 250)]) for _ in range(1500)]
    area = lambda boxes, h, w: [b["width"] * b["height"] / (h * w) for b in boxes]  # noqa: E731
    aspect = lambda boxes: [math.log(b["width"] / b["height"]) for b in boxes]  # noqa: E731
    assert stats.ks_2samp(area(big, 375, 500), area(small, 188, 250)).pvalue > 0.01
    assert stats.ks_2samp(aspect(big), aspect(small)).pvalue > 0.01
    centre = lambda boxes, w: [(b["left"] + b["width"] / 2) / w for b in boxes]  # noqa: E731
    assert stats.ks_2samp(centre(big, 500), centre(small, 250)).pvalue > 0.01


def test_colour_statistics_match_over_independent_draws():
    # Mean and std per channel over many independent jitters (different seeds on each side).
    items = [REPORT[3]]
    image = photo(40, 30, seed=3)
    n = 200
    ref = torch.stack([levels(run_reference(items, image, s)) for s in range(n)])
    sample, _ = build_pipeline(items, *UNIT, split="batch")
    torch.manual_seed(1000)
    per_sample = torch.stack([levels(sample(image)) for _ in range(n)])
    _, on_batch = build_pipeline(items, *UNIT, split="device")  # the jitter runs on the batch
    torch.manual_seed(2000)
    batched = levels(on_batch(fast.pil_to_uint8(image)[None].expand(n, -1, -1, -1)))
    for out in (per_sample, batched):
        # Per-draw image means spread by ~10 levels (brightness +-15%); 200 draws give a
        # standard error of ~0.8 level on the mean, so 2.5 levels is a 3-sigma bound.
        assert (out.mean(dim=(0, 2, 3)) - ref.mean(dim=(0, 2, 3))).abs().max() < 2.5
        assert (out.std(dim=(0, 2, 3)) - ref.std(dim=(0, 2, 3))).abs().max() < 2.5
        per_draw = lambda x: x.mean(dim=(1, 2, 3)).numpy()  # noqa: E731
        assert stats.ks_2samp(per_draw(out), per_draw(ref)).pvalue > 0.01


def test_batch_geometry_draws_match_torchvision():
    # Vectorised draws of the batch stage vs torchvision's per-sample draws: the black (fill)
    # fraction of a white image after rotation + affine depends on angle, shift and scale; the
    # left-right balance of a half-black image on the flip.
    items = [{"name": "horizontal_flip"}, {"name": "rotation", "degrees": 20},
             {"name": "affine", "degrees": 0, "translate": [0.1, 0.1], "scale": [0.9, 1.1]}]
    half = np.full((32, 32, 3), 255, np.uint8)
    half[:, :16] = 0
    image = Image.fromarray(half)
    ref = build_transform(items, *UNIT)
    torch.manual_seed(0)
    refs = torch.stack([ref(image) for _ in range(300)])
    _, batch = build_pipeline(items, *UNIT, split="device")
    torch.manual_seed(1)
    outs = batch(fast.pil_to_uint8(image)[None].expand(300, -1, -1, -1))
    left = lambda x: (x[:, 0, 8:24, 4:12] > 0.5).double().mean(dim=(1, 2)).numpy()  # noqa: E731
    assert abs(left(outs).mean() - left(refs).mean()) < 0.1  # flip rate (the white side moves left)
    corners = lambda x: (x[:, 0] == 0).double().mean(dim=(1, 2)).numpy()  # noqa: E731
    assert stats.ks_2samp(corners(outs), corners(refs)).pvalue > 0.01


def test_approximate_hue_is_a_named_approximation():
    image = photo(seed=4)
    items = [{"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": [0.05, 0.05]}]
    exact = levels(run_reference(items, image, 0))
    for split in ("batch", "device"):
        approx = levels(run_fast(items, image, 0, pipeline="fast_approx_hue", split=split))
        # The same direction and size of turn (the opposite sign measures ~18 levels here, no
        # turn ~9), not the same pixels: ~7 levels mean on these saturated images (5 on photos).
        assert 1.0 < (approx - exact).abs().mean() < 8.5
    red = Image.new("RGB", (4, 4), (200, 30, 30))
    turned = levels(run_fast(items, red, 0, pipeline="fast_approx_hue"))[:, 0, 0]
    assert turned[1] > turned[2] + 20  # red turns towards yellow (green up), as HSV's hue increase does
    assert abs(float(turned.sum()) - 260.0) < 2  # the grey component (mean of R, G, B) is kept


def test_batch_erasing_draws_like_torchvision():
    item = {"name": "random_erasing", "p": 0.5, "scale": [0.02, 0.2], "ratio": [0.3, 3.3], "value": 0}
    ones = torch.ones(400, 3, 32, 40)
    torch.manual_seed(0)
    erased = fast._BatchErasing(item)(ones)
    area = (erased[:, 0] == 0).double().mean(dim=(1, 2))
    reference = fast._build(item)
    torch.manual_seed(1)
    ref = torch.stack([reference(torch.ones(3, 32, 40)) for _ in range(400)])
    ref_area = (ref[:, 0] == 0).double().mean(dim=(1, 2))
    # Erase rate ~ p (binomial sd 2.5% at n=400) and the erased-area distribution.
    assert abs((area > 0).double().mean() - (ref_area > 0).double().mean()) < 0.1
    assert stats.ks_2samp(area[area > 0].numpy(), ref_area[ref_area > 0].numpy()).pvalue > 0.01
    # Rectangles, all channels, nothing else touched.
    for img in erased[area > 0][:20]:
        zero = img[0] == 0
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        assert zero.sum() == len(rows) * len(cols)
        assert torch.equal(img[1] == 0, zero) and torch.all(img[~zero.expand(3, -1, -1)] == 1)


def test_per_sample_erasing_draws_like_the_reference():
    # On the CPU (split "none") erasing runs per sample with the reference's draws and order:
    # with the same seed, the same rectangles are erased, after the same crop and jitter.
    items = REPORT + [{"name": "random_erasing", "p": 0.7, "scale": [0.02, 0.2], "value": 0}]
    mean_std = ((0.5,) * 3, (0.5,) * 3)  # erased pixels are exactly 0, others almost never
    for seed in range(8):
        image = photo(seed=seed)
        fast_out = run_fast(items, image, seed, split="none", mean_std=mean_std)
        ref = run_reference(items, image, seed, mean_std)
        assert torch.equal((fast_out == 0).all(0), (ref == 0).all(0))


def test_erasing_value_is_in_normalised_space():
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    items = [{"name": "random_erasing", "p": 1.0, "scale": [0.1, 0.2], "value": 0}]
    torch.manual_seed(0)
    out = run_fast(items, white, 0, mean_std=((0.5,) * 3, (0.5,) * 3))
    assert torch.all((out == 0) | (out == 1.0)) and (out == 0).any()


# --- decoding -------------------------------------------------------------------------------------

def test_draft_decodes_large_jpegs_at_reduced_size(tmp_path):
    path = tmp_path / "big.jpg"
    photo(800, 600, seed=5).save(path, quality=92)
    assert load_rgb(path, draft=lambda size: (size[0] // 3, size[1] // 3)).size == (400, 300)
    assert load_rgb(path, draft=lambda size: (size[0], size[1])).size == (800, 600)
    items = [{"name": "random_resized_crop", "size": 64, "scale": [0.7, 1.0]}, {"name": "horizontal_flip"}]
    sample, batch = build_pipeline(items, *UNIT, split="batch")
    ref = build_transform(items, *UNIT)
    diffs = []
    for seed in range(5):
        torch.manual_seed(seed)
        out = levels(sample(path))
        torch.manual_seed(seed)
        diffs.append((out - levels(ref(load_rgb(path)))).abs().mean().item())
    # Same boxes and flips; libjpeg's 1/4..1/8 DCT scaling instead of full decode + resize.
    assert np.mean(diffs) < 2.0


def test_exif_rotated_jpegs_draft_on_the_oriented_size(tmp_path):
    image = photo(400, 200, seed=6)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the model sees 200 x 400
    path = tmp_path / "rotated.jpg"
    image.save(path, quality=95, exif=exif.tobytes())
    seen = []
    out = load_rgb(path, draft=lambda size: seen.append(size) or (size[0] // 2, size[1] // 2))
    assert seen == [(200, 400)] and out.size == (100, 200)
    sample, _ = build_pipeline([{"name": "random_resized_crop", "size": 32}], *UNIT, split="batch")
    assert sample(path).shape == (3, 32, 32)


# --- plumbing ---------------------------------------------------------------------------------------

def test_outputs_and_pickling():
    sample, batch = build_pipeline(REPORT + [{"name": "random_erasing"}], MEAN, STD, split="batch")
    out = sample(photo())
    assert out.dtype == torch.uint8 and out.shape == (3, 48, 48)
    normalised = batch(torch.stack([out, out]))
    assert normalised.dtype == torch.float32 and normalised.shape == (2, 3, 48, 48)
    one, mover = build_pipeline(REPORT, MEAN, STD, split="none")
    assert one(photo()).dtype == torch.float32
    floats = torch.randn(2, 3, 4, 4)
    assert mover(floats) is floats or torch.equal(mover(floats), floats)
    for obj in (sample, batch, one):
        assert type(pickle.loads(pickle.dumps(obj))) is type(obj)
    cl = batch(torch.stack([out, out]), "cpu", torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last)


def test_device_split_keeps_only_the_crop_per_sample():
    sample, batch = build_pipeline(REPORT + [{"name": "random_erasing"}], MEAN, STD, split="device")
    assert [type(op).__name__ for op in sample.ops] == ["_ResizedCropOp"]
    assert len(batch.image_ops) == 4 and len(batch.tensor_ops) == 1
    # A sizing component after a batchable one keeps everything before it per sample.
    items = [{"name": "rotation"}, {"name": "center_crop", "size": 32}, {"name": "horizontal_flip"}]
    sample, batch = build_pipeline(items, MEAN, STD, split="device")
    assert len(sample.ops) == 2 and len(batch.image_ops) == 1


def test_reference_pipeline_is_build_transform():
    sample, batch = build_pipeline(REPORT, MEAN, STD, pipeline="reference", split="batch")
    image = photo()
    torch.manual_seed(0)
    a = sample(image)
    torch.manual_seed(0)
    assert torch.equal(a, build_transform(REPORT, MEAN, STD)(image))
    assert torch.equal(batch(a[None]), a[None])
    with pytest.raises(ValueError, match="valid: fast, fast_approx_hue, reference"):
        build_pipeline(REPORT, MEAN, STD, pipeline="quick")


def test_same_seed_same_sample():
    sample, _ = build_pipeline(REPORT, MEAN, STD, split="batch")
    torch.manual_seed(7)
    a = sample(photo())
    torch.manual_seed(7)
    assert torch.equal(a, sample(photo()))


# --- the resize cache -----------------------------------------------------------------------------

def make_dataset(root, n=3, size=(120, 90)):
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


def test_resize_cache_builds_once_and_never_writes_into_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "data"
    paths = make_dataset(root)
    (root / "train" / "0" / "bad.jpg").write_bytes(b"not a jpeg")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    train = [p for p in paths if "/train/" in p] + [str(root / "train" / "0" / "bad.jpg")]
    mapping, built = resized_paths(root, train, 48, workers=1)
    assert built == len(train)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    folder = cache_folder(root, 48)
    assert folder.is_relative_to(tmp_path / "xdg" / "bioclf" / "resized")
    for original in train[:-1]:
        assert mapping[original].startswith(str(folder))
        assert min(Image.open(mapping[original]).size) == 48
    assert mapping[train[-1]] == train[-1]  # unreadable: read (and reported) from the original
    # A second run of the suite (any variant): nothing decoded again.
    again, built = resized_paths(root, train, 48, workers=1)
    assert built == 0 and again == mapping
    # Images already small enough are read from the original.
    small, _ = resized_paths(root, train[:1], 200, workers=1)
    assert small[train[0]] == train[0]


def test_folder_loaders_use_the_cache_and_the_batch_stage(tmp_path, monkeypatch):
    from bioclf.data import build_loaders
    from bioclf.spec.schema import DataConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_dataset(tmp_path / "data", n=4)
    cfg = DataConfig(source="folder", root=str(tmp_path / "data"), batch_size=4, num_workers=0,
                     train_transforms=REPORT + [{"name": "random_erasing"}],
                     eval_transforms=[{"name": "resize", "size": 56}, {"name": "center_crop", "size": 48}])
    cfg = cfg.model_copy(update={"resize_cache": 64, "pin_memory": False})
    # For a GPU: uint8 batches out of the workers, the rest in the batch transform (which runs
    # wherever its batch is: here on the CPU).
    bundle = build_loaders(cfg, seed=0, device_type="cuda", batch_transforms=True)
    assert bundle.resized_now == 8 and len(bundle.train.dataset.read_paths) == 8
    images, labels = next(iter(bundle.train))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 48, 48)
    x = bundle.train_batch_transform(images, torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 48, 48)
    val_images, _ = next(iter(bundle.val))
    assert val_images.dtype == torch.uint8
    assert bundle.eval_batch_transform(val_images, "cpu").dtype == torch.float32
    assert build_loaders(cfg, seed=0, batch_transforms=True).resized_now == 0  # the next variant reuses it
    # On the CPU (and without the trainer's opt-in) samples come out normalised; the batch
    # transform only moves them.
    for plain in (build_loaders(cfg, seed=0), build_loaders(cfg, seed=0, batch_transforms=True)):
        images, _ = next(iter(plain.train))
        assert images.dtype == torch.float32
        assert torch.equal(plain.train_batch_transform(images, torch.device("cpu")), images)


def test_fast_sample_takes_paths_and_images_alike(tmp_path):
    path = tmp_path / "a.png"
    photo().save(path)
    sample = FastSample([fast.normalize_pipeline([{"name": "center_crop", "size": 16}])[0]])
    assert torch.equal(sample(path), sample(load_rgb(path)))
    assert isinstance(BatchTransform(MEAN, STD), BatchTransform)


def test_a_suite_decodes_its_dataset_once(tmp_path, monkeypatch):
    """Two variants of one suite on a folder dataset with data.resize_cache: the first run
    resizes every training image, the second none (resize_cache_built_images)."""
    from bioclf.engine import RecordingLogger, train
    from test_engine import tiny_config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_dataset(tmp_path / "data", n=4)
    data = {"source": "folder", "root": str(tmp_path / "data"), "resize_cache": 40, "batch_size": 4,
            "synthetic": {"num_classes": 2}, "eval_transforms": [{"name": "resize", "size": 16}]}
    built = []
    for smoothing in (0.1, 0.0):  # two variants
        log = RecordingLogger()
        train(tiny_config(data=data, train={"epochs": 1}, loss={"label_smoothing": smoothing}), log,
              tmp_path / f"run{smoothing}", quiet=True)
        built.append(log.summary["resize_cache_built_images"])
    assert built == [8.0, 0.0]
