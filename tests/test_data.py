"""Image decoding, folder datasets, the synthetic dataset and loaders (CPU, data in tmp_path)."""

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from bioclf.data import (
    ClassFolderDataset,
    FlatFolderDataset,
    SyntheticDataset,
    build_datasets,
    build_loaders,
    build_predict_loader,
    load_rgb,
    read_class_names,
)
from bioclf.errors import BioclfError
from bioclf.spec.schema import DataConfig, SyntheticConfig


def save_image(path, size=(8, 6), color=(120, 30, 200), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def make_split(split_dir, classes, per_class=2, size=(8, 6)):
    for index, name in enumerate(classes):
        for j in range(per_class):
            save_image(split_dir / name / f"img{j}.png", size=size, color=(index * 20 % 256, j * 40, 90))


# --- load_rgb ------------------------------------------------------------------------------

def as_array(image):
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert array.dtype == np.uint8
    return array


def test_grayscale_and_one_bit(tmp_path):
    Image.new("L", (5, 3), 100).save(tmp_path / "gray.png")
    assert as_array(load_rgb(tmp_path / "gray.png")).shape == (3, 5, 3)
    assert (as_array(load_rgb(tmp_path / "gray.png")) == 100).all()
    bits = Image.new("1", (4, 4), 0)
    bits.putpixel((1, 1), 1)
    bits.save(tmp_path / "bits.png")
    array = as_array(load_rgb(tmp_path / "bits.png"))
    assert tuple(array[1, 1]) == (255, 255, 255) and tuple(array[0, 0]) == (0, 0, 0)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((1, 0), (0, 0, 0, 255))  # opaque black
    rgba.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    rgba.save(tmp_path / "rgba.png")
    array = as_array(load_rgb(tmp_path / "rgba.png"))
    assert tuple(array[0, 0]) == (255, 255, 255)
    assert tuple(array[0, 1]) == (0, 0, 0)
    assert all(abs(int(v) - 127) <= 1 for v in array[0, 2])

    Image.new("LA", (2, 2), (10, 0)).save(tmp_path / "la.png")
    assert (as_array(load_rgb(tmp_path / "la.png")) == 255).all()


def test_palette_with_transparency(tmp_path):
    palette = Image.new("P", (3, 1), 0)
    palette.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    array = as_array(load_rgb(tmp_path / "p.png"))
    assert tuple(array[0, 0]) == (255, 255, 255)  # transparent index -> background
    assert tuple(array[0, 1]) == (0, 255, 0)

    palette.save(tmp_path / "opaque.gif")
    assert tuple(as_array(load_rgb(tmp_path / "opaque.gif"))[0, 0]) == (0, 0, 255)


def test_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))  # white
    cmyk.putpixel((1, 0), (255, 0, 0, 0))  # cyan
    cmyk.save(tmp_path / "cmyk.tif")
    array = as_array(load_rgb(tmp_path / "cmyk.tif"))
    assert tuple(array[0, 0]) == (255, 255, 255)
    assert tuple(array[0, 1]) == (0, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    array = as_array(load_rgb(tmp_path / "deep.png"))
    assert array[0, :, 0].tolist() == [0, 4, 128, 255]
    assert (array[..., 0] == array[..., 2]).all()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert Image.open(tmp_path / "phone.jpg").size == (40, 20)
    assert load_rgb(tmp_path / "phone.jpg").size == (20, 40)


def test_unreadable_files_name_the_path(tmp_path):
    save_image(tmp_path / "whole.jpg", size=(64, 64), fmt="JPEG")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("not an image")
    for name in ("cut.jpg", "notes.jpg", "missing.png"):
        with pytest.raises(BioclfError, match=name):
            load_rgb(tmp_path / name)


# --- ClassFolderDataset / FlatFolderDataset / read_class_names ------------------------------

def test_integer_class_folders_sort_numerically_and_are_labels(tmp_path):
    make_split(tmp_path / "train", ["0", "2", "10", "1"] + [str(i) for i in range(3, 10)])
    ds = ClassFolderDataset(tmp_path / "train")
    assert ds.classes == [str(i) for i in range(11)]
    for path, label in ds.samples:
        assert int(path.split("/")[-2]) == label
    assert ds.targets == [label for _, label in ds.samples]
    image, label = ds[len(ds) - 1]
    assert label == 10 and image.mode == "RGB"


def test_text_class_folders_sort_as_text(tmp_path):
    make_split(tmp_path / "train", ["b", "a", "B", "c10", "c2"])
    (tmp_path / "train" / ".cache").mkdir()  # hidden: ignored
    (tmp_path / "train" / "a" / ".thumb.png").write_bytes(b"x")
    (tmp_path / "train" / "a" / "readme.txt").write_text("skipped: not an image")
    ds = ClassFolderDataset(tmp_path / "train", transform=lambda image: np.asarray(image).shape)
    assert ds.classes == ["B", "a", "b", "c10", "c2"]
    assert [label for _, label in ds.samples] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [p.split("/")[-1] for p, _ in ds.samples[2:4]] == ["img0.png", "img1.png"]
    assert ds[0] == ((6, 8, 3), 0)


def test_mixed_class_names_are_an_error_naming_the_folder(tmp_path):
    make_split(tmp_path / "train", ["0", "1", "2", "cats"])
    with pytest.raises(BioclfError, match="cats"):
        ClassFolderDataset(tmp_path / "train")


def test_integer_gap_is_an_error(tmp_path):
    make_split(tmp_path / "train", ["0", "1", "3"])
    with pytest.raises(BioclfError, match=r"0\.\.K-1.*missing 2"):
        ClassFolderDataset(tmp_path / "train")


def test_empty_or_missing_folders_are_errors(tmp_path):
    make_split(tmp_path / "train", ["a", "b"])
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(BioclfError, match=r"train/c: class folder has no images"):
        ClassFolderDataset(tmp_path / "train")
    with pytest.raises(BioclfError, match="nowhere"):
        ClassFolderDataset(tmp_path / "nowhere")
    (tmp_path / "bare").mkdir()
    with pytest.raises(BioclfError, match="bare: no class folders"):
        ClassFolderDataset(tmp_path / "bare")


def test_flat_folder_returns_indices(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp"):
        save_image(tmp_path / "test" / name, fmt="JPEG" if name.endswith("JPG") else None)
    (tmp_path / "test" / "sub").mkdir()
    ds = FlatFolderDataset(tmp_path / "test")
    assert [p.split("/")[-1] for p in ds.samples] == ["a.JPG", "b.png", "c.webp"]
    image, index = ds[2]
    assert index == 2 and image.size == (8, 6)
    with pytest.raises(BioclfError, match="sub: no images"):
        FlatFolderDataset(tmp_path / "test" / "sub")


def test_read_class_names(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("Blue jay\nRobin\n\n")
    assert read_class_names(path, 2) == ["Blue jay", "Robin"]
    with pytest.raises(BioclfError, match=r"names\.txt: 2 class names for 3 classes"):
        read_class_names(path, 3)
    path.write_text("Blue jay\n\nRobin\n")
    with pytest.raises(BioclfError, match="line 2 is blank"):
        read_class_names(path, 2)


# --- SyntheticDataset ----------------------------------------------------------------------

def synthetic(**overrides):
    values = dict(num_classes=10, train_per_class=6, val_per_class=3, test_images=4, image_size=32, seed=0)
    values.update(overrides)
    return SyntheticConfig(**values)


def pixels(ds, index):
    return np.asarray(ds.image(index))


def test_synthetic_is_deterministic_and_seeded():
    a, b = SyntheticDataset(synthetic(), "train"), SyntheticDataset(synthetic(), "train")
    other = SyntheticDataset(synthetic(seed=1), "train")
    for index in (0, 7, 59):
        assert np.array_equal(pixels(a, index), pixels(b, index))
        assert not np.array_equal(pixels(a, index), pixels(other, index))
    assert not np.array_equal(pixels(a, 0), pixels(a, 1))  # same class, different image


def test_synthetic_splits_differ():
    cfg = synthetic()
    train, val, test = (SyntheticDataset(cfg, split) for split in ("train", "val", "test"))
    assert not np.array_equal(pixels(train, 0), pixels(val, 0))  # both class 0, index 0
    assert not np.array_equal(pixels(train, 0), pixels(test, 0))


def test_synthetic_shapes_labels_and_samples():
    cfg = synthetic(num_classes=3, train_per_class=4, val_per_class=2, test_images=5, image_size=20)
    train = SyntheticDataset(cfg, "train")
    assert len(train) == 12 and train.classes == ["0", "1", "2"]
    assert train.targets == [0] * 4 + [1] * 4 + [2] * 4
    assert train.samples[5] == ("synthetic/train/1/000001.png", 1)
    image, label = train[5]
    assert image.mode == "RGB" and image.size == (20, 20) and label == 1
    val = SyntheticDataset(cfg, "val", transform=lambda image: np.asarray(image).shape)
    assert len(val) == 6 and val[3] == ((20, 20, 3), 1)
    test = SyntheticDataset(cfg, "test")
    assert len(test) == 5 and test.samples[4] == "synthetic/test/000004.png" and test.targets == []
    assert test[4][1] == 4 and len(test.hidden_targets) == 5
    with pytest.raises(IndexError):
        train.image(12)
    with pytest.raises(BioclfError, match="split"):
        SyntheticDataset(cfg, "holdout")


def test_synthetic_is_learnable_by_nearest_class_mean():
    cfg = synthetic(num_classes=10, train_per_class=20, val_per_class=10, image_size=32, seed=3)

    def features(ds):
        x = np.stack([np.asarray(ds.image(i).resize((8, 8)), dtype=np.float32).ravel() for i in range(len(ds))])
        return x / 255.0, np.array(ds.targets)

    x_train, y_train = features(SyntheticDataset(cfg, "train"))
    x_val, y_val = features(SyntheticDataset(cfg, "val"))
    means = np.stack([x_train[y_train == c].mean(axis=0) for c in range(10)])
    distinct = np.linalg.norm(means[:, None] - means[None], axis=-1)[~np.eye(10, dtype=bool)]
    assert distinct.min() > 0.5  # every pair of class means differs
    predicted = ((x_val[:, None] - means[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == y_val).mean() > 2 * (1 / 10)


def test_synthetic_generation_is_fast():
    ds = SyntheticDataset(synthetic(image_size=64), "train")
    ds.image(0)
    start = time.perf_counter()
    for index in range(50):
        ds.image(index)
    assert (time.perf_counter() - start) / 50 < 0.01  # measured ~0.5 ms; loose for busy machines


# --- build_datasets / build_loaders --------------------------------------------------------

SMALL_TRANSFORMS = dict(
    train_transforms=[{"name": "random_resized_crop", "size": 16, "scale": [0.5, 1.0]}, "horizontal_flip",
                      {"name": "random_erasing", "p": 0.5}],
    eval_transforms=[{"name": "resize", "size": 16}, {"name": "center_crop", "size": 16}],
)


def synthetic_config(**overrides):
    values = dict(
        source="synthetic",
        synthetic=dict(num_classes=3, train_per_class=5, val_per_class=2, image_size=24, seed=1),
        batch_size=4,
        num_workers=0,
        **SMALL_TRANSFORMS,
    )
    values.update(overrides)
    return DataConfig(**values)


def first_batch(loader, torch_seed=0):
    torch.manual_seed(torch_seed)  # num_workers=0: the global RNG drives the augmentations
    return next(iter(loader))


def test_synthetic_loaders():
    bundle = build_loaders(synthetic_config(), seed=42)
    assert bundle.num_classes == 3 and bundle.classes == ["0", "1", "2"] and bundle.class_names == bundle.classes
    images, labels = first_batch(bundle.train)
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.shape == (4,)
    assert len(bundle.train) == 3  # 15 images, batches of 4, the incomplete last batch dropped
    assert bundle.train.drop_last and not bundle.train.pin_memory
    assert bundle.val.batch_size == 8 and len(bundle.val.dataset) == 6
    val_images, val_labels = next(iter(bundle.val))
    assert val_images.shape == (6, 3, 16, 16) and val_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_same_seed_gives_the_same_first_batch():
    cfg = synthetic_config()
    a = first_batch(build_loaders(cfg, seed=5).train)
    b = first_batch(build_loaders(cfg, seed=5).train)
    c = first_batch(build_loaders(cfg, seed=6).train)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_same_seed_with_workers_ignores_the_global_rng():
    cfg = synthetic_config(num_workers=2)
    a = build_loaders(cfg, seed=5)
    b = build_loaders(cfg, seed=5)
    assert a.train.num_workers == min(2, __import__("os").cpu_count()) and a.train.persistent_workers
    first_a = first_batch(a.train, torch_seed=1)
    first_b = first_batch(b.train, torch_seed=2)
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])


def test_small_train_set_keeps_its_only_batch():
    bundle = build_loaders(synthetic_config(batch_size=64, eval_batch_size=3), seed=0)
    assert not bundle.train.drop_last and len(bundle.train) == 1 and bundle.val.batch_size == 3


def test_pin_memory_only_on_cuda():
    assert build_loaders(synthetic_config(), seed=0, device_type="cuda").train.pin_memory
    assert not build_loaders(synthetic_config(pin_memory=False), seed=0, device_type="cuda").train.pin_memory


def make_folder_dataset(root, classes=("0", "1", "2")):
    for split, per_class in (("train", 3), ("val", 1)):
        make_split(root / split, list(classes), per_class=per_class, size=(30, 20))
    return root


def test_folder_loaders_resolve_root_and_class_names(tmp_path):
    make_folder_dataset(tmp_path / "data")
    (tmp_path / "data" / "names.txt").write_text("ant\nbee\ncicada\n")
    cfg = DataConfig(source="folder", root="data", class_names_file="names.txt", batch_size=4, num_workers=0,
                     **SMALL_TRANSFORMS)
    bundle = build_loaders(cfg, seed=1, base_dir=tmp_path)
    assert bundle.num_classes == 3 and bundle.class_names == ["ant", "bee", "cicada"]
    images, labels = first_batch(bundle.train)
    assert images.shape == (4, 3, 16, 16)
    assert torch.equal(images, first_batch(build_loaders(cfg, seed=1, base_dir=tmp_path).train)[0])
    val_images, val_labels = next(iter(bundle.val))
    assert val_images.shape == (3, 3, 16, 16) and val_labels.tolist() == [0, 1, 2]
    with pytest.raises(BioclfError, match="data.root"):
        build_loaders(cfg, seed=1, base_dir=tmp_path / "elsewhere")


def test_train_val_class_mismatch_is_listed(tmp_path):
    root = make_folder_dataset(tmp_path / "data", classes=("0", "1", "2", "3"))
    for path in (root / "val" / "3").iterdir():
        path.unlink()
    (root / "val" / "3").rmdir()
    make_split(root / "val", ["4"], per_class=1)
    cfg = DataConfig(source="folder", root=str(root), num_workers=0)
    with pytest.raises(BioclfError, match=r"only in train: 3; only in val: 4"):
        build_datasets(cfg)


def test_predict_loader_over_a_flat_folder(tmp_path):
    for i in range(5):
        save_image(tmp_path / "test" / f"{i}.jpg", size=(30 + i, 20), fmt="JPEG")
    cfg = synthetic_config(eval_batch_size=2)
    loader, stage = build_predict_loader(tmp_path / "test", cfg)
    batches = [(stage(images, "cpu"), index) for images, index in loader]
    assert [b[0].shape for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 2, 3, 4]
    assert loader.dataset.samples[3].endswith("3.jpg")
    assert build_predict_loader(tmp_path / "test", cfg, batch_size=5)[0].batch_size == 5


def test_predict_loader_uses_the_runs_pipeline(tmp_path):
    """A run trained with data.pipeline: device is predicted through the device pipeline (the
    workers read bytes, the batch stage decodes), and its images match the reference ones."""
    for i in range(3):
        save_image(tmp_path / "test" / f"{i}.jpg", size=(40 + 3 * i, 32), fmt="JPEG")
    finished = {}
    for pipeline in ("reference", "device"):
        loader, stage = build_predict_loader(tmp_path / "test", synthetic_config(eval_batch_size=3, pipeline=pipeline))
        (raw, _), = list(loader)
        finished[pipeline] = stage(raw, "cpu")
        # the device pipeline's workers hand over the file bytes; the batch stage decodes them
        assert (type(raw).__name__ == "EncodedBatch") == (pipeline == "device")
    assert finished["device"].shape == finished["reference"].shape == (3, 3, 16, 16)
    assert (finished["device"] - finished["reference"]).abs().mean() < 0.05


# --- structural errors: one line each, naming the path --------------------------------------

def structural_error(callable_, *args):
    with pytest.raises(BioclfError) as caught:
        callable_(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_structural_errors_are_one_line_naming_the_path(tmp_path):
    root = make_folder_dataset(tmp_path / "data")
    cfg = DataConfig(source="folder", root=str(root), num_workers=0, **SMALL_TRANSFORMS)
    # missing root
    missing = DataConfig(source="folder", root=str(tmp_path / "nowhere"), num_workers=0)
    assert f"dataset folder {tmp_path / 'nowhere'} not found" in structural_error(build_datasets, missing)
    # missing split
    (root / "val").rename(tmp_path / "val-moved")
    assert f"{root / 'val'}: split folder not found" in structural_error(build_datasets, cfg)
    # a split of loose images, no class folders
    (root / "val").mkdir()
    save_image(root / "val" / "loose.png")
    assert f"{root / 'val'}: no class folders" in structural_error(build_datasets, cfg)
    (root / "val" / "loose.png").unlink()
    (root / "val").rmdir()
    (tmp_path / "val-moved").rename(root / "val")
    # empty class folder, in val only
    (root / "val" / "2" / "img0.png").unlink()
    assert f"{root / 'val' / '2'}: class folder has no images" in structural_error(build_datasets, cfg)
    save_image(root / "val" / "2" / "img0.png")
    # mixed integer / text names in both splits
    for split in ("train", "val"):
        save_image(root / split / "extra" / "a.png")
    assert f"{root / 'train' / 'extra'}: class folder name is text" in structural_error(build_datasets, cfg)


def test_unreadable_folder_is_an_error_not_an_empty_class(tmp_path, monkeypatch):
    make_split(tmp_path / "train", ["a", "b"])
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("/b"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    message = structural_error(ClassFolderDataset, tmp_path / "train")
    assert message == f"{tmp_path / 'train' / 'b'}: cannot read folder (permission denied)"


def test_dangling_and_looping_entries_are_listed_not_followed(tmp_path):
    make_split(tmp_path / "train", ["a"], per_class=1)
    (tmp_path / "train" / "a" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "train" / "a" / "deeper").mkdir()
    (tmp_path / "train" / "a" / "deeper" / "back").symlink_to(tmp_path / "train" / "a")
    ds = ClassFolderDataset(tmp_path / "train")
    assert [p.split("/")[-1] for p, _ in ds.samples] == ["gone.jpg", "img0.png"]
    with pytest.raises(BioclfError, match="gone.jpg: dangling symlink"):
        ds[0]
