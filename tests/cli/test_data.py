"""``edgeseg generate`` through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset

runner = CliRunner()
SMALL = ["--image-size", "32", "--defect-size", "4:10", "--quiet"]


def test_generate_writes_a_dataset_with_the_knobs_in_its_manifest(tmp_path):
    out = tmp_path / "d"
    r = runner.invoke(app, ["generate", "--preset", "train", "--count", "6", "--seed", "7", "--contrast", "3:4",
                            "--defects", "1:1", "--shape", "ellipse", "--noise", "gaussian", "--good-fraction",
                            "0", "--illumination", "0", "--level-shift", "0:0", "--noise-scale", "1:1.5",
                            "--out", str(out), *SMALL])
    assert r.exit_code == 0, r.output
    assert "wrote 6 images" in r.stdout
    ds = load_dataset(out)
    assert len(ds) == 6 and ds.images.shape[1:] == (32, 32)
    gen = json.loads((out / "manifest.json").read_text())["config"]["generator"]
    assert gen["shape"] == "ellipse" and gen["noise"] == "gaussian" and gen["contrast"] == [3, 4]
    assert gen["contrast_continuous"] is True  # kept from the train preset
    assert gen["noise_scale"] == [1.0, 1.5] and gen["defect_size"] == [4, 10]
    assert all(len(d) == 1 and d[0]["shape"] == "ellipse" for d in ds.defects)


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        assert runner.invoke(app, ["generate", "--count", "3", "--seed", "1", "--out", str(tmp_path / name),
                                   *SMALL]).exit_code == 0
    for i in range(3):
        assert (tmp_path / "a" / "images" / f"{i}.png").read_bytes() == (tmp_path / "b" / "images" / f"{i}.png").read_bytes()


@pytest.mark.parametrize("args, words", [
    (["--preset", "nope"], "unknown preset 'nope': choose one of seed, test, train"),
    (["--contrast", "4:3"], "--contrast must be LO:HI"),
    (["--defects", "x"], "--defects must be LO:HI"),
    (["--image-size", "32"], "defect_size must be an integer from 1 to 31 (for 32px images), got 63"),
    (["--good-fraction", "2"], "good_fraction must be in [0, 1]"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, words):
    out = tmp_path / "d"
    r = runner.invoke(app, ["generate", "--count", "2", "--out", str(out), "-q", *args])
    assert r.exit_code == 1
    assert words in r.stderr and r.stderr.count("\n") == 1
    assert not out.exists()


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    r = runner.invoke(app, ["generate", "--count", "2", "--out", str(tmp_path), *SMALL])
    assert r.exit_code == 1 and "refusing to overwrite" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_an_out_path_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    r = runner.invoke(app, ["generate", "--count", "2", "--out", str(tmp_path / "notes.txt" / "d"), *SMALL])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"cannot write {tmp_path / 'notes.txt' / 'd'}: {tmp_path / 'notes.txt'} is a file, not a folder" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_help_shows_examples():
    r = runner.invoke(app, ["generate", "--help"])
    assert r.exit_code == 0
    assert "--preset seed --count 200" in r.stdout and "--good-fraction" in r.stdout


def test_sixteen_bit_files_hold_the_same_images_and_score_the_same(tmp_path):
    import json

    from edgeseg.data.dataset import load_dataset

    for bits in (8, 16):
        r = CliRunner().invoke(app, ["generate", "--preset", "test", "--image-size", "96", "--defect-size", "8:24",
                                     "--count", "4", "--bits", str(bits), "--out", str(tmp_path / f"b{bits}")])
        assert r.exit_code == 0, r.output
    eight, sixteen = load_dataset(tmp_path / "b8"), load_dataset(tmp_path / "b16")
    assert sixteen.images.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(sixteen.images), np.asarray(eight.images).astype(np.uint16) * 257)
    reports = []
    for bits in (8, 16):
        out = tmp_path / f"e{bits}.json"
        r = CliRunner().invoke(app, ["eval", "--model", "classical", "--data", str(tmp_path / f"b{bits}"), "--json", str(out)])
        assert r.exit_code == 0, r.output
        reports.append(json.loads(out.read_text())["results"][0]["thresholds"])
    assert reports[0] == reports[1]
    r = CliRunner().invoke(app, ["generate", "--bits", "12", "--out", str(tmp_path / "b12")])
    assert r.exit_code == 1 and "--bits must be 8 or 16" in r.output
