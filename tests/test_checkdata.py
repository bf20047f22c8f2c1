"""check-data: duplicates and leakage across splits, the content fingerprint, the report and its
outputs (CPU, generated photo-like images in tmp_path; the hash cache in a tmp XDG_CACHE_HOME)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bioclf.datacheck.hashing as hashing
from bioclf.cli import main
from bioclf.data.synthetic import render
from bioclf.datacheck import (
    PHASH256_THRESHOLD,
    PHASH_THRESHOLD,
    check_dataset,
    close_pairs,
    data_fingerprint,
    fingerprint_dataset,
    image_hashes,
    near_duplicate_pairs,
    suite_data_check,
)
from bioclf.datacheck.neardup import hex256_to_words, popcount64
from bioclf.errors import BioclfError
from bioclf.spec.schema import DataConfig


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """Every cache (hashes, scans) under tmp_path, never in ~/.cache."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    yield home
    assert os.environ.get("XDG_CACHE_HOME") == str(home), "a test undid the cache isolation"


# --- photo-like generated images ------------------------------------------------------------

def smooth_field(seed: int, size: int = 160) -> Image.Image:
    """Random smooth colour noise at several scales, plus grain: texture everywhere, like a photo."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size, 3), np.float32)
    for cells, amplitude in ((4, 1.0), (8, 0.5), (16, 0.25), (32, 0.12)):
        small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
        out += amplitude * np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), np.float32)
    out = out / 1.87 + rng.normal(0, 6, out.shape)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def synthetic_photo(seed: int, label: int, size: int = 160) -> Image.Image:
    """The project's generated images (64 px, difficulty 0.5) upscaled: same-class look-alikes."""
    return Image.fromarray(render(label, 64, np.random.default_rng(seed), 0.5)).resize((size, size), Image.BICUBIC)


def save_jpeg(image: Image.Image, path: Path, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)
    return path


def recompress(path: Path, scale: float, quality: int, dest: Path) -> Path:
    """A resized and re-encoded copy of an image file."""
    with Image.open(path) as image:
        w, h = image.size
        copy = image.convert("RGB").resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.BILINEAR)
    return save_jpeg(copy, dest, quality)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


def make_dataset(root: Path, classes: int = 3, train: int = 6, val: int = 3, test: int = 5, seed: int = 0) -> Path:
    """Distinct images only: smooth fields for even classes, synthetic look-alikes for odd ones."""
    k = seed * 1000
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            for _ in range(n):
                k += 1
                image = smooth_field(k) if c % 2 == 0 else synthetic_photo(k, c)
                save_jpeg(image, root / split / str(c) / f"img{k:04d}.jpg")
    for _ in range(test):
        k += 1
        save_jpeg(smooth_field(k, 144), root / "test" / f"t{k:04d}.jpg")
    return root


# --- duplicates and leakage -----------------------------------------------------------------

def test_planted_exact_and_resized_duplicates_across_splits_are_found(tmp_path):
    root = make_dataset(tmp_path / "data")
    # exact copies: train -> val (same class) and train -> test
    shutil.copy(root / "train/0/img0001.jpg", root / "val/0/exact_copy.jpg")
    shutil.copy(root / "train/2/img0014.jpg", root / "test/exact_copy.jpg")
    # resized + recompressed copies: smaller into test, larger into val, a look-alike synthetic image too
    recompress(root / "train/0/img0003.jpg", 0.6, 70, root / "test/small_copy.jpg")
    recompress(root / "train/2/img0015.jpg", 1.5, 75, root / "val/2/big_copy.jpg")
    recompress(root / "train/1/img0008.jpg", 0.5, 80, root / "val/1/synthetic_copy.jpg")
    # a PNG of a JPEG: other bytes, same picture; within train, in another class (a label conflict)
    Image.open(root / "train/0/img0005.jpg").save(root / "train/2/png_copy.png")

    report = check_dataset(root)

    assert report.usable, report.problems
    assert report.exact_groups == [["train/0/img0001.jpg", "val/0/exact_copy.jpg"],
                                   ["train/2/img0014.jpg", "test/exact_copy.jpg"]]
    near = {(d.a, d.b) for d in report.near}
    assert near == {
        ("train/0/img0003.jpg", "test/small_copy.jpg"),
        ("train/2/img0015.jpg", "val/2/big_copy.jpg"),
        ("train/1/img0008.jpg", "val/1/synthetic_copy.jpg"),
        ("train/0/img0005.jpg", "train/2/png_copy.png"),
    }, "planted pairs missed, or a false pair among distinct images"
    for d in report.near:
        assert d.phash_distance <= PHASH_THRESHOLD and d.phash256_distance <= PHASH256_THRESHOLD
    assert sum(d.cross_split for d in report.near) == 3
    conflict = [d for d in report.near if d.label_conflict]
    assert [(d.a, d.b) for d in conflict] == [("train/0/img0005.jpg", "train/2/png_copy.png")]
    text = "\n".join(report.warnings)
    assert "2 exact duplicate group(s) span splits" in text and "train/0/img0001.jpg = val/0/exact_copy.jpg" in text
    assert "3 near-duplicate pair(s) across splits" in text
    summary = report.summary_text()
    assert "exact duplicates: 2 group(s), 4 file(s); 2 group(s) across splits" in summary
    assert "near-duplicates: 4 pair(s), 3 across splits" in summary


