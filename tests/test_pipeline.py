"""The input pipeline: batch kernels against torchvision, device decoding, the plan, auto.

Evidence, all on generated images on the CPU (the device pipeline runs the same code on the
CPU device):
- each batch kernel's ``apply`` equals torchvision's own tensor kernel at the same parameters;
- each kernel's ``draw`` has torchvision's ``make_params`` distribution (KS tests);
- device decoding (libjpeg-turbo here, nvJPEG on a GPU) gives load_rgb's pixels, EXIF
  orientation included; files it cannot take join the batch decoded by the workers;
- the device pipeline with identity parameters gives the reference's pixels within a level.
Levels are uint8 steps (1/255).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from bioclf.data import build_loaders
from bioclf.data import transforms as T
from bioclf.data.images import BadImageError, load_rgb
from bioclf.data.pipeline import (
    BatchStage,
    EncodedBatch,
    ReadEncoded,
    apply_orientation,
    build_pipeline,
    decode_batch,
    plan_pipeline,
    resolve_pipeline,
)
from bioclf.errors import BioclfError
from bioclf.spec.schema import DataConfig
from bioclf.tracking import contract as C
from photos import MEAN, REPORT, STD, UNIT, levels, make_dataset, photo


def batch(n=6, size=40) -> torch.Tensor:
    """(n, 3, size, size) float [0, 1] photos."""
    return torch.stack([F.pil_to_tensor(photo(size, size, seed=i)) for i in range(n)]).float() / 255


def kernel(item: dict) -> T.BatchKernel:
    out = T.batch_kernel(T.normalize_pipeline([item])[0])
    assert out is not None
    return out


# --- each kernel's apply = torchvision's kernel at the same parameters ----------------------------

def test_flip_kernels_equal_torchvision():
    x = batch()
    for name, reference in (("horizontal_flip", F.horizontal_flip), ("vertical_flip", F.vertical_flip)):
        k = kernel({"name": name})
        params = {"flip": torch.tensor([True, False, True, True, False, False])}
        out = k.apply(x, params)
        for i in range(len(x)):
            assert torch.equal(out[i], reference(x[i]) if params["flip"][i] else x[i])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_rotation_kernel_equals_torchvision(interpolation):
    x = batch()
    k = kernel({"name": "rotation", "degrees": 30})
    if interpolation == "bilinear":  # the builder's default is nearest, as the report's
        k = T.RotationKernel(v2.RandomRotation(30, interpolation=v2.InterpolationMode.BILINEAR))
    angles = torch.tensor([-29.0, -7.5, 0.0, 3.25, 17.0, 29.9], dtype=torch.float64)
    out = k.apply(x, {"angle": angles})
    mode = v2.InterpolationMode(interpolation)
    for i, angle in enumerate(angles.tolist()):
        expected = F.rotate(x[i], angle, interpolation=mode, fill=0)
        diff = (out[i] - expected).abs()
        # nearest: a coordinate exactly between two pixels may round the other way (float order)
        assert (diff > 1e-5).float().mean() < 0.002 and diff.mean() < 1e-4


def test_affine_kernel_equals_torchvision():
    x = batch()
    k = kernel({"name": "affine", "degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1]})
    params = k.draw(len(x), 40, 40)
    out = k.apply(x, params)
    for i in range(len(x)):
        expected = F.affine(x[i], angle=float(params["angle"][i]),
                            translate=[float(params["tx"][i]), float(params["ty"][i])],
                            scale=float(params["scale"][i]), shear=[0.0, 0.0], fill=0)
        diff = (out[i] - expected).abs()
        assert (diff > 1e-5).float().mean() < 0.002 and diff.mean() < 1e-4


def test_color_jitter_kernel_equals_torchvision():
    x = batch()
    k = kernel({"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2})
    params = k.draw(len(x), 40, 40)
    out = k.apply(x, params)
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    for i in range(len(x)):
        expected = x[i]
        for op in params["order"][i].tolist():
            expected = ops[op](expected, float(params["factors"][i, op]))
        torch.testing.assert_close(out[i], expected, atol=2e-5, rtol=0)
    assert not torch.equal(out, x)


def test_color_jitter_kernel_skips_the_ops_turned_off():
    x = batch()
    k = kernel({"name": "color_jitter", "brightness": 0.3, "contrast": 0, "saturation": 0, "hue": 0})
    params = k.draw(len(x), 40, 40)
    assert torch.isnan(params["factors"][:, 1:]).all()
    expected = torch.stack([F.adjust_brightness(x[i], float(params["factors"][i, 0])) for i in range(len(x))])
    torch.testing.assert_close(k.apply(x, params), expected)


@pytest.mark.parametrize("value", [0, [0.5, 1.0, -1.0], "random"])
def test_erasing_kernel_equals_torchvision(value):
    x = batch()
    k = kernel({"name": "random_erasing", "p": 0.7, "value": value})
    params = k.draw(len(x), 40, 40)
    torch.manual_seed(3)
    out = k.apply(x.clone(), params)
    for i in range(len(x)):
        if not params["erase"][i]:
            assert torch.equal(out[i], x[i])
            continue
        t, l, h, w = (int(params[key][i]) for key in ("top", "left", "height", "width"))
        box = out[i, :, t:t + h, l:l + w]
        if value == "random":
            assert box.std() > 0.5  # normal noise
            fill = box
        else:
            fill = torch.tensor(value, dtype=x.dtype).expand(3)[:, None, None].expand(3, h, w)
        assert torch.equal(out[i], F.erase(x[i], t, l, h, w, fill))


# --- each kernel's draw = torchvision's make_params distribution ---------------------------------

N = 3000


def _ks(ours, theirs):
    assert stats.ks_2samp(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)).pvalue > 1e-3


def test_kernel_draws_match_torchvision_make_params():
    torch.manual_seed(0)
    proxy = [torch.zeros(3, 40, 60)]
    rot = kernel({"name": "rotation", "degrees": 20})
    _ks(rot.draw(N, 40, 60)["angle"], [rot.t.make_params(proxy)["angle"] for _ in range(N)])

    aff = kernel({"name": "affine", "degrees": 5, "translate": [0.1, 0.2], "scale": [0.9, 1.1]})
    ours = aff.draw(N, 40, 60)
    theirs = [aff.t.make_params(proxy) for _ in range(N)]
    _ks(ours["tx"], [p["translate"][0] for p in theirs])
    _ks(ours["ty"], [p["translate"][1] for p in theirs])
    _ks(ours["scale"], [p["scale"] for p in theirs])
    _ks(ours["angle"], [p["angle"] for p in theirs])

    jitter = kernel({"name": "color_jitter"})
    ours = jitter.draw(N, 40, 60)
    theirs = [jitter.t.make_params([]) for _ in range(N)]
    for op, key in enumerate(("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")):
        _ks(ours["factors"][:, op], [p[key] for p in theirs])
    # the position of each op in the order is uniform over 0..3, as in randperm(4)
    for op in range(4):
        position = (ours["order"] == op).int().argmax(1)
        assert stats.chisquare(np.bincount(position.numpy(), minlength=4)).pvalue > 1e-3

    flip = kernel({"name": "horizontal_flip", "p": 0.3})
    assert abs(flip.draw(N, 40, 60)["flip"].float().mean() - 0.3) < 0.03

    erase = kernel({"name": "random_erasing", "p": 1.0, "scale": [0.02, 0.2]})
    ours = erase.draw(N, 40, 60)
    image = torch.zeros(3, 40, 60)
    theirs = [erase.t.make_params([image]) for _ in range(N)]
    _ks(ours["height"] * ours["width"], [p["h"] * p["w"] for p in theirs])
    _ks(ours["top"], [p["i"] for p in theirs])
    _ks(ours["left"], [p["j"] for p in theirs])


# --- decoding ------------------------------------------------------------------------------------

def jpeg_bytes(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def encoded(tmp_path, files: dict[str, bytes]) -> EncodedBatch:
    read = ReadEncoded()
    samples = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        samples.append((read(path), 0))
    return ReadEncoded.collate(samples)[0]


def test_device_decoding_equals_load_rgb_for_every_kind_of_file(tmp_path):
    """A mixed batch: RGB, greyscale and CMYK JPEGs, a PNG with alpha, a progressive JPEG."""
    rgb = photo(50, 40, seed=1)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    png = io.BytesIO()
    rgba.save(png, "PNG")
    files = {"rgb.jpg": jpeg_bytes(rgb), "grey.jpg": jpeg_bytes(rgb.convert("L")),
             "cmyk.jpg": jpeg_bytes(rgb.convert("CMYK")), "alpha.png": png.getvalue(),
             "progressive.jpg": jpeg_bytes(photo(30, 60, seed=2), progressive=True)}
    batch_ = encoded(tmp_path, files)
    # the JPEGs the decoder takes travel as bytes, the others as the worker's pixels
    assert [item.dim() for item in batch_.items] == [1, 1, 3, 3, 1]
    decoded = decode_batch(batch_, torch.device("cpu"))
    for name, image in zip(files, decoded):
        expected = F.pil_to_tensor(load_rgb(tmp_path / name))
        assert image.dtype == torch.uint8 and torch.equal(image, expected), name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_bytes(photo(50, 30, seed=orientation), exif=exif.tobytes())
    batch_ = encoded(tmp_path, {"turned.jpg": data})
    assert batch_.orientations == [orientation] and batch_.items[0].dim() == 1
    image = decode_batch(batch_, torch.device("cpu"))[0]
    assert torch.equal(image, F.pil_to_tensor(load_rgb(tmp_path / "turned.jpg")))


def test_apply_orientation_is_exif_transpose():
    base = F.pil_to_tensor(photo(5, 3))
    pil = photo(5, 3)
    methods = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
               5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
    for orientation, method in methods.items():
        assert torch.equal(apply_orientation(base, orientation), F.pil_to_tensor(pil.transpose(method)))


def test_a_broken_jpeg_in_a_batch_names_the_file(tmp_path):
    good = jpeg_bytes(photo(40, 30))
    batch_ = encoded(tmp_path, {"good.jpg": good, "cut.jpg": good[: len(good) // 2]})
    with pytest.raises(BadImageError, match=r"cut\.jpg: cannot read image"):
        decode_batch(batch_, torch.device("cpu"))


def test_an_unreadable_file_fails_in_the_worker_with_its_name(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(b"not an image at all")
    with pytest.raises(BadImageError, match="noise.jpg"):
        ReadEncoded()(path)


# --- the plan: which component runs where --------------------------------------------------------

def test_the_report_pipeline_runs_entirely_on_the_device():
    plan = plan_pipeline(REPORT, "device")
    assert plan.decodes_on_device and plan.sample == ()
    assert [i["name"] for i in plan.sizing] == ["random_resized_crop"]
    assert plan.describe() == ("workers: read | device: decode, random_resized_crop, horizontal_flip, rotation, "
                               "color_jitter, affine, normalize, random_erasing")
    reference = plan_pipeline(REPORT, "reference")
    assert reference.describe() == ("workers: decode, random_resized_crop, horizontal_flip, rotation, color_jitter, "
                                    "affine, normalize, random_erasing | device: -")


def test_a_component_without_a_batch_kernel_moves_the_split(monkeypatch):
    """Without a kernel for color_jitter, it and everything before it run per sample; the
    batch stage still runs the rest, and the output has the pipeline's shape."""
    monkeypatch.delitem(T.BATCH_KERNELS, "color_jitter")
    plan = plan_pipeline(REPORT, "device")
    assert not plan.decodes_on_device
    assert [i["name"] for i in plan.sample] == ["random_resized_crop", "horizontal_flip", "rotation", "color_jitter"]
    assert [i["name"] for i in plan.batch] == ["affine", "random_erasing"]
    assert plan.describe() == ("workers: decode, random_resized_crop, horizontal_flip, rotation, color_jitter | "
                               "device: affine, normalize, random_erasing")
    sample, stage, _ = build_pipeline(REPORT, MEAN, STD, "device")
    images = torch.stack([sample(photo(seed=i)) for i in range(3)])
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 48, 48)
    assert stage(images, "cpu").shape == (3, 3, 48, 48)


