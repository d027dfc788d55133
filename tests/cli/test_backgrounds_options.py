"""``edgeseg generate --backgrounds`` and ``edgeseg detectability --backgrounds`` through the real CLI, on small
defect-free images of known noise written to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset

cli = CliRunner()
SIGMA = 7.0
SMALL = ["--defect-size", "4:12", "-q"]


def _backgrounds(folder: Path, n: int = 3, size: tuple[int, int] = (96, 96), bits: int = 8, seed: int = 0) -> Path:
    """``n`` images of Gaussian noise, std 7 around 128 (8-bit levels), stored at ``bits``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        x = rng.normal(128, SIGMA, size)
        img = (np.clip(np.rint(x * 257), 0, 65535).astype(np.uint16) if bits == 16
               else np.clip(np.rint(x), 0, 255).astype(np.uint8))
        assert cv2.imwrite(str(folder / f"part{i}.png"), img)
    return folder


def _generate(bg: Path, out: Path, *extra: str):
    return cli.invoke(app, ["generate", "--backgrounds", str(bg), "--out", str(out), "--count", "6", *SMALL, *extra])


def test_generate_on_backgrounds_writes_a_dataset_with_sources_and_contrasts(tmp_path):
    bg = _backgrounds(tmp_path / "bg")
    out = tmp_path / "d"
    r = _generate(bg, out, "--contrast-sigma", "1:2", "--crop", "64", "--defects", "1:2", "--shape", "mixed")
    assert r.exit_code == 0, r.output
    assert "wrote 6 64x64 images" in r.stdout and "local noise sigma" in r.stdout
    ds = load_dataset(out)
    assert len(ds) == 6 and ds.images.shape[1:] == (64, 64) and ds.images[0].dtype == np.uint8
    m = json.loads((out / "manifest.json").read_text())
    cfg = m["config"]
    assert m["kind"] == "dataset" and cfg["contrast_unit"] == "local noise sigma" and cfg["seed"] == 0
    assert cfg["crop"] == 64 and cfg["generator"]["defect_size"] == [4, 12] and "noise" not in cfg["generator"]
    assert [i["name"] for i in cfg["backgrounds"]["images"]] == ["part0.png", "part1.png", "part2.png"]
    for record, image, mask in zip(m["images"], ds.images, ds.masks):
        src = cv2.imread(str(bg / record["source"]["background"]), cv2.IMREAD_UNCHANGED)
        y, x = record["source"]["y"], record["source"]["x"]
        # The image is its source crop but where the label marks a defect.
        assert np.array_equal(image[mask == 0], src[y:y + 64, x:x + 64][mask == 0])
        assert 1 <= len(record["defects"]) <= 2
        for d in record["defects"]:
            assert 1 <= d["contrast_sigma"] <= 2 and d["noise_sigma"] == pytest.approx(SIGMA, rel=0.15)
            assert d["contrast"] == pytest.approx(d["contrast_sigma"] * d["noise_sigma"], abs=1e-3)
    # eval breaks its recall down by these defects' contrast in sigma (1..2: half-sigma bins 1 and 1.5).
    r = cli.invoke(app, ["eval", "--model", "classical", "--data", str(out), "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    report = next(iter(json.loads(r.stdout)["results"][0]["thresholds"].values()))
    assert report["contrast_unit"] == "local noise sigma"
    assert report["recall_by_contrast"] and set(report["recall_by_contrast"]) <= {"1", "1.5", "2"}, report

def test_same_seed_same_files_another_seed_others(tmp_path):
    bg = _backgrounds(tmp_path / "bg")
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert _generate(bg, tmp_path / name, "--contrast", "3:5", "--seed", seed).exit_code == 0
    files = lambda d: [(d / sub / f"{i}.png").read_bytes() for sub in ("images", "labels") for i in range(6)]  # noqa: E731
    assert files(tmp_path / "a") == files(tmp_path / "b") != files(tmp_path / "c")


def test_16_bit_backgrounds_give_a_16_bit_dataset_with_8_bit_scale_contrast(tmp_path):
    bg = _backgrounds(tmp_path / "bg", size=(80, 72), bits=16)
    out = tmp_path / "d"
    r = _generate(bg, out, "--contrast", "3:3", "--defects", "1:1")
    assert r.exit_code == 0, r.output
    assert "wrote 6 72x80 images" in r.stdout  # whole images: they have one size
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["backgrounds"]["bits"] == 16 and m["config"]["crop"] is None
    for i, record in enumerate(m["images"]):
        image = cv2.imread(str(out / "images" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(out / "labels" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        src = cv2.imread(str(bg / record["source"]["background"]), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16 and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 255}
        assert (record["source"]["y"], record["source"]["x"]) == (0, 0) and record["defects"][0]["contrast"] == 3
        shift = image.astype(np.int64) - src
        assert np.all(shift[label > 0] == 3 * 257) and not shift[label == 0].any()


@pytest.mark.parametrize("args, words", [
    (["--contrast", "1:2", "--contrast-sigma", "1:2"], "--contrast (gray levels) and --contrast-sigma"),
    (["--noise", "gaussian"], "--noise does not apply with --backgrounds"),
    (["--illumination", "4"], "--illumination does not apply with --backgrounds"),
    (["--image-size", "64"], "--crop N sets the image size"),
    (["--crop", "128"], "is 96x96, smaller than the 128x128 crop"),
    (["--crop", "32", "--defect-size", "8:40"], "defect_size must be an integer from 1 to 31 (for 32px images), got 40"),
    (["--contrast-sigma", "1:1000"], "--contrast-sigma must be LO:HI with both ends in [-100, 100]"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, args, words):
    bg = _backgrounds(tmp_path / "bg")
    out = tmp_path / "d"
    r = cli.invoke(app, ["generate", "--backgrounds", str(bg), "--out", str(out), "--count", "2", "-q", *args])
    assert r.exit_code == 1, r.output
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_backgrounds_of_two_sizes_need_a_crop_and_line_options_need_backgrounds(tmp_path):
    bg = _backgrounds(tmp_path / "bg")
    _backgrounds(tmp_path / "bg", n=1, size=(100, 120), seed=1)  # part0.png replaced by a larger image
    r = _generate(bg, tmp_path / "d")
    assert r.exit_code == 1 and "pass --crop N" in r.stderr and not (tmp_path / "d").exists()
    assert _generate(bg, tmp_path / "d", "--crop", "64").exit_code == 0
    r = cli.invoke(app, ["generate", "--out", str(tmp_path / "e"), "--count", "2", "--contrast-sigma", "1:2", "-q"])
    assert r.exit_code == 1 and "--contrast-sigma goes with --backgrounds" in r.stderr


# -- detectability --------------------------------------------------------------------------------------
def _detect(bg: Path, *extra: str):
    return cli.invoke(app, ["detectability", "--backgrounds", str(bg), "--count", "40", *SMALL, *extra])


def test_detectability_on_backgrounds_range_and_per_contrast(tmp_path):
    bg = _backgrounds(tmp_path / "bg", n=2, size=(128, 128))
    r = _detect(bg, "--contrast-sigma", "1:2", "--json", "-")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["contrast_unit"] == "local noise sigma" and report["line"]["crop"] == 128
    assert report["defects"]["n_images"] == 40 == report["good"]["n_images"]
    assert report["good"]["boxes"][0] == [4, 4] and report["good"]["boxes"][-1] == [12, 12]
    # Per contrast: the same crops and places at every contrast, so recall grows with it. On noise of std 7,
    # 1 gray level over 4..12 px sides is z ~ 0.6..1.7, far below what noise reaches; 42 (6 sigma) far above.
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    r = cli.invoke(app, ["detectability", "--backgrounds", str(bg), "--count", "100", *SMALL, "--contrast",
                         "1,7,42", "--json", str(out), "--plot", str(plot)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "contrast (gray levels)" in r.output and "recall at 1.0%" in r.output
    report = json.loads(out.read_text())
    rows = report["contrasts"]
    assert [row["contrast"] for row in rows] == [1, 7, 42] and report["contrast_unit"] == "gray levels"
    assert len({row["n_defects"] for row in rows}) == 1
    recall = [row["budgets"][-1]["defect_share"] for row in rows]
    assert recall[0] < 0.2 and recall[2] == 1.0 and recall == sorted(recall), recall
    assert rows[0]["budgets"][0]["z"] is None  # 1 in 1000 is not resolved by 100 crops
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_detectability_same_seed_same_report(tmp_path):
    bg = _backgrounds(tmp_path / "bg", n=2, size=(128, 128))
    runs = [json.loads(_detect(bg, "--contrast", "2,4", "--crop", "64", "--seed", s, "--json", "-").stdout)
            for s in ("3", "3", "4")]
    assert runs[0]["contrasts"] == runs[1]["contrasts"] != runs[2]["contrasts"]
    assert runs[0]["scan_max"] == runs[1]["scan_max"]


@pytest.mark.parametrize("args, words", [
    (["--contrast", "1:2", "--contrast-sigma", "1:2"], "--backgrounds needs one contrast"),
    ([], "--backgrounds needs one contrast"),
    (["--contrast", "2:3", "--data", "{bg}"], "--backgrounds replaces --data and --good"),
    (["--contrast", "2:3", "--plot", "{tmp}/p.png"], "--plot draws recall vs contrast: give a list"),
    (["--contrast", "2,3", "--plot", "{tmp}/p.png", "--count", "50"], "--plot needs --count of at least 100"),
    (["--contrast", "1,-2"], "--contrast must be in (0, 255] gray levels"),
    (["--contrast", "0:2"], "the scan looks for bright defects"),
    (["--contrast", "2", "--crop", "64", "--defect-size", "8:80"], "defect_size must be an integer from 1 to 63"),
])
def test_detectability_bad_options_are_one_line_errors(tmp_path, args, words):
    bg = _backgrounds(tmp_path / "bg", n=1)
    args = [a.format(bg=bg, tmp=tmp_path) for a in args]
    r = cli.invoke(app, ["detectability", "--backgrounds", str(bg), "-q", *args, "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 1, r.output
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "p.png").exists()


def test_detectability_line_options_need_backgrounds(tmp_path):
    r = cli.invoke(app, ["detectability", "-q", "--contrast", "2:3"])
    assert r.exit_code == 1 and "give --data and --good" in r.stderr
    bg = _backgrounds(tmp_path / "bg", n=1)
    r = cli.invoke(app, ["detectability", "-q", "--data", str(bg), "--good", str(bg), "--crop", "64"])
    assert r.exit_code == 1 and "--crop goes with --backgrounds" in r.stderr
