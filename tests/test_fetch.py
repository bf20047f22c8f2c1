"""fetch-data: the layout step on fake downloads shaped like what torchvision leaves on disk, the
taxonomy.csv of the datasets with a class tree, and the no-network error (no network used)."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import bioclf.fetch as fetch
from bioclf.cli import main
from bioclf.data import build_datasets, read_class_names
from bioclf.errors import BioclfError
from bioclf.spec.schema import DataConfig
from bioclf.taxonomy import read_taxonomy


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, "JPEG")


def fake_flowers(raw: Path) -> Path:
    """raw/flowers-102/{jpg/image_00001.jpg.., imagelabels.mat, setid.mat}: 3 classes, 12 images."""
    base = raw / "flowers-102"
    for image_id in range(1, 13):
        _jpeg(base / "jpg" / f"image_{image_id:05d}.jpg", image_id)
    labels = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]], dtype=np.uint8)  # 1-based, as in the .mat
    scipy.io.savemat(base / "imagelabels.mat", {"labels": labels})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([[1, 5, 9, 2]], dtype=np.uint16),
                                          "valid": np.array([[3, 6, 10]], dtype=np.uint16),
                                          "tstid": np.array([[4, 7, 8, 11, 12]], dtype=np.uint16)})
    return raw


def test_flowers102_layout_links_the_download_into_class_folders(tmp_path):
    raw = fake_flowers(tmp_path / "raw")
    before = sorted((p.relative_to(raw), p.stat().st_mtime_ns) for p in raw.rglob("*"))
    lines: list[str] = []
    result = fetch.fetch_data("flowers102", tmp_path / "flowers", download_dir=raw, echo=lines.append)
    dest = tmp_path / "flowers"
    assert lines == [f"flowers102: using the download in {raw}"]
    assert result.counts == {"train": 4, "val": 3, "test": 5} and result.num_classes == 3
    assert result.linked == 12 and result.copied == 0
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg"))
    assert files == ["test/image_00004.jpg", "test/image_00007.jpg", "test/image_00008.jpg", "test/image_00011.jpg",
                     "test/image_00012.jpg", "train/0/image_00001.jpg", "train/0/image_00002.jpg",
                     "train/1/image_00005.jpg", "train/2/image_00009.jpg", "val/0/image_00003.jpg",
                     "val/1/image_00006.jpg", "val/2/image_00010.jpg"]
    src = raw / "flowers-102/jpg/image_00001.jpg"
    assert os.path.samefile(dest / "train/0/image_00001.jpg", src)  # a hard link, not a move
    assert sorted((p.relative_to(raw), p.stat().st_mtime_ns) for p in raw.rglob("*")) == before
    assert (dest / "test_labels.csv").read_text().splitlines() == [
        "image_name,label", "image_00004,0", "image_00007,1", "image_00008,1", "image_00011,2", "image_00012,2"]
    assert not (dest / "classes.txt").exists()  # torchvision's 102 names do not fit 3 fake classes
    marker = json.loads((dest / fetch.MARKER).read_text())
    assert marker["dataset"] == "flowers102" and marker["counts"]["test"] == 5
    assert marker["taxonomy_file"] is None and not (dest / "taxonomy.csv").exists()  # no hierarchy
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]

    train, val, classes, _ = build_datasets(DataConfig(source="folder", root=str(dest)))
    assert classes == ["0", "1", "2"] and len(train) == 4 and len(val) == 3

    again = fetch.fetch_data("flowers102", dest, download_dir=raw, echo=lines.append)
    assert again.already_there and lines[-1].endswith("flowers102 is already there")
    with pytest.raises(BioclfError, match="holds another fetched dataset"):
        fetch.fetch_data("oxford_pets", dest, download_dir=raw, echo=lines.append)


def test_copy_mode_and_a_non_empty_destination(tmp_path):
    raw = fake_flowers(tmp_path / "raw")
    result = fetch.lay_out("flowers", raw, tmp_path / "copied", copy=True)
    assert result.copied == 12 and result.linked == 0
    assert not os.path.samefile(tmp_path / "copied/train/0/image_00001.jpg", raw / "flowers-102/jpg/image_00001.jpg")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BioclfError, match="not empty"):
        fetch.lay_out("flowers102", raw, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_an_incomplete_download_leaves_nothing_behind(tmp_path):
    raw = fake_flowers(tmp_path / "raw")
    (raw / "flowers-102/jpg/image_00012.jpg").unlink()
    with pytest.raises(BioclfError, match="1 image file.*missing.*image_00012.jpg"):
        fetch.lay_out("flowers102", raw, tmp_path / "out")
    (raw / "flowers-102/setid.mat").unlink()
    with pytest.raises(BioclfError, match="download .* is incomplete"):
        fetch.lay_out("flowers102", raw, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


PETS = (("Abyssinian", 1, 1, 10), ("great_pyrenees", 2, 2, 5))  # breed, CLASS-ID, SPECIES (1 cat, 2 dog), images


def fake_pets(raw: Path, breeds=PETS, list_txt: bool = False) -> Path:
    """raw/oxford-iiit-pet/{images/, annotations/{trainval,test}.txt}: n trainval images and one test
    image per breed; with ``list_txt`` also annotations/list.txt (its comment header, then
    ``Image CLASS-ID SPECIES BREED-ID`` for every image)."""
    base = raw / "oxford-iiit-pet"
    trainval, test = [], []
    for breed, label, species, n in breeds:
        for k in range(1, n + 1):
            _jpeg(base / "images" / f"{breed}_{k}.jpg", label * 100 + k)
            trainval.append(f"{breed}_{k} {label} {species} 1")
        _jpeg(base / "images" / f"{breed}_{100}.jpg", label * 1000)
        test.append(f"{breed}_100 {label} {species} 1")
    (base / "annotations").mkdir()
    (base / "annotations/trainval.txt").write_text("\n".join(trainval) + "\n")
    (base / "annotations/test.txt").write_text("\n".join(test) + "\n")
    if list_txt:
        header = ["#Image CLASS-ID SPECIES BREED-ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog",
                  "#BREED ID: 1-25:Cat 1:12:Dog", "#All images with 1st letter as captial are cat images"]
        (base / "annotations/list.txt").write_text("\n".join(header + trainval + test) + "\n")
    return raw


def test_oxford_pets_val_is_carved_from_trainval_per_class(tmp_path):
    fake_pets(tmp_path / "raw")
    result = fetch.lay_out("oxford_pets", tmp_path / "raw", tmp_path / "pets", val_fraction=0.2, seed=1)
    dest = tmp_path / "pets"
    assert result.counts == {"train": 12, "val": 3, "test": 2}  # 10 -> 8 + 2, 5 -> 4 + 1
    assert len(list((dest / "val/0").iterdir())) == 2 and len(list((dest / "val/1").iterdir())) == 1
    assert read_class_names(dest / "classes.txt", 2) == ["Abyssinian", "Great Pyrenees"]
    again = fetch.lay_out("oxford_pets", tmp_path / "raw", tmp_path / "pets2", val_fraction=0.2, seed=1)
    assert again.counts == result.counts
    names = [sorted(p.name for p in (folder / "val/0").iterdir()) for folder in (tmp_path / "pets2", dest)]
    assert names[0] == names[1]
    cfg = DataConfig(source="folder", root=str(dest), class_names_file="classes.txt")
    assert build_datasets(cfg)[3] == ["Abyssinian", "Great Pyrenees"]
    assert not (dest / "taxonomy.csv").exists()  # no list.txt in this download
    assert json.loads((dest / fetch.MARKER).read_text())["taxonomy_file"] is None


def test_oxford_pets_taxonomy_puts_each_breed_under_cat_or_dog(tmp_path):
    breeds = (("Abyssinian", 1, 1, 3), ("american_bulldog", 2, 2, 3), ("Bengal", 3, 1, 3))
    fake_pets(tmp_path / "raw", breeds, list_txt=True)
    result = fetch.lay_out("pets", tmp_path / "raw", tmp_path / "pets")
    dest = tmp_path / "pets"
    assert result.num_classes == 3
    assert (dest / "taxonomy.csv").read_text() == "class,species\n0,cat\n1,dog\n2,cat\n"
    tree = read_taxonomy(dest / "taxonomy.csv", ["0", "1", "2"])
    assert tree.ranks == ("class", "species")
    assert tree.lca_heights().tolist() == [[0, 2, 1], [2, 0, 2], [1, 2, 0]]
    assert json.loads((dest / fetch.MARKER).read_text())["taxonomy_file"] == "taxonomy.csv"

    listing = tmp_path / "raw/oxford-iiit-pet/annotations/list.txt"
    listing.write_text(listing.read_text() + "Abyssinian_7 1 2 1\n")  # one more Abyssinian, as a dog
    with pytest.raises(BioclfError) as error:
        fetch.lay_out("pets", tmp_path / "raw", tmp_path / "pets2")
    message = str(error.value)
    assert "breed 'Abyssinian' has two species names, 'cat' (line 6) and 'dog' (line 18)" in message
    assert str(listing) in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets", "raw"]


AIRCRAFT = {"707-320": ("Boeing 707", "Boeing"), "A300B4": ("A300", "Airbus"), "Cessna 172": ("Cessna 172", "Cessna")}
TREE = {"737-300": ("Boeing 737", "Boeing"), "737-400": ("Boeing 737", "Boeing"),
        "A319": ("A320", "Airbus"), "A320": ("A320", "Airbus")}  # variant A320 is in family A320, as in FGVC


def fake_aircraft(raw: Path, tree: dict[str, tuple[str, str]] = AIRCRAFT, first_id: int = 1000000,
                  extra_families=(), extra_manufacturers=()) -> Path:
    """raw/fgvc-aircraft-2013b/data/: images/, variants.txt, families.txt, manufacturers.txt and
    images_{variant,family,manufacturer}_{train,val,test}.txt (``<7-digit image id> <name>``) for
    ``tree`` (variant -> (family, manufacturer)), 2 / 1 / 1 images per variant."""
    data = raw / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(tree) + "\n")
    families = list(dict.fromkeys([f for f, _ in tree.values()] + list(extra_families)))
    manufacturers = list(dict.fromkeys([m for _, m in tree.values()] + list(extra_manufacturers)))
    (data / "families.txt").write_text("\n".join(families) + "\n")
    (data / "manufacturers.txt").write_text("\n".join(manufacturers) + "\n")
    k = 0
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        lines = {"variant": [], "family": [], "manufacturer": []}
        for variant, (family, manufacturer) in tree.items():
            for _ in range(n):
                k += 1
                image = f"{first_id + k:07d}"
                _jpeg(data / "images" / f"{image}.jpg", k)
                for rank, name in (("variant", variant), ("family", family), ("manufacturer", manufacturer)):
                    lines[rank].append(f"{image} {name}")
        for rank, rows in lines.items():
            (data / f"images_{rank}_{split}.txt").write_text("\n".join(rows) + "\n")
    return data


def test_fgvc_aircraft_official_splits(tmp_path):
    fake_aircraft(tmp_path / "raw")
    result = fetch.lay_out("aircraft", tmp_path / "raw", tmp_path / "air")
    assert result.counts == {"train": 6, "val": 3, "test": 3} and result.num_classes == 3
    assert (tmp_path / "air/classes.txt").read_text().splitlines() == list(AIRCRAFT)
    assert sorted(p.name for p in (tmp_path / "air/train/2").iterdir()) == ["1000005.jpg", "1000006.jpg"]


def test_fgvc_aircraft_taxonomy_variant_family_manufacturer(tmp_path):
    fake_aircraft(tmp_path / "raw", TREE, first_id=0, extra_families=["Cessna 172"], extra_manufacturers=["Cessna"])
    result = fetch.lay_out("fgvc_aircraft", tmp_path / "raw", tmp_path / "air")
    dest = tmp_path / "air"
    assert result.counts == {"train": 8, "val": 4, "test": 4} and result.num_classes == 4
    assert (dest / "taxonomy.csv").read_text() == (
        "class,family,manufacturer\n"
        "0,Boeing 737,Boeing\n"
        "1,Boeing 737,Boeing\n"
        "2,A320,Airbus\n"
        "3,A320,Airbus\n")
    tree = read_taxonomy(dest / "taxonomy.csv", [str(k) for k in range(4)])
    assert tree.ranks == ("class", "family", "manufacturer")
    assert tree.lca_heights().tolist() == [[0, 1, 3, 3], [1, 0, 3, 3], [3, 3, 0, 1], [3, 3, 1, 0]]
    marker = json.loads((dest / fetch.MARKER).read_text())
    assert marker["taxonomy_file"] == "taxonomy.csv" and marker["class_names_file"] == "classes.txt"
    train, _, classes, _ = build_datasets(DataConfig(source="folder", root=str(dest)))
    assert tree.classes == classes == ["0", "1", "2", "3"]


@pytest.mark.parametrize("rank, split, image, name, message", [
    ("family", "val", "0000011", "Boeing 737",
     "variant 'A319' has two family names, 'A320' (image 0000005 in images_family_train.txt) and 'Boeing 737' "
     "(image 0000011 in images_family_val.txt), in {data}: a taxonomy needs one family per variant"),
    ("manufacturer", "test", "0000015", "Boeing",
     "family 'A320' has two manufacturer names, 'Airbus' (image 0000005 in images_manufacturer_train.txt) and "
     "'Boeing' (image 0000015 in images_manufacturer_test.txt), in {data}: a taxonomy needs one manufacturer "
     "per family"),
])
def test_fgvc_aircraft_class_with_two_parents_is_one_line_naming_the_files(tmp_path, rank, split, image, name,
                                                                            message):
    data = fake_aircraft(tmp_path / "raw", TREE, first_id=0)
    path = data / f"images_{rank}_{split}.txt"  # the one image of A319 in that split gets another name
    lines = [f"{image} {name}" if line.startswith(image) else line for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BioclfError) as error:
        fetch.lay_out("fgvc_aircraft", tmp_path / "raw", tmp_path / "air")
    assert str(error.value) == "fgvc_aircraft: " + message.format(data=data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no DEST, no partial folder
    lines = []  # through fetch-data: the files are there, so the error comes at once, no download tried
    with pytest.raises(BioclfError, match="a taxonomy needs one"):
        fetch.fetch_data("fgvc_aircraft", tmp_path / "air", download_dir=tmp_path / "raw", echo=lines.append)
    assert not any("downloading" in line for line in lines), lines


def test_fgvc_aircraft_name_at_two_ranks_is_refused(tmp_path):
    tree = {"737-300": ("Boeing", "Boeing"), "A319": ("A320", "Airbus")}  # hypothetical: family = manufacturer
    data = fake_aircraft(tmp_path / "raw", tree)
    with pytest.raises(BioclfError) as error:
        fetch.lay_out("fgvc_aircraft", tmp_path / "raw", tmp_path / "air")
    assert str(error.value) == (f"fgvc_aircraft: 'Boeing' is both a family and a manufacturer name in {data}: "
                                "taxonomy.csv keeps the dataset's names, and a name at two ranks would make the "
                                "tree a cycle")
    assert not (tmp_path / "air").exists()


@pytest.mark.parametrize("missing", [
    ["families.txt", "images_family_train.txt", "images_family_val.txt", "images_family_test.txt",
     "manufacturers.txt", "images_manufacturer_train.txt", "images_manufacturer_val.txt",
     "images_manufacturer_test.txt"],
    ["images_manufacturer_test.txt"],
])
def test_fgvc_aircraft_without_the_family_files_is_laid_out_without_a_taxonomy(tmp_path, missing):
    data = fake_aircraft(tmp_path / "raw", TREE)
    for name in missing:
        (data / name).unlink()
    result = fetch.lay_out("fgvc_aircraft", tmp_path / "raw", tmp_path / "air")
    assert result.counts == {"train": 8, "val": 4, "test": 4}
    assert not (tmp_path / "air/taxonomy.csv").exists()
    marker = json.loads((tmp_path / "air" / fetch.MARKER).read_text())
    assert marker["taxonomy_file"] is None and marker["class_names_file"] == "classes.txt"


def test_fgvc_aircraft_family_not_in_families_txt(tmp_path):
    data = fake_aircraft(tmp_path / "raw", TREE)
    (data / "families.txt").write_text("Boeing 737\n")
    with pytest.raises(BioclfError, match=r"images_family_train.txt: family 'A320' is not in families.txt"):
        fetch.lay_out("fgvc_aircraft", tmp_path / "raw", tmp_path / "air")


def test_without_network_one_clear_line(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, download=False, **kwargs):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "Flowers102", Offline)
    with pytest.raises(BioclfError) as error:
        fetch.fetch_data("flowers102", tmp_path / "f", download_dir=tmp_path / "dl", echo=lambda line: None)
    message = str(error.value)
    assert message.startswith("could not download flowers102 (URLError:")
    assert "needs network access" in message and str(tmp_path / "dl") in message and "\n" not in message

    assert main(["fetch-data", "flowers102", str(tmp_path / "f"), "--download-dir", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bioclf-exp: error: could not download flowers102") and err.count("\n") == 1
    assert not (tmp_path / "f").exists()
    assert main(["fetch-data", "imagenet", str(tmp_path / "f")]) == 2
    assert "unknown dataset 'imagenet'; valid: flowers102, oxford_pets, fgvc_aircraft" in capsys.readouterr().err


def test_cli_prints_how_to_train_on_it(tmp_path, capsys):
    raw = fake_flowers(tmp_path / "raw")
    assert main(["fetch-data", "flowers102", str(tmp_path / "fl"), "--download-dir", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "flowers102 in" in out and "3 classes; train 4, val 3, test 5 (12 hard links, 0 copies)" in out
    assert f"--set data.root={tmp_path / 'fl'} --set data.num_classes=3" in out
