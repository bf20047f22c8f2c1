"""The bad-image scan, its cache and the data.on_bad_image policy (CPU, data in tmp_path)."""

import io
import json
import os
import shutil
import signal
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

import bioclf.data.scan as scan
from bioclf.data import (
    BadImageError,
    ClassFolderDataset,
    ScanReport,
    apply_bad_image_policy,
    build_datasets,
    build_loaders,
    check_dataset_images,
    check_image,
    dataset_listing_fingerprint,
    default_cache_dir,
    load_rgb,
    scan_dataset,
    scan_images,
)
from bioclf.errors import BioclfError
from bioclf.spec.schema import DataConfig

SMALL = {
    "train_transforms": [{"name": "resize", "size": [8, 8]}],
    "eval_transforms": [{"name": "resize", "size": [8, 8]}],
}


def jpeg_bytes(size=(500, 375), seed=0, **save):
    """A noisy (so not tiny) JPEG, as bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def png(size=(8, 6), color=(120, 30, 200)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width, height):
    """A valid PNG whose header claims width x height (1-bit), a few dozen bytes on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def make_dataset(root, classes=("0", "1", "2"), train=3, val=2):
    for split, count in (("train", train), ("val", val)):
        for name in classes:
            for j in range(count):
                write(root / split / name / f"img{j}.png", png(color=(int(name) * 60 % 256, j * 40, 90)))
    return root