def test_a_sizing_component_after_the_start_runs_per_sample():
    plan = plan_pipeline(["horizontal_flip", {"name": "center_crop", "size": 16}, "vertical_flip"], "device")
    assert [i["name"] for i in plan.sample] == ["horizontal_flip", "center_crop"]
    assert [i["name"] for i in plan.batch] == ["vertical_flip"]


def test_auto_is_device_on_cuda_and_reference_on_a_cpu():
    assert resolve_pipeline("auto", "cuda") == "device"
    assert resolve_pipeline("auto", "cpu") == "reference"
    assert resolve_pipeline("device", "cpu") == "device"
    with pytest.raises(ValueError, match="valid: auto, device, reference"):
        resolve_pipeline("fast", "cpu")


def test_removed_pipeline_names_are_refused_by_the_schema():
    with pytest.raises(Exception, match="data.pipeline"):
        from bioclf.spec.schema import RunConfig

        RunConfig.model_validate({"data": {"pipeline": "fast"}})


# --- the device pipeline against the reference ---------------------------------------------------

IDENTITY = [
    {"name": "random_resized_crop", "size": 48, "scale": [1.0, 1.0], "ratio": [1.3333, 1.3334]},
    {"name": "horizontal_flip", "p": 0.0},
    {"name": "rotation", "degrees": 0},
    {"name": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0},
    {"name": "affine", "degrees": 0, "translate": [0, 0], "scale": [1, 1]},
    {"name": "random_erasing", "p": 0.0},
]