def test_no_false_pair_among_many_distinct_images_and_copies_within_thresholds():
    """300 distinct generated images (44,850 pairs): no near-duplicate; their resized and re-encoded
    copies all are."""
    images = [smooth_field(s, 128) for s in range(150)] + [synthetic_photo(s, s % 10, 128) for s in range(150)]
    images = [jpeg_roundtrip(im, 90) for im in images]
    hashes = [image_hashes(im) for im in images]
    phash = np.array([h[0] for h in hashes], dtype=np.uint64)
    words = hex256_to_words([h[1] for h in hashes])
    i, j, *_ = near_duplicate_pairs(phash, words)
    assert len(i) == 0, [(a, b) for a, b in zip(i, j)]

    for k in list(range(0, 150, 15)) + list(range(150, 300, 15)):
        w, h = images[k].size
        for copy in (jpeg_roundtrip(images[k].resize((int(w * 0.6), int(h * 0.6)), Image.BILINEAR), 70),
                     jpeg_roundtrip(images[k].resize((int(w * 1.5), int(h * 1.5)), Image.BICUBIC), 80),
                     jpeg_roundtrip(images[k], 40)):
            p, q = image_hashes(copy)
            assert bin(int(phash[k]) ^ p).count("1") <= PHASH_THRESHOLD
            assert popcount64(words[k] ^ hex256_to_words([q])[0]).sum() <= PHASH256_THRESHOLD


def test_close_pairs_is_exact_across_blocks():
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, size=700, dtype=np.uint64)
    planted = [(5, 690, 3), (63, 64, 0), (64, 300, 10), (100, 101, 7)]
    for a, b, flips in planted:  # b = a with `flips` bits flipped
        value = int(hashes[a])
        for bit in rng.choice(64, size=flips, replace=False):
            value ^= 1 << int(bit)
        hashes[b] = np.uint64(value)
    i, j, d, truncated = close_pairs(hashes, 10, block_rows=64)
    brute = {(a, b) for a in range(700) for b in range(a + 1, 700)
             if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= 10}
    assert set(zip(i.tolist(), j.tolist())) == brute
    assert {(a, b) for a, b, _ in planted} <= brute and not truncated
    assert all(bin(int(hashes[a]) ^ int(hashes[b])).count("1") == k for a, b, k in zip(i, j, d))
    _, _, _, truncated = close_pairs(np.zeros(50, dtype=np.uint64), 0, max_pairs=100)
    assert truncated  # 1,225 identical pairs > 100


# --- the fingerprint ------------------------------------------------------------------------