@contextmanager
def deadline(seconds=10):
    """Fail instead of hanging (a symlink loop or a FIFO must not block)."""
    def expired(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- one bad kind per test --------------------------------------------------------------------

def test_good_images_pass(tmp_path):
    write(tmp_path / "a.jpg", jpeg_bytes((64, 48)))
    write(tmp_path / "b.png", png())
    Image.new("CMYK", (9, 7)).save(tmp_path / "c.jpg")
    Image.new("I;16", (9, 7)).save(tmp_path / "d.png")
    write(tmp_path / "e.jpg", jpeg_bytes((64, 48), progressive=True))
    paths = sorted(tmp_path.iterdir())
    assert [check_image(path) for path in paths] == [None] * 5
    assert scan_images(paths) == []


def test_zero_bytes(tmp_path):
    assert check_image(write(tmp_path / "empty.jpg", b"")) == "zero bytes"


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_jpeg(tmp_path, fraction):
    data = jpeg_bytes()
    cut = write(tmp_path / "cut.jpg", data[: int(len(data) * fraction)])
    assert check_image(cut) == "truncated"
    with pytest.raises(BioclfError, match="cut.jpg"):
        load_rgb(cut)


def test_draft_decode_reads_the_whole_stream(tmp_path):
    """Evidence for scan.py's shortcut: verify() passes a JPEG cut at 90%, a draft-mode
    (about 1/8 scale) decode fails on it like a full decode, and passes the whole file."""
    data = jpeg_bytes()
    cut = write(tmp_path / "cut.jpg", data[: int(len(data) * 0.9)])
    with Image.open(cut) as image:
        image.verify()  # no error: verify() does not decode the entropy-coded data
    with Image.open(cut) as image:
        image.draft("RGB", scan.DRAFT_SIZE)
        assert image.size == (63, 47)  # decoding at 1/8 scale
        with pytest.raises(OSError, match="truncated"):
            image.load()
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", scan.DRAFT_SIZE)
        image.load()


def test_scan_ignores_load_truncated_images(tmp_path, monkeypatch):
    data = jpeg_bytes((64, 48))
    cut = write(tmp_path / "cut.jpg", data[: len(data) // 2])
    monkeypatch.setattr("PIL.ImageFile.LOAD_TRUNCATED_IMAGES", True)
    assert check_image(cut) == "truncated"
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_text_named_jpg(tmp_path):
    assert check_image(write(tmp_path / "notes.jpg", "not an image\n")) == "not an image (text file)"
    binary = write(tmp_path / "noise.jpg", bytes(range(256)) * 4)
    assert check_image(binary) == "not an image (cannot identify image file)"


def test_unsupported_formats(tmp_path):
    svg = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>\n'
    assert check_image(write(tmp_path / "vector.jpg", svg)) == "unsupported format (SVG vector image)"
    assert check_image(write(tmp_path / "paper.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj")) == (
        "not an image (PDF document)"
    )
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\0" * 12
    assert check_image(write(tmp_path / "phone.jpg", heic)).startswith("unsupported format (HEIC")


def test_decompression_bombs(tmp_path, monkeypatch):
    limit = Image.MAX_IMAGE_PIXELS
    # Over 2 x the limit: Pillow raises. Between 1 x and 2 x: Pillow only warns; the scan refuses it too.
    assert check_image(write(tmp_path / "huge.png", png_header(20000, 20000))) == (
        f"decompression bomb (400000000 pixels > limit {limit})"
    )
    assert check_image(write(tmp_path / "big.png", png_header(10000, 10000))) == (
        f"decompression bomb (100000000 pixels > limit {limit})"
    )
    assert check_image(write(tmp_path / "fine.png", png_header(900, 900))) != "decompression bomb"
    # A lower limit applies to a real image, in the pool too.
    small = write(tmp_path / "small.png", png(size=(30, 20)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert check_image(small) == "decompression bomb (600 pixels > limit 500)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions(tmp_path):
    locked = write(tmp_path / "locked.png", png())
    locked.chmod(0)
    try:
        assert check_image(locked) == "permission denied"
        with pytest.raises(BioclfError, match="locked.png.*permission denied"):
            load_rgb(locked)
    finally:
        locked.chmod(0o644)


def test_permission_error_is_reported(tmp_path, monkeypatch):
    # The path a non-root user takes (simulated: the tests may run as root).
    path = write(tmp_path / "locked.png", png())

    def refuse(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", refuse)
    assert check_image(path) == "permission denied"
    with pytest.raises(BadImageError, match=r"locked.png: cannot read image \(permission denied\)"):
        load_rgb(path)


def test_symlinks_to_files(tmp_path):
    real = write(tmp_path / "real.png", png())
    (tmp_path / "link.png").symlink_to(real)
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    assert check_image(tmp_path / "link.png") is None
    assert check_image(tmp_path / "dangling.jpg") == "dangling symlink"
    assert check_image(tmp_path / "a.jpg") == "symlink loop"
    with pytest.raises(BadImageError, match="dangling.jpg: dangling symlink"):
        load_rgb(tmp_path / "dangling.jpg")


def test_fifo_named_jpg_does_not_block(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with deadline(10):
        assert check_image(fifo) == "not a regular file"
        with pytest.raises(BadImageError, match="pipe.jpg: not a regular file"):
            load_rgb(fifo)


def test_symlink_loop_folder_is_walked_once(tmp_path):
    root = make_dataset(tmp_path / "data")
    (root / "train" / "0" / "loop").symlink_to(root / "train" / "0")  # train/0/loop -> train/0
    (root / "train" / "1" / "up").symlink_to("..")  # train/1/up -> train
    (root / "train" / "2" / "self").symlink_to("self")  # a link to itself: neither file nor folder
    with deadline(10):
        dataset = ClassFolderDataset(root / "train")
        report = scan_dataset(root, tmp_path / "cache")
    paths = [path for path, _ in dataset.samples]
    assert len(paths) == len(set(os.path.realpath(p) for p in paths)) == 9
    assert report.n_images == 9 + 6 and report.bad == []


def test_symlinked_class_folder_is_followed(tmp_path):
    root = make_dataset(tmp_path / "data", classes=("0", "1"))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "train" / "1", elsewhere)
    (root / "train" / "1").symlink_to(elsewhere, target_is_directory=True)
    dataset = ClassFolderDataset(root / "train")
    assert dataset.classes == ["0", "1"] and len(dataset) == 6


# --- the pool -------------------------------------------------------------------------------

def test_pool_gives_the_same_result_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "PARALLEL_MIN_FILES", 10)
    paths = [write(tmp_path / f"{i:03d}.png", png()) for i in range(40)]
    write(paths[3], b"")
    write(paths[27], "text")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # the parent's limit reaches the workers
    write(paths[31], png(size=(10, 10)))
    expected = [(str(paths[3]), "zero bytes"), (str(paths[27]), "not an image (text file)"),
                (str(paths[31]), "decompression bomb (100 pixels > limit 60)")]
    assert scan_images(paths, workers=2) == expected
    assert scan_images(paths, workers=1) == expected


# --- the policy -----------------------------------------------------------------------------

def dataset_with_bad_files(root):
    make_dataset(root)
    data = jpeg_bytes((64, 48))
    write(root / "train" / "2" / "cut.jpg", data[: len(data) // 2])
    write(root / "val" / "1" / "empty.jpg", b"")
    write(root / "train" / "0" / "notes.jpg", "hello")
    return root


def test_error_policy_is_one_line_listing_the_files(tmp_path):
    root = dataset_with_bad_files(tmp_path / "data")
    report = scan_dataset(root, tmp_path / "cache")
    assert report.n_images == 18 and report.n_bad == 3
    with pytest.raises(BioclfError) as caught:
        apply_bad_image_policy(report, "error", root)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"data.root: 3 unreadable image(s) in {root}, e.g. ")
    for part in ("train/0/notes.jpg (not an image (text file))", "train/2/cut.jpg (truncated)",
                 "val/1/empty.jpg (zero bytes)", "set data.on_bad_image: skip"):
        assert part in message
    assert apply_bad_image_policy(ScanReport("f", 4, []), "error", root) == set()


def test_error_policy_lists_only_the_first_files(tmp_path):
    report = ScanReport("f", 100, [(f"train/0/{i}.jpg", "zero bytes") for i in range(40)])
    with pytest.raises(BioclfError, match=r"40 unreadable .*train/0/4.jpg \(zero bytes\), \.\.\. — fix") as caught:
        apply_bad_image_policy(report, "error", tmp_path)
    assert "train/0/5.jpg" not in str(caught.value)


def test_skip_policy_leaves_the_files_out(tmp_path):
    root = dataset_with_bad_files(tmp_path / "data")
    report = scan_dataset(root, tmp_path / "cache")
    exclude = apply_bad_image_policy(report, "skip", root)
    assert exclude == {str(root / "train/2/cut.jpg"), str(root / "val/1/empty.jpg"), str(root / "train/0/notes.jpg")}
    assert report.bad_list_text().splitlines()[0] == "train/0/notes.jpg\tnot an image (text file)"
    cfg = DataConfig(source="folder", root=str(root), num_workers=0, on_bad_image="skip", **SMALL)
    train_all, val_all, _, _ = build_datasets(cfg)
    train, val, _, _ = build_datasets(cfg, exclude=exclude)
    assert (len(train_all) - len(train), len(val_all) - len(val)) == (2, 1)
    assert sorted(train.excluded + val.excluded) == sorted(exclude)
    bundle = build_loaders(cfg, seed=0, exclude=exclude)
    assert sum(len(labels) for _, labels in bundle.val) == len(val) == 6


def test_skip_that_empties_a_class_names_it(tmp_path):
    root = make_dataset(tmp_path / "data", train=1)
    write(root / "train" / "1" / "img0.png", b"")
    report = scan_dataset(root, tmp_path / "cache")
    exclude = apply_bad_image_policy(report, "skip", root)
    with pytest.raises(BioclfError, match=r"train/1: class folder has no readable images"):
        ClassFolderDataset(root / "train", exclude=exclude)


def test_check_dataset_images(tmp_path):
    root = dataset_with_bad_files(tmp_path / "data")
    cfg = DataConfig(source="folder", root="data", num_workers=0, **SMALL)
    with pytest.raises(BioclfError, match="3 unreadable image"):
        check_dataset_images(cfg, base_dir=tmp_path, cache_dir=tmp_path / "cache")
    skip = cfg.model_copy(update={"on_bad_image": "skip"})
    report, exclude = check_dataset_images(skip, base_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert report.from_cache and len(exclude) == 3
    assert check_dataset_images(DataConfig(source="synthetic")) == (None, frozenset())
    with pytest.raises(BioclfError, match="data.on_bad_image: unknown policy"):
        apply_bad_image_policy(report, "ignore", root)


def test_unscanned_bad_file_in_a_loader_worker_names_the_path(tmp_path):
    # on_bad_image not applied: the file fails in a DataLoader worker process, and torch
    # re-raises it in this one; the message must still be one line naming the file.
    root = make_dataset(tmp_path / "data", classes=("0", "1"), train=2, val=1)
    write(root / "val" / "1" / "img0.png", "corrupt")
    cfg = DataConfig(source="folder", root=str(root), num_workers=1, batch_size=2, **SMALL)
    bundle = build_loaders(cfg, seed=0)
    assert bundle.val.num_workers == 1
    try:
        with deadline(60), pytest.raises(BioclfError) as caught:
            list(bundle.val)
    finally:
        # After any exception in a worker, torch's shutdown waits 5 s for the worker to join
        # (seen with a bare Dataset raising ValueError too); end it now to keep the test fast.
        for worker in getattr(bundle.val._iterator, "_workers", []):
            worker.terminate()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{root / 'val' / '1' / 'img0.png'}: cannot read image (UnidentifiedImageError")
    assert message.endswith("(in DataLoader worker process 0)")


# --- fingerprint and cache ------------------------------------------------------------------

def test_cache_hit_does_not_rescan(tmp_path, monkeypatch):
    root = dataset_with_bad_files(tmp_path / "data")
    cache = tmp_path / "cache"
    first = scan_dataset(root, cache)
    assert not first.from_cache
    assert [p.name for p in cache.iterdir()] == [f"scan-{first.fingerprint}.json"]
    calls = []

    def recorded(paths, workers=None):
        calls.append(sorted(str(p) for p in paths))
        return [(str(p), "zero bytes") for p in paths]

    monkeypatch.setattr(scan, "scan_images", recorded)
    second = scan_dataset(root, cache)
    assert second.from_cache and second.fingerprint == first.fingerprint and second.n_images == first.n_images
    assert calls == [sorted(first.bad_paths())]  # only the known-bad files are looked at again
    # A bad file fixed in place (e.g. chmod) drops out, and the cache is updated.
    monkeypatch.setattr(scan, "scan_images", lambda paths, workers=None: [])
    assert scan_dataset(root, cache).bad == []
    assert json.loads((cache / f"scan-{first.fingerprint}.json").read_text())["bad"] == []


def test_clean_cache_hit_scans_nothing(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data")
    scan_dataset(root, tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise AssertionError("rescanned")

    monkeypatch.setattr(scan, "scan_images", refuse)
    assert scan_dataset(root, tmp_path / "cache").from_cache
    with pytest.raises(AssertionError, match="rescanned"):
        scan_dataset(root, tmp_path / "cache", use_cache=False)


def test_bad_cache_file_means_a_rescan(tmp_path):
    root = make_dataset(tmp_path / "data")
    fingerprint = dataset_listing_fingerprint(root)
    write(tmp_path / "cache" / f"scan-{fingerprint}.json", "{not json")
    report = scan_dataset(root, tmp_path / "cache")
    assert not report.from_cache and scan_dataset(root, tmp_path / "cache").from_cache


def test_fingerprint_follows_the_listing(tmp_path):
    root = make_dataset(tmp_path / "data")
    before = dataset_listing_fingerprint(root)
    assert dataset_listing_fingerprint(root) == before
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # copy2: same names, sizes and mtimes -> same listing
    assert dataset_listing_fingerprint(copy) == before
    image = root / "train" / "0" / "img0.png"
    info = image.stat()
    os.utime(image, ns=(info.st_atime_ns, info.st_mtime_ns + 1000))
    touched = dataset_listing_fingerprint(root)
    assert touched != before
    write(root / "val" / "2" / "new.png", png())
    added = dataset_listing_fingerprint(root)
    write(root / "test" / "x.png", png())
    assert len({before, touched, added, dataset_listing_fingerprint(root)}) == 4
    write(root / "train" / "0" / "notes.txt", "not an image file: not listed")
    write(root / "train" / ".hidden.png", png())
    assert len({added, dataset_listing_fingerprint(root)}) == 2  # the test/ file, not the other two


def test_default_cache_dir_and_read_only_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "bioclf" / "scans"
    root = make_dataset(tmp_path / "data")
    listing = sorted(str(p) for p in root.rglob("*"))
    report = scan_dataset(root)
    assert (tmp_path / "xdg" / "bioclf" / "scans" / f"scan-{report.fingerprint}.json").is_file()
    assert sorted(str(p) for p in root.rglob("*")) == listing
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "bioclf" / "scans"


def test_unwritable_cache_only_warns(tmp_path, caplog):
    root = make_dataset(tmp_path / "data")
    blocker = write(tmp_path / "file", "a file where the cache folder should be")
    assert scan_dataset(root, blocker / "scans").bad == []
    assert "cannot write the cache" in caplog.text


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(BioclfError, match="data.root: dataset folder .*nowhere not found"):
        scan_dataset(tmp_path / "nowhere", tmp_path / "cache")