@pytest.mark.parametrize("items", [IDENTITY, [{"name": "resize", "size": 56}, {"name": "center_crop", "size": 48}]],
                         ids=["identity-train", "eval"])
def test_device_pipeline_gives_the_reference_pixels(tmp_path, items):
    image = photo(96, 72, seed=4)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(image))
    decoded = load_rgb(tmp_path / "a.jpg")
    reference = build_pipeline(items, *UNIT, "reference")[0](decoded)
    read, stage, plan = build_pipeline(items, *UNIT, "device")
    assert plan.decodes_on_device
    batch_ = ReadEncoded.collate([(read(tmp_path / "a.jpg"), 0)])[0]
    device = stage(batch_, "cpu")[0]
    diff = (levels(device) - levels(reference)).abs()
    # the same decoder; tensor vs Pillow antialiased resize differ by rounding only
    assert diff.mean() < 0.6 and diff.max() <= 4, (diff.mean(), diff.max())


def test_device_and_reference_pipelines_have_the_same_output_statistics(tmp_path):
    """The report's augmentation, independent draws: per-channel means and spreads agree."""
    image = photo(96, 72, seed=5)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(image))
    n = 160
    torch.manual_seed(0)
    ref_tf = build_pipeline(REPORT, *UNIT, "reference")[0]
    decoded = load_rgb(tmp_path / "a.jpg")
    reference = torch.stack([ref_tf(decoded) for _ in range(n)])
    read, stage, _ = build_pipeline(REPORT, *UNIT, "device")
    batch_ = ReadEncoded.collate([(read(tmp_path / "a.jpg"), 0)] * n)[0]
    device = stage(batch_, "cpu")
    for c in range(3):
        _ks(device[:, c].mean((1, 2)), reference[:, c].mean((1, 2)))
        _ks(device[:, c].std((1, 2)), reference[:, c].std((1, 2)))
    # fraction of pixels zeroed by rotation / affine / erasing (value 0 of the unit normalisation)
    zero = lambda t: (t.abs().sum(1) == 0).float().mean((1, 2))  # noqa: E731
    _ks(zero(device), zero(reference))


