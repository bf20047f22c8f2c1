"""data.resize_cache: training images decoded and resized once per dataset listing."""

from __future__ import annotations

import torch
from PIL import Image

from bioclf.data.cache import cache_folder, resized_paths
from photos import REPORT, make_dataset


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


def test_folder_loaders_use_the_cache_with_either_pipeline(tmp_path, monkeypatch):
    from bioclf.data import build_loaders
    from bioclf.spec.schema import DataConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_dataset(tmp_path / "data", n=4)
    cfg = DataConfig(source="folder", root=str(tmp_path / "data"), batch_size=4, num_workers=0,
                     train_transforms=REPORT, pipeline="device",
                     eval_transforms=[{"name": "resize", "size": 56}, {"name": "center_crop", "size": 48}])
    cfg = cfg.model_copy(update={"resize_cache": 64, "pin_memory": False})
    bundle = build_loaders(cfg, seed=0, batch_transforms=True)
    assert bundle.resized_now == 8 and len(bundle.train.dataset.read_paths) == 8
    images, labels = next(iter(bundle.train))
    # the cached copies are JPEGs: the workers hand over their bytes, the batch stage decodes
    assert all(path.startswith(str(tmp_path / "xdg")) for path in images.paths)
    assert all(item.dim() == 1 for item in images.items)
    x = bundle.train_batch_transform(images, torch.device("cpu"))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 48, 48)
    val_images, _ = next(iter(bundle.val))
    assert not any(path.startswith(str(tmp_path / "xdg")) for path in val_images.paths)  # eval: originals
    assert bundle.eval_batch_transform(val_images, "cpu").shape == (8, 3, 48, 48)
    reference = build_loaders(cfg.model_copy(update={"pipeline": "reference"}), seed=0, batch_transforms=True)
    assert reference.resized_now == 0  # the next variant reuses the cache, whatever its pipeline
    images, _ = next(iter(reference.train))
    assert images.dtype == torch.float32 and images.shape == (4, 3, 48, 48)
    assert torch.equal(reference.train_batch_transform(images, torch.device("cpu")), images)


def test_a_suite_decodes_its_dataset_once(tmp_path, monkeypatch):
    """Two variants of one suite on a folder dataset with data.resize_cache: the first run
    resizes every training image, the second none (resize_cache_built_images)."""
    from bioclf.engine import train
    from recording import RecordingLogger
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
