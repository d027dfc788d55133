"""``edgeseg export-deepstream``: the nvinfer config read back as a GLib key file (configparser set up like
GKeyFile here; GLib's own KeyFile too where PyGObject is installed), its values checked against the model."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.cli.app import app
from serving_models import RULE, SIZE, one_line_error

cli = CliRunner()
SYSTEM_PYTHON = Path("/usr/bin/python3")


def keyfile(path: Path) -> configparser.ConfigParser:
    """A GKeyFile-like reader: '=' only, '#' comments on their own lines, no interpolation, keys case-kept."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",),
                                       inline_comment_prefixes=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def export(*args: str):
    return cli.invoke(app, ["export-deepstream", *args])


def test_config_keys_follow_the_model(models, tmp_path):
    from edgeseg.serving.deepstream import CONFIG_NAME

    out = tmp_path / "ds"
    result = export("--model", str(models["fp32"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_NAME, "labels.txt", "manifest.json", "model.onnx",
                                                    "model.onnx.json"]
    cfg = keyfile(out / CONFIG_NAME)
    assert cfg.sections() == ["property"]
    p = cfg["property"]
    assert (p["network-type"], p["model-color-format"], p["process-mode"]) == ("2", "2", "1")
    assert float(p["net-scale-factor"]) == 1.0 and [float(v) for v in p["offsets"].split(";")] == [0.0]
    assert p["network-input-order"] == "1" and p["infer-dims"] == f"1;{SIZE};{SIZE}"  # c;h;w of an NHWC input
    assert p["onnx-file"] == "model.onnx" and (out / p["onnx-file"]).read_bytes() == models["fp32"].read_bytes()
    assert p["model-engine-file"] == "model.onnx_b1_gpu0_fp32.engine"
    assert (p["network-mode"], p["batch-size"], p["output-blob-names"]) == ("0", "1", "prob")
    assert p["segmentation-output-order"] == "1" and "int8-calib-file" not in p and "uff-input-order" not in p
    t = float(p["segmentation-threshold"])
    assert np.float32(t) == np.nextafter(np.float32(0.6), np.float32(0))  # float32 just below the fitted 0.6
    assert (out / p["labelfile-path"]).read_text().splitlines() == ["defect"]
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["threshold"] == 0.6 and meta["mask_rule"] == RULE and meta["kind"] == "deepstream-config"


def test_nvinfer_threshold_selects_edgesegs_pixels():
    """nvinfer keeps prob > t, edgeseg prob >= threshold: over every float32 near the threshold they agree."""
    from edgeseg.serving.deepstream import nvinfer_threshold

    for threshold in (0.5, 0.6, 0.75, 0.9):
        t = np.float32(nvinfer_threshold(threshold))
        probs = np.float32(threshold) + np.arange(-50, 51, dtype=np.float32) * np.finfo(np.float32).eps / 2
        probs = np.unique(np.concatenate([probs, [np.nextafter(np.float32(threshold), np.float32(0))]]))
        assert np.array_equal(probs > t, probs >= np.float32(threshold))


@pytest.mark.parametrize(("precision", "mode"), [("int8", "1"), ("fp16", "2")])
def test_network_mode_comes_from_the_files_precision(models, tmp_path, precision, mode):
    out = tmp_path / precision
    result = export("--model", str(models[precision]), "--out", str(out), "--batch-size", "4", "--gpu-id", "1")
    assert result.exit_code == 0, result.output
    p = keyfile(out / "config_infer_primary_edgeseg.txt")["property"]
    assert p["network-mode"] == mode and "int8-calib-file" not in p
    assert (p["batch-size"], p["gpu-id"]) == ("4", "1")
    assert p["model-engine-file"] == f"{models[precision].name}_b4_gpu1_{precision}.engine"


def test_engine_config_names_the_engine_and_its_onnx(models, tmp_path):
    out = tmp_path / "ds"
    result = export("--model", str(models["engine"]), "--out", str(out), "--batch-size", "8")
    assert result.exit_code == 0, result.output
    p = keyfile(out / "config_infer_primary_edgeseg.txt")["property"]
    assert (p["model-engine-file"], p["onnx-file"], p["network-mode"]) == ("model.int8.engine", "model.int8.onnx", "1")
    assert (out / "model.int8.engine").read_bytes() == models["engine"].read_bytes()
    assert (out / "model.int8.onnx").read_bytes() == models["int8"].read_bytes()
    one_line_error(export("--model", str(models["engine"]), "--out", str(tmp_path / "big"), "--batch-size", "64"),
                   "outside")


def test_refusals_are_one_line(models, tmp_path):
    from edgeseg.serving.mask import add_mask_output

    one_line_error(export("--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "a")), "model not found")
    masked = add_mask_output(models["fp32"], tmp_path / "masked.onnx").path
    one_line_error(export("--model", str(masked), "--out", str(tmp_path / "b")), "without a mask output")
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(models["fp32"], bare)
    one_line_error(export("--model", str(bare), "--out", str(tmp_path / "c")), "no fitted threshold")
    out = tmp_path / "d"
    assert export("--model", str(models["fp32"]), "--out", str(out)).exit_code == 0
    one_line_error(export("--model", str(models["int8"]), "--out", str(out)), "already exists: pass --force")
    assert export("--model", str(models["int8"]), "--out", str(out), "--force").exit_code == 0
    assert keyfile(out / "config_infer_primary_edgeseg.txt")["property"]["network-mode"] == "1"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def _has_glib() -> bool:
    try:
        return subprocess.run([str(SYSTEM_PYTHON), "-c", "from gi.repository import GLib"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _has_glib(), reason="needs GLib's Python bindings (apt install python3-gi)")
def test_glib_keyfile_reads_it_as_nvinfer_does(models, tmp_path):
    out = tmp_path / "ds"
    assert export("--model", str(models["fp32"]), "--out", str(out)).exit_code == 0
    script = (
        "import json, sys\n"
        "from gi.repository import GLib\n"
        "k = GLib.KeyFile()\n"
        "k.load_from_file(sys.argv[1], GLib.KeyFileFlags.NONE)\n"
        "g = 'property'\n"
        "print(json.dumps({'groups': k.get_groups()[0], 'type': k.get_integer(g, 'network-type'),\n"
        "  'color': k.get_integer(g, 'model-color-format'), 'scale': k.get_double(g, 'net-scale-factor'),\n"
        "  'offsets': k.get_double_list(g, 'offsets'), 'dims': k.get_integer_list(g, 'infer-dims'),\n"
        "  'order': k.get_integer(g, 'network-input-order'), 'blobs': k.get_string_list(g, 'output-blob-names'),\n"
        "  'threshold': k.get_double(g, 'segmentation-threshold'), 'mode': k.get_integer(g, 'network-mode')}))\n"
    )
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", script, str(out / "config_infer_primary_edgeseg.txt")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["groups"] == ["property"]
    assert (got["type"], got["color"], got["scale"], got["offsets"]) == (2, 2, 1.0, [0.0])
    assert (got["dims"], got["order"], got["blobs"], got["mode"]) == ([1, SIZE, SIZE], 1, ["prob"], 0)
    assert np.float32(got["threshold"]) == np.nextafter(np.float32(0.6), np.float32(0))