def test_batch_stage_is_reproducible_from_the_seed(tmp_path):
    make_dataset(tmp_path / "data", n=4)
    cfg = DataConfig(source="folder", root=str(tmp_path / "data"), batch_size=8, num_workers=0,
                     train_transforms=REPORT, pipeline="device", pin_memory=False)
    bundle = build_loaders(cfg, seed=0, batch_transforms=True)
    images, _ = next(iter(bundle.train))
    torch.manual_seed(1)
    a = bundle.train_batch_transform(images, "cpu")
    torch.manual_seed(1)
    b = bundle.train_batch_transform(images, "cpu")
    torch.manual_seed(2)
    c = bundle.train_batch_transform(images, "cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all() and a.shape == (8, 3, 48, 48)


def test_device_pipeline_needs_the_batch_stage():
    with pytest.raises(BioclfError, match="data.pipeline: 'device' needs"):
        build_loaders(DataConfig(pipeline="device"), seed=0)
    bundle = build_loaders(DataConfig(num_workers=0), seed=0, batch_transforms=True, device_type="cuda")
    assert bundle.pipeline == "device" and bundle.stages["eval"].startswith("workers: read")
    assert build_loaders(DataConfig(num_workers=0), seed=0, batch_transforms=True).pipeline == "reference"


def test_images_of_different_sizes_without_a_sizing_component_are_one_clear_error(tmp_path):
    stage = BatchStage(UNIT[0], UNIT[1], decode=True)
    read = ReadEncoded()
    batch_ = ReadEncoded.collate([(read(photo(20, 10)), 0), (read(photo(10, 20)), 0)])[0]
    with pytest.raises(BioclfError, match="different sizes"):
        stage(batch_, "cpu")


def test_training_on_the_device_pipeline_logs_where_components_ran(tmp_path):
    """A tiny folder dataset trained with data.pipeline: device on the CPU device."""
    from bioclf.engine import train
    from recording import RecordingLogger
    from test_engine import tiny_config

    make_dataset(tmp_path / "data", n=4)
    data = {"source": "folder", "root": str(tmp_path / "data"), "pipeline": "device", "batch_size": 4,
            "num_workers": 1, "synthetic": {"num_classes": 2},
            "train_transforms": [{**REPORT[0], "size": 16}] + REPORT[1:],
            "eval_transforms": [{"name": "resize", "size": 20}, {"name": "center_crop", "size": 16}]}
    log = RecordingLogger()
    result = train(tiny_config(data=data, train={"epochs": 2}), log, tmp_path / "run", quiet=True)
    assert result.epochs_run == 2
    assert log.tags[C.DATA_PIPELINE] == "device"
    assert log.tags[C.TRAIN_STAGES].startswith("workers: read | device: decode, random_resized_crop")
    assert log.tags[C.EVAL_STAGES] == "workers: read | device: decode, resize, center_crop, normalize"
    assert log.summary["inference_ms_per_image"] > 0
    assert all(np.isfinite(metrics["train_loss"]) for _, metrics in log.epochs)
