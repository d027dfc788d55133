"""``edgeseg export / quantize / build-engine / compare`` through the real CLI (CliRunner), on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgeseg.artifacts import write_manifest
from edgeseg.cli.app import app
from tiny_models import NOISE_UNITS, save_tiny_model

SIZE = 32
RULE = {"grow": 0.2, "min_area": 8}
cli = CliRunner()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny Keras model exported, quantized and a small labelled set, all through the CLI."""
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import preset
    from edgeseg.export.onnx import sized

    d = tmp_path_factory.mktemp("deploy")
    save_tiny_model(d / "model.keras", convs=((16, 1),), rescale=NOISE_UNITS)  # head depth 144: quantized
    write_manifest(d / "model.keras", "model", {}, threshold=0.6, mask_rule=RULE)
    write_dataset(d / "data", sized(preset("test"), SIZE), 6, seed=3)
    for args in (["export", "--model", str(d / "model.keras"), "--image-size", str(SIZE), "-q"],
                 ["quantize", "--model", str(d / "model.onnx"), "--fp16", "-q"],
                 ["quantize", "--model", str(d / "model.onnx"), "--int8", "--calib-count", "8",
                  "--calib-dir", str(d / "calib"), "-q"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
    return d


def test_export_and_quantize_write_every_precision(work):
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert (work / name).is_file() and (work / f"{name}.json").is_file()
        meta = json.loads((work / f"{name}.json").read_text())
        assert meta["threshold"] == 0.6 and meta["mask_rule"] == RULE  # the operating point travels
    assert len(list((work / "calib").iterdir())) == 1


def test_precision_is_one_option_with_shorthands(work, tmp_path):
    out = tmp_path / "p.fp16.onnx"
    ok = cli.invoke(app, ["quantize", "--model", str(work / "model.onnx"), "--precision", "fp16", "--out", str(out), "-q"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "p.fp16.onnx.json").read_text())["precision"] == "fp16"
    for args, message in ((["--precision", "int8", "--fp16"], "choose one precision"), ([], "choose a precision"),
                          (["--precision", "int4"], "int4")):
        bad = cli.invoke(app, ["quantize", "--model", str(work / "model.onnx"), *args, "--out", str(tmp_path / "x.onnx")])
        assert bad.exit_code != 0 and message in bad.output, (args, bad.output)
        assert not (tmp_path / "x.onnx").exists()
    both = cli.invoke(app, ["build-engine", "--model", str(work / "model.onnx"), "--fp16", "--int8"])
    assert both.exit_code == 1 and "choose one precision" in both.output


def test_compare_table_and_json(work, tmp_path):
    out = tmp_path / "compare.json"
    models = [str(work / n) for n in ("model.keras", "model.onnx", "model.fp16.onnx", "model.int8.onnx")]
    result = cli.invoke(app, ["compare", "--data", str(work / "data"), "--json", str(out), "-q", *models])
    assert result.exit_code == 0, result.output
    assert "model.int8.onnx" in result.output and "F1-best thr" in result.output
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "fp32", "fp16", "int8"]
    assert rows[0]["reference"] and rows[0]["mask_iou_vs_ref"] == 1.0
    assert rows[1]["max_abs_dprob"] <= 1e-4  # ONNX FP32 vs Keras
    assert all(r["threshold"] == 0.6 and r["threshold_source"] == "manifest" and r["mask_rule"] == RULE for r in rows)
    for key in ("dice", "defect_recall", "fp_blobs_per_image", "escape_rate", "mask_iou_vs_ref", "f1_best_threshold"):
        assert key in rows[3]


def test_build_engine_without_tensorrt_says_how_to_install(work):
    from edgeseg.deps import available

    if available("tensorrt"):
        pytest.skip("TensorRT is installed here")
    result = cli.invoke(app, ["build-engine", "--int8", "--model", str(work / "model.onnx"), "--out", str(work / "eng")])
    assert result.exit_code == 1
    assert "tensorrt is needed here" in result.output and "jetson-setup" in result.output
    assert "Traceback" not in result.output
    assert not (work / "eng").exists()


def test_build_engine_bad_batch_is_refused_before_tensorrt(work):
    result = cli.invoke(app, ["build-engine", "--model", str(work / "model.onnx"), "--batch", "8,4,32"])
    assert result.exit_code == 1 and "MIN <= OPT <= MAX" in result.output


def test_quantize_refuses_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("hello")
    result = cli.invoke(app, ["quantize", "--model", str(bad), "--fp16", "-q"])
    assert result.exit_code == 1 and "is not an ONNX model" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_empty_calibration_request_fails_cleanly(work, tmp_path):
    out = tmp_path / "m.int8.onnx"
    result = cli.invoke(app, ["quantize", "--model", str(work / "model.onnx"), "--int8", "--calib-count", "0",
                              "--out", str(out), "--calib-dir", str(tmp_path / "calib"), "-q"])
    assert result.exit_code == 1 and "--calib-count must be between 1 and 512" in result.output
    assert not out.exists() and not (tmp_path / "calib").exists()


def test_quantize_unknown_choice_lists_the_allowed_values(work):
    result = cli.invoke(app, ["quantize", "--model", str(work / "model.onnx"), "--int8", "--calib-method", "kl", "-q"])
    assert result.exit_code == 1 and "max, entropy, percentile" in result.output


def test_compare_runs_a_line_sized_set_through_a_fixed_size_model_in_tiles(work, tmp_path):
    """A model exported for 32² and the any-size Keras model, on 48×80 16-bit images: the ONNX file runs them in
    tiles (the report says so) and agrees with Keras on the whole image."""
    import cv2
    import numpy as np

    root = tmp_path / "line"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(4)
    for i in range(2):
        img = (rng.normal(112, 7.2, (48, 80)) * 257).clip(0, 65535).astype(np.uint16)
        img[10:20, 30:44] += 4 * 257
        mask = np.zeros((48, 80), np.uint8)
        mask[10:20, 30:44] = 255
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        cv2.imwrite(str(root / "labels" / f"{i}.png"), mask)
    result = cli.invoke(app, ["compare", "--data", str(root), "-q", "--json", str(tmp_path / "c.json"),
                              str(work / "model.keras"), str(work / "model.onnx")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert rows[1]["max_abs_dprob"] <= 1e-4 and rows[1]["mask_iou_vs_ref"] == 1.0
    bad = cli.invoke(app, ["compare", "--data", str(root), "-q", "--tile", "64", str(work / "model.onnx")])
    assert bad.exit_code == 1 and "takes 32x32 images only" in bad.output


def test_export_for_a_line_shape_and_quantize_on_its_own_images(work, tmp_path):
    """export --shape HxW, then INT8 calibrated on crops of a folder of 16-bit images (labels ignored): the
    manifests name the shape and the folder, and the same request reuses the cached set."""
    import cv2
    import numpy as np

    out = tmp_path / "line.onnx"
    r = cli.invoke(app, ["export", "--model", str(work / "model.keras"), "--shape", "24x40", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "line.onnx.json").read_text())
    assert meta["config"]["shape"] == [24, 40] and meta["input_scaling"]["uint16"].startswith("1/257")
    line = tmp_path / "passed"
    line.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(line / f"{i}.tif"), (rng.normal(112, 7.2, (50, 64)) * 257).astype(np.uint16))
    args = ["quantize", "--model", str(out), "--int8", "--calib-data", str(line), "--calib-count", "5",
            "--calib-dir", str(tmp_path / "calib"), "-q"]
    r = cli.invoke(app, args)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "line.int8.onnx.json").read_text())
    assert meta["calibration"]["source"] == str(line) and meta["config"]["calib_data"] == str(line)
    (cached,) = (tmp_path / "calib").iterdir()
    images = np.load(cached / "images.npy")
    assert images.shape == (5, 24, 40) and images.dtype == np.uint16
    assert json.loads((cached / "manifest.json").read_text())["source"] == str(line)
    assert cli.invoke(app, args + ["--force"]).exit_code == 0
    assert [p.name for p in (tmp_path / "calib").iterdir()] == [cached.name]  # the same folder: reused
    (line / "3.tif").write_bytes((line / "0.tif").read_bytes())  # the folder changed: a new set
    assert cli.invoke(app, args + ["--force"]).exit_code == 0
    assert len(list((tmp_path / "calib").iterdir())) == 2


