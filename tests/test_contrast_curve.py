"""``edgeseg contrast-curve``: detectors fitted on held-out images to one budget, recall measured per contrast on
test images, natural structure counted as false alarms."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from typer.testing import CliRunner

from edgeseg.cli.app import app
from tiny_models import tiny_onnx

pytest.importorskip("onnxruntime")


def _surface(folder, pit: bool, seed: int):
    """A flat noisy surface (mean 112, σ 5); with ``pit``, a bright natural spot no defect was placed on."""
    folder.mkdir(parents=True)
    image = np.random.default_rng(seed).normal(112, 5, (96, 96))
    if pit:
        image[30:66, 30:66] += 40
    cv2.imwrite(str(folder / "s.png"), np.clip(image, 0, 255).astype(np.uint8))
    return folder


def test_curve_fits_on_val_and_counts_natural_structure_as_false_alarms(tmp_path):
    test, val = _surface(tmp_path / "test", pit=True, seed=1), _surface(tmp_path / "val", pit=False, seed=2)
    mean_model = tiny_onnx(tmp_path / "mean.onnx", size=64)  # a 5x5 local mean: fires on anything bright
    r = CliRunner().invoke(app, [
        "contrast-curve", "--model", str(mean_model), "--model", "classical", "--test", str(test), "--val", str(val),
        "--contrast", "4,30", "--count", "12", "--fit-count", "12", "--crop", "64", "--defect-size", "8:20",
        "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png"), "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["contrast_unit"] == "gray levels" and report["val"]["images"][0]["name"] == "s.png"
    by_model = {m["label"]: m for m in report["models"]}
    mean, classical = by_model[f"{tmp_path.name}/mean.onnx"], by_model["classical"]
    # Fitted on the val surface (no pit), the mean model calls the test surface's pit a defect in nearly every crop,
    # and no threshold keeps it within the budget there; the classical detector gets a matched curve.
    assert mean["test_good"]["fp_blobs_per_image"] > 0.5 and mean["matched"] is None
    assert classical["matched"]["fp_blobs_per_image"] <= 0.01
    assert [c["contrast"] for c in classical["matched"]["curve"]] == [4.0, 30.0]
    assert [c["contrast"] for c in classical["curve"]] == [4.0, 30.0]
    assert classical["curve"][1]["defect_recall"] > classical["curve"][0]["defect_recall"]
    assert classical["options"]["t_high"] >= 6
    assert (tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--contrast", "1", "--contrast-sigma", "1"], "give one of --contrast"),
    ([], "give one of --contrast"),
    (["--contrast", "a,b"], "comma-separated list"),
    (["--contrast", "2,-3"], "contrasts above 0"),
    (["--contrast-sigma", "nan"], "contrasts above 0"),
    (["--contrast", "2", "--crop", "200"], "smaller than the 200x200 crop"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    test, val = _surface(tmp_path / "test", pit=False, seed=1), _surface(tmp_path / "val", pit=False, seed=2)
    r = CliRunner().invoke(app, ["contrast-curve", "--model", "classical", "--test", str(test), "--val", str(val),
                                 *args])
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output


def test_test_and_val_must_differ(tmp_path):
    test = _surface(tmp_path / "test", pit=False, seed=1)
    r = CliRunner().invoke(app, ["contrast-curve", "--model", "classical", "--test", str(test), "--val", str(test),
                                 "--contrast", "3"])
    assert r.exit_code == 1 and "same folder" in r.output
