"""Datasets on disk: round trip through write_dataset/load_dataset, the seed's layout, and bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.data.dataset import (
    ImageStack,
    ensure_replaceable,
    load_dataset,
    load_good,
    load_images,
    natural_key,
    write_dataset,
)
from edgeseg.data.synth import PRESETS, SynthConfig, generate
from edgeseg.errors import BadInput

SMALL = PRESETS["test"].replace(image_size=32, defect_size=(4, 10))


@pytest.fixture
def small_set(tmp_path) -> Path:
    return write_dataset(tmp_path / "set", SMALL, count=12, seed=3)


def test_round_trip_reproduces_the_generator(small_set):
    ds = load_dataset(small_set)
    rng = np.random.default_rng(3)
    expected = [generate(rng, SMALL) for _ in range(12)]
    assert ds.names == [f"{i}.png" for i in range(12)]  # natural order: 2 before 10
    assert ds.images.shape == (12, 32, 32) and ds.images.dtype == np.uint8
    assert set(np.unique(ds.masks)) <= {0, 1}
    for i, s in enumerate(expected):
        assert np.array_equal(ds.images[i], s.image) and np.array_equal(ds.masks[i], s.mask)
        assert ds.defects[i] == [d.to_dict() for d in s.defects]
    assert SynthConfig.from_dict(ds.config) == SMALL
    label = cv2.imread(str(small_set / "labels" / "0.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(label)) <= {0, 255}


def test_manifest_records_how_the_set_was_made(small_set):
    import json

    m = json.loads((small_set / "manifest.json").read_text())
    assert m["kind"] == "dataset"
    assert m["config"]["seed"] == 3 and m["config"]["count"] == 12 and m["config"]["generator_version"] >= 1
    assert {"name", "defects", "info"} <= set(m["images"][0])
    assert {"noise", "noise_std", "level", "illumination"} <= set(m["images"][0]["info"])


def test_seed_layout_without_manifest_and_01_labels(tmp_path):
    root = tmp_path / "seedlike"
    (root / "label").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (10, 2, 1):
        s = generate(rng, SMALL)
        cv2.imwrite(str(root / f"{i}.png"), s.image)
        cv2.imwrite(str(root / "label" / f"{i}.png"), s.mask)  # 0/1 labels are accepted too
    ds = load_dataset(root)
    assert ds.names == ["1.png", "2.png", "10.png"]
    assert ds.defects is None and ds.config is None
    assert np.asarray(ds.masks).max() == 1
    images, names = load_images(root, limit=2)
    assert names == ["1.png", "2.png"] and images.shape == (2, 32, 32)


def test_a_set_is_checked_whole_then_read_as_it_is_used(small_set):
    """load_dataset keeps no pixels: its stacks read from disk on indexing, and chunks() walks the set in
    in-memory parts whose manifest defects follow them."""
    ds = load_dataset(small_set)
    whole = np.asarray(ds.images)
    assert isinstance(ds.images, ImageStack) and isinstance(ds.masks, ImageStack)
    assert np.array_equal(ds.images[-1], whole[11]) and np.array_equal(ds.images[3:5], whole[3:5])
    assert np.array_equal(ds.images[[7, 2]], whole[[7, 2]])
    assert np.array_equal(np.stack(list(ds.images)), whole)
    with pytest.raises(IndexError):
        ds.images[12]
    parts = list(ds.chunks(5))
    assert [len(p) for p in parts] == [5, 5, 2] and isinstance(parts[0].images, np.ndarray)
    assert np.array_equal(np.concatenate([p.masks for p in parts]), np.asarray(ds.masks))
    assert [d for p in parts for d in p.defects] == ds.defects and parts[2].names == ["10.png", "11.png"]
    assert ds.masks.any() == bool(np.asarray(ds.masks).any())
    cv2.imwrite(str(small_set / "images" / "4.png"), np.zeros((20, 32), np.uint8))  # changed after loading
    with pytest.raises(BadInput, match=r"4\.png is 32x20 but the set's images are 32x32"):
        list(ds.chunks(5))


def test_unlabelled_good_images_read_lazily_with_empty_masks(small_set, tmp_path):
    folder = tmp_path / "passed"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes((small_set / "images" / f"{i}.png").read_bytes())
    good = load_good(folder)
    assert isinstance(good.images, ImageStack) and good.masks.shape == (3, 32, 32) and not good.masks.any()
    assert np.array_equal(np.asarray(good.images), load_images(folder)[0])


def test_gray_stored_as_colour_is_converted(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    cv2.imwrite(str(root / "a.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    images, _ = load_images(root)
    assert np.array_equal(images[0], img)


def _break(root: Path, how: str) -> str:
    """Damage a written set; returns the file name the error must mention."""
    img, lab = root / "images" / "3.png", root / "labels" / "3.png"
    if how == "corrupt":
        img.write_bytes(b"this is not a png at all")
    elif how == "truncated":
        data = img.read_bytes()
        img.write_bytes(data[: len(data) // 2])
    elif how == "size":
        cv2.imwrite(str(lab), np.zeros((20, 32), np.uint8))
        return "3.png"
    elif how == "nonbinary":
        cv2.imwrite(str(lab), np.full((32, 32), 7, np.uint8))
    elif how == "missing":
        lab.unlink()
    elif how == "sizes":
        cv2.imwrite(str(img), np.zeros((32, 40), np.uint8))
        cv2.imwrite(str(lab), np.zeros((32, 40), np.uint8))
    elif how == "colour":
        colour = np.zeros((32, 32, 3), np.uint8)
        colour[..., 2] = 200
        cv2.imwrite(str(img), colour)
    return str(root / ("labels" if how in ("nonbinary",) else "images") / "3.png")


@pytest.mark.parametrize("how, words", [
    ("corrupt", "not a PNG"), ("truncated", "truncated"), ("size", "32x20"), ("nonbinary", "not a binary label"),
    ("missing", "no label for"), ("sizes", "same size"), ("colour", "colour image"),
])
def test_bad_files_name_the_file(small_set, how, words):
    named = _break(small_set, how)
    with pytest.raises(BadInput) as e:
        load_dataset(small_set)
    msg = str(e.value)
    assert named in msg and words in msg and "\n" not in msg


def test_empty_missing_and_unlabelled_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no images in"):
        load_images(tmp_path / "empty")
    with pytest.raises(BadInput, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(BadInput, match="not a folder"):
        load_dataset(tmp_path / "file.png")
    (tmp_path / "unlabelled").mkdir()
    cv2.imwrite(str(tmp_path / "unlabelled" / "0.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(BadInput, match="has no labels"):
        load_dataset(tmp_path / "unlabelled")


def test_write_is_atomic_and_never_replaces_foreign_folders(tmp_path, small_set):
    before = sorted(p.name for p in (small_set / "images").iterdir())

    def fail(done, total, message=""):
        if done == 5:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_dataset(small_set, SMALL, count=20, seed=9, progress=fail)
    assert sorted(p.name for p in (small_set / "images").iterdir()) == before  # the old set is intact
    assert not [p for p in small_set.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    write_dataset(small_set, SMALL, count=2, seed=9)  # an earlier dataset may be replaced
    assert len(load_dataset(small_set)) == 2

    home = tmp_path / "someones_files"
    home.mkdir()
    (home / "thesis.txt").write_text("precious")
    with pytest.raises(BadInput, match="refusing to overwrite"):
        write_dataset(home, SMALL, count=2, seed=0)
    assert (home / "thesis.txt").read_text() == "precious"
    ensure_replaceable(tmp_path / "new", "dataset")  # a new path is fine


def test_natural_key():
    assert sorted(["b10.png", "b2.png", "a.png"], key=natural_key) == ["a.png", "b2.png", "b10.png"]


# -- a line's own images: 16-bit, TIFF, any size; one bit depth per set; 8-bit labels ---------------------
def _line_set(root: Path, dtype=np.uint16, shape=(24, 40), count=3, suffix=".png") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(5)
    hi = 65535 if dtype == np.uint16 else 255
    for i in range(count):
        cv2.imwrite(str(root / "images" / f"{i}{suffix}"), rng.integers(0, hi + 1, shape, dtype=dtype))
        mask = np.zeros(shape, np.uint8)
        mask[2:6, 3:9] = 255
        cv2.imwrite(str(root / "labels" / f"{i}.png"), mask)
    return root


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_read_as_stored(tmp_path, suffix):
    root = _line_set(tmp_path / "line", suffix=suffix)
    ds = load_dataset(root)
    assert ds.images.shape == (3, 24, 40) and ds.images.dtype == np.uint16
    first = cv2.imread(str(root / "images" / f"0{suffix}"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(ds.images[0], first) and first.max() > 255
    assert next(iter(ds.chunks())).images.dtype == np.uint16
    images, _ = load_images(root)
    assert images.dtype == np.uint16 and np.array_equal(images, np.asarray(ds.images))
    assert set(np.unique(ds.masks)) == {0, 1}


def test_a_set_mixing_8_and_16_bit_names_both_files(tmp_path):
    root = _line_set(tmp_path / "line")
    cv2.imwrite(str(root / "images" / "2.png"), np.zeros((24, 40), np.uint8))
    for load in (load_dataset, load_images, load_good):
        with pytest.raises(BadInput) as e:
            load(root)
        msg = str(e.value)
        assert "2.png is 8-bit but 0.png is 16-bit; a set has one bit depth" in msg and "\n" not in msg


def test_a_16_bit_label_is_refused_in_one_line(tmp_path):
    root = _line_set(tmp_path / "line")
    cv2.imwrite(str(root / "labels" / "1.png"), np.zeros((24, 40), np.uint16))
    with pytest.raises(BadInput, match=r"labels/1.png is a 16-bit label; labels are 8-bit binary images"):
        load_dataset(root)


def test_a_label_of_another_size_than_its_16_bit_image(tmp_path):
    root = _line_set(tmp_path / "line")
    cv2.imwrite(str(root / "labels" / "1.png"), np.zeros((24, 24), np.uint8))
    with pytest.raises(BadInput, match="1.png is 24x24 but its image 1.png is 40x24"):
        load_dataset(root)


def test_16_bit_colour_is_refused_and_16_bit_gray_stored_as_colour_converted(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    img = np.random.default_rng(0).integers(0, 65535, (16, 16), dtype=np.uint16)
    cv2.imwrite(str(root / "a.png"), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    images, _ = load_images(root)
    assert images.dtype == np.uint16 and np.array_equal(images[0], img)
    colour = np.zeros((16, 16, 3), np.uint16)
    colour[..., 2] = 40000
    cv2.imwrite(str(root / "a.png"), colour)
    with pytest.raises(BadInput, match="colour image; edgeseg reads grayscale images \\(save it as 16-bit gray\\)"):
        load_images(root)


def test_chunks_hold_fewer_images_where_images_are_large():
    from edgeseg.data.dataset import CHUNK, chunk_for

    assert chunk_for((32, 32)) == chunk_for((256, 256)) == CHUNK
    assert chunk_for((1024, 1024)) == CHUNK // 16 and chunk_for((768, 1280)) == 4
    assert chunk_for((4096, 4096)) == 1