def test_line_calibration_crops_are_seeded_and_whole_images_taken_whole(tmp_path):
    import cv2
    import numpy as np

    from edgeseg.export.calibration import line_calibration_set

    (tmp_path / "d").mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "d" / f"{i}.png"), rng.integers(0, 255, (20, 30), dtype=np.uint8))
    a = line_calibration_set(tmp_path / "d", (16, 16), count=6, seed=3, root=tmp_path / "c1")
    b = line_calibration_set(tmp_path / "d", (16, 16), count=6, seed=3, root=tmp_path / "c2")
    c = line_calibration_set(tmp_path / "d", (16, 16), count=6, seed=4, root=tmp_path / "c3")
    assert np.array_equal(a.images, b.images) and a.hash == b.hash and not np.array_equal(a.images, c.images)
    whole = line_calibration_set(tmp_path / "d", (20, 30), count=4, seed=3, root=tmp_path / "c4")
    originals = {cv2.imread(str(tmp_path / "d" / f"{i}.png"), cv2.IMREAD_UNCHANGED).tobytes() for i in range(2)}
    assert {img.tobytes() for img in whole.images} == originals  # each image once before any twice


def test_deploy_modules_import_no_heavy_package():
    code = ("import sys, edgeseg.cli.app, edgeseg.cli.deploy, edgeseg.trt.build, edgeseg.trt.manifest, "
            "edgeseg.export.precision, edgeseg.compare; "
            "heavy = [m for m in ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'tf2onnx', 'tensorrt', 'pycuda') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    help_ = cli.invoke(app, ["--help"])
    for command in ("export", "quantize", "build-engine", "compare"):
        assert command in help_.output


def test_compare_on_a_defect_free_set_reports_overkill_not_dice(work, tmp_path):
    from edgeseg.compare import compare
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import preset
    from edgeseg.export.onnx import sized

    write_dataset(tmp_path / "good", sized(preset("test"), SIZE).replace(good_fraction=1.0), 3, seed=2)
    report = compare([work / "model.onnx", work / "model.int8.onnx"], [tmp_path / "good"])
    for row in report["rows"]:
        assert row["dice"] is None and row["f1_best_threshold"] is None and row["delta_dice"] is None
        assert row["defect_recall"] is None and row["overkill_rate"] is not None
    assert 0.0 <= report["rows"][1]["mask_iou_vs_ref"] <= 1.0
