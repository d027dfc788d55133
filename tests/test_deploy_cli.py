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


def test_compare_refuses_data_of_another_image_size(work, tmp_path):
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import preset
    from edgeseg.export.onnx import sized

    write_dataset(tmp_path / "big", sized(preset("test"), 48), 2, seed=1)
    result = cli.invoke(app, ["compare", "--data", str(tmp_path / "big"), "-q", str(work / "model.onnx")])
    assert result.exit_code == 1
    assert "takes 32x32 images, got 48x48" in result.output


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