def _png(seed: int, size: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _write_tiny(root: Path, order: list[int]) -> None:
    files = [(f"train/{k % 2}/f{k}.png", k) for k in range(6)] + [(f"val/{k % 2}/v{k}.png", 10 + k) for k in range(2)]
    for index in order:
        rel, seed = files[index % len(files)]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _png(seed).save(root / rel)


def test_fingerprint_ignores_file_order_and_mtime_and_sees_one_pixel(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _write_tiny(a, list(range(8)))
    _write_tiny(b, list(reversed(range(8))))  # created in the other order: other directory order, mtimes
    os.utime(b / "train/0/f0.png", ns=(1, 1))
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    fa, fb = fingerprint_dataset(a), fingerprint_dataset(b)
    assert fa == fb and len(fa) == 32
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == before  # nothing written into the data

    # cached per file by (size, mtime_ns): a second call reads no file
    with monkeypatch.context() as patch:  # (monkeypatch.undo() would also undo the cache_home fixture)
        patch.setattr(hashing, "file_sha256", lambda path: pytest.fail(f"re-read {path}"))
        assert fingerprint_dataset(a) == fa

    pixels = np.asarray(Image.open(a / "train/1/f3.png")).copy()
    pixels[5, 7, 1] ^= 1  # one channel of one pixel
    Image.fromarray(pixels).save(a / "train/1/f3.png")
    assert fingerprint_dataset(a) != fa

    shutil.move(b / "train/0/f0.png", b / "train/1/f0.png")  # same bytes, other class
    assert fingerprint_dataset(b) != fa

    _png(99).save(b / "train/1/f0.png")  # the test split is not part of it
    c = tmp_path / "c"
    _write_tiny(c, list(range(8)))
    (c / "test").mkdir()
    _png(50).save(c / "test/x.png")
    assert fingerprint_dataset(c) == fa


def test_data_fingerprint_for_folder_and_synthetic(tmp_path):
    _write_tiny(tmp_path / "d", list(range(8)))
    folder = data_fingerprint(DataConfig(source="folder", root=str(tmp_path / "d")))
    assert folder.digest == fingerprint_dataset(tmp_path / "d") and folder.source_type == "local"
    assert json.loads(folder.source)["uri"].startswith("file://")
    assert json.loads(folder.profile)["splits"] == {"train": 6, "val": 2}

    s1 = data_fingerprint(DataConfig(source="synthetic", synthetic={"seed": 1}))
    s2 = data_fingerprint(DataConfig(source="synthetic", synthetic={"seed": 1, "test_images": 5}))
    s3 = data_fingerprint(DataConfig(source="synthetic", synthetic={"seed": 2}))
    assert s1.digest == s2.digest != s3.digest and s1.name == "synthetic" and s1.source_type == "code"


def test_perceptual_hashes_are_cached_and_recomputed_when_a_file_changes(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data", classes=2, train=2, val=1, test=0)
    first = check_dataset(root)
    calls = []
    real = hashing.perceptual_info
    monkeypatch.setattr(hashing, "perceptual_info", lambda path: calls.append(path) or real(path))
    second = check_dataset(root)
    assert calls == [] and second.fingerprint == first.fingerprint
    save_jpeg(smooth_field(777), root / "train/0/img0001.jpg")
    third = check_dataset(root)
    assert [Path(p).name for p in calls] == ["img0001.jpg"] and third.fingerprint != first.fingerprint


# --- the report and the CLI -----------------------------------------------------------------

def test_report_counts_classes_imbalance_and_unreadable(tmp_path):
    root = make_dataset(tmp_path / "data", classes=3, train=2, val=1, test=2)
    for k in range(11):  # class 0 gets 13 train images: imbalance 6.5
        save_jpeg(smooth_field(500 + k, 64), root / f"train/0/extra{k}.jpg")
    (root / "val/1/broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    Image.fromarray(np.full((40, 60), 128, np.uint8), "L").save(root / "val/2/gray.png")

    report = check_dataset(root, on_bad_image="skip")  # as a run with data.on_bad_image: skip
    assert report.usable
    assert report.n_images == {"train": 17, "val": 5, "test": 2}
    assert report.counts["train"] == {"0": 13, "1": 2, "2": 2}
    assert report.counts["val"] == {"0": 1, "1": 2, "2": 2}
    assert report.imbalance("train") == 6.5
    assert report.unreadable == [("val/1/broken.jpg", report.unreadable[0][1])]
    assert report.formats() == {"JPEG": 22, "PNG": 1} and report.modes()["L"] == 1
    assert ("val", 60, 40) in report.sizes()
    assert any("train is imbalanced: class 0 has 13 images" in w for w in report.warnings)
    assert any("1 unreadable train/val image(s), e.g. val/1/broken.jpg" in w for w in report.warnings)
    strict = check_dataset(root)  # data.on_bad_image: error, the default: a run would stop
    assert not strict.usable and "1 unreadable image(s)" in strict.problems[0] and "broken.jpg" in strict.problems[0]
    data = report.to_dict()
    json.dumps(data)
    assert data["counts"][0] == {"class": "0", "train": 13, "val": 1}
    assert data["only_in_train"] == [] and data["imbalance"]["train"] == 6.5


def test_classes_in_one_split_only_make_the_data_unusable(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", classes=3, train=1, val=1, test=0)
    save_jpeg(smooth_field(900, 64), root / "train/3/only.jpg")
    shutil.rmtree(root / "val/2")
    report = check_dataset(root)
    assert report.only_in("train", "val") == ["2", "3"] and report.only_in("val", "train") == []
    assert not report.usable and "only in train: 2, 3" in report.problems[0]
    assert "classes only in train: 2, 3; only in val: none" in report.summary_text()

    assert main(["check-data", str(root), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "NOT usable for training" in captured.out
    assert captured.err.strip().endswith("(only in train: 2, 3)")
    with pytest.raises(BioclfError, match="only in train"):
        suite_data_check(DataConfig(source="folder", root=str(root)))


def test_cli_summary_json_and_out_dir(tmp_path, capsys):
    root = make_dataset(tmp_path / "data", classes=2, train=3, val=2, test=2)
    shutil.copy(root / "train/0/img0001.jpg", root / "val/0/leak.jpg")
    assert main(["check-data", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"dataset {root}" in out and "fingerprint " in out and "usable" in out
    assert "exact  train/val" in out and "warning: 1 exact duplicate group(s) span splits" in out

    assert main(["check-data", str(root), "--quiet", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["usable"] and data["images"] == {"train": 6, "val": 5, "test": 2}
    assert data["exact_duplicate_groups"] == [{"paths": ["train/0/img0001.jpg", "val/0/leak.jpg"],
                                               "cross_split": True}]

    out_dir = tmp_path / "report"
    assert main(["check-data", str(root), "--quiet", "--json", str(tmp_path / "r.json"), "--out", str(out_dir)]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["fingerprint"] == data["fingerprint"]
    names = {p.name for p in out_dir.iterdir()}
    assert names == {"summary.json", "counts.csv", "duplicates.csv", "unreadable.csv", "class_counts.png",
                     "image_sizes.png"}
    assert (out_dir / "counts.csv").read_text().splitlines() == ["class,train,val", "0,3,3", "1,3,2"]
    rows = (out_dir / "duplicates.csv").read_text().splitlines()
    assert rows[0].startswith("kind,group,path_a,path_b,split_a,split_b") and len(rows) == 2
    for png in ("class_counts.png", "image_sizes.png"):
        with Image.open(out_dir / png) as image:
            assert image.size[0] > 400 and image.size[1] > 200

    assert main(["check-data", str(root), "--quiet", "--strict"]) == 2
    assert main(["check-data", str(tmp_path / "missing")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_suite_data_check_echoes_warnings_and_returns_the_fingerprint(tmp_path):
    root = make_dataset(tmp_path / "data", classes=2, train=2, val=1, test=0)
    shutil.copy(root / "train/1/img0004.jpg", root / "val/1/leak.jpg")
    (root / "train/0/broken.jpg").write_bytes(b"")  # the suite's own scan reports it, not this check
    lines: list[str] = []
    with pytest.raises(BioclfError, match="1 unreadable image"):  # data.on_bad_image: error, as the run's scan
        suite_data_check(DataConfig(source="folder", root=str(root)), echo=lines.append)
    fingerprint, report = suite_data_check(DataConfig(source="folder", root=str(root), on_bad_image="skip"),
                                           echo=lines.append)
    assert fingerprint.digest == fingerprint_dataset(root) == report.fingerprint
    assert fingerprint.name == "data" and json.loads(fingerprint.profile)["exact_duplicate_groups_across_splits"] == 1
    assert len(lines) == 1 and lines[0].startswith("data: warning: 1 exact duplicate group(s) span splits")
    assert report.warning_kinds == ["leakage", "unreadable"]
    synthetic, none = suite_data_check(DataConfig(source="synthetic"), echo=lines.append)
    assert none is None and synthetic.source_type == "code" and len(lines) == 1


def test_a_suite_decodes_each_image_once_before_training(tmp_path, monkeypatch):
    """The suite's data checks (folders, data check, image scan with data.on_bad_image) decode
    each image once: the data check's hashing pass runs the scan's own check and leaves the
    scan cached; a broken file is still refused with its reason."""
    from collections import Counter

    from bioclf.data import scan
    from bioclf.runner import check_data
    from bioclf.spec import load_suite

    root = tmp_path / "data"  # the module's fixture keeps every cache in tmp_path
    for split, n in (("train", 4), ("val", 2)):
        for label in ("0", "1"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), (60 * i, 100 + int(label) * 80, 30)).save(folder / f"{i}.jpg")
    decoded = Counter()
    real = scan._check
    monkeypatch.setattr(scan, "_check", lambda path, *args: (decoded.update([path]), real(path, *args))[1])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: once\ndata: {{source: folder, root: {root}, num_workers: 0}}\n"
                    "model: {backbone: resnet18}\nvariants: {a: {}, b: {loss.label_smoothing: 0.0}}\n")
    runs = load_suite(spec).runs
    scans, fingerprints, groups = check_data(runs, spec.parent, echo=lambda line: None)
    assert len(groups) == 1  # one dataset: its duplicate groups (train and val share images here)
    assert len(decoded) == 12 and set(decoded.values()) == {1}
    (report, skipped), = {id(v): v for v in scans.values()}.values()
    assert report.from_cache and report.n_images == 12 and not skipped
    assert len(fingerprints) == 1
    # A file that breaks is found by that one pass, with the scan's reason, and refused.
    (root / "train" / "0" / "0.jpg").write_bytes(b"")
    decoded.clear()
    with pytest.raises(BioclfError, match=r"zero bytes"):
        check_data(runs, spec.parent, echo=lambda line: None)
