"""A line's own images through the CLI: 16-bit, not square, not the model's size — eval, predict, operating-point
on a tiny real Keras model (any size, run whole) and its ONNX export for 32² (run in tiles)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.artifacts import write_manifest
from edgeseg.cli.app import app
cli = CliRunner()
SHAPE = (72, 104)  # neither square nor a multiple of the 32² export
RULE = {"grow": None, "min_area": 4}


def write_line_set(root: Path, count: int, seed: int, defects: bool = True, depth: int = 16) -> Path:
    """``count`` images of SHAPE: noise of std 7.2 around 112 gray levels (stored ×257 with the sub-level detail a
    16-bit camera has, or as 8-bit) with a bright 12×16 defect, and 0/255 labels."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        levels = rng.normal(112, 7.2, SHAPE)
        mask = np.zeros(SHAPE, np.uint8)
        if defects:
            y, x = rng.integers(4, SHAPE[0] - 16), rng.integers(4, SHAPE[1] - 20)
            levels[y:y + 12, x:x + 16] += 40
            mask[y:y + 12, x:x + 16] = 255
        img = (levels * 257).clip(0, 65535).astype(np.uint16) if depth == 16 else levels.clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        cv2.imwrite(str(root / "labels" / f"{i}.png"), mask)
    return root


def save_mean_detector(path: Path) -> Path:
    """A real Keras model that finds the defects above: 5×5 mean → sigmoid((mean − 132) / 2), any image size."""
    import keras

    inp = keras.Input((None, None, 1), name="image")
    x = keras.layers.AveragePooling2D(5, strides=1, padding="same")(inp)
    x = keras.layers.Rescaling(0.5, -66.0)(x)
    keras.Model(inp, keras.layers.Activation("sigmoid")(x)).save(path)
    return path


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    from edgeseg.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("line")
    keras_path = save_mean_detector(d / "model.keras")
    write_manifest(keras_path, "model", {}, threshold=0.5, mask_rule=RULE)
    export_onnx(keras_path, d / "model.onnx", image_size=32, parity_count=1)
    write_line_set(d / "defects", 3, seed=1)
    write_line_set(d / "good", 3, seed=2, defects=False)
    return d


def _eval(line: Path, model: str, data: Path, *extra: str) -> dict:
    out = line / f"eval-{Path(model).name}-{data.name}.json"
    r = cli.invoke(app, ["eval", "--model", str(model), "--data", str(data), "-q", "--json", str(out), "--force",
                         *extra])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["results"][0]


def test_eval_scores_16_bit_images_of_any_size_whole_and_in_tiles(line):
    whole = _eval(line, line / "model.keras", line / "defects")
    tiled = _eval(line, line / "model.onnx", line / "defects")
    assert tiled["runner_config"]["tiling"] == {"tile": [32, 32], "overlap": 16, "size_multiple": 1}
    for label in ("0.5", "best"):
        a, b = whole["thresholds"][label], tiled["thresholds"][label]
        assert a["defects_found"] == b["defects_found"] and abs(a["dice"] - b["dice"]) < 1e-3
    assert whole["thresholds"]["best"]["dice"] > 0.5  # the defects are found, not an empty agreement


def test_the_same_levels_in_8_or_16_bits_score_the_same(line, tmp_path):
    eight = write_line_set(tmp_path / "eight", 3, seed=1, depth=8)
    sixteen = tmp_path / "sixteen"
    (sixteen / "images").mkdir(parents=True)
    (sixteen / "labels").mkdir()
    for f in (eight / "images").iterdir():
        cv2.imwrite(str(sixteen / "images" / f.name), cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 257)
        (sixteen / "labels" / f.name).write_bytes((eight / "labels" / f.name).read_bytes())
    a = _eval(line, line / "model.onnx", eight)["thresholds"]
    b = _eval(line, line / "model.onnx", sixteen)["thresholds"]
    assert a == b


def test_predict_writes_masks_and_pictures_of_the_images_own_size(line, tmp_path):
    out = tmp_path / "pred"
    r = cli.invoke(app, ["predict", "--model", str(line / "model.onnx"), "--input", str(line / "defects"),
                         "--out", str(out), "--triptych", "-q"])
    assert r.exit_code == 0, r.output
    mask = cv2.imread(str(out / "0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == SHAPE and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert (out / "triptych" / "0.png").is_file()
    label = cv2.imread(str(line / "defects" / "labels" / "0.png"), cv2.IMREAD_UNCHANGED) > 0
    assert (mask > 0)[label].mean() > 0.5


def test_operating_point_fits_on_a_lines_16_bit_images(line, tmp_path):
    r = cli.invoke(app, ["operating-point", "--model", str(line / "model.onnx"), "--data", str(line / "defects"),
                         "--good", str(line / "good" / "images"), "--dry-run", "-q", "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    point = json.loads((tmp_path / "p.json").read_text())
    assert point["fitting_set"]["defect_images"] == 3 and point["chosen"]["defect_recall"] > 0


def test_runners_treat_16_bit_pixels_as_levels_divided_by_257(line):
    from edgeseg.runners import load_runner

    levels = np.random.default_rng(3).integers(80, 150, (2, 32, 32)).astype(np.uint16)
    with load_runner(line / "model.onnx") as runner:
        np.testing.assert_array_equal(runner.infer(levels * 257), runner.infer(levels.astype(np.uint8)))
        np.testing.assert_array_equal(runner.infer((levels * 257).astype(np.float32) / np.float32(257)),
                                      runner.infer(levels * 257))
