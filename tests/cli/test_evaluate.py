"""``edgeseg eval`` / ``edgeseg predict`` and the evaluate library, with real models.

The model here is a real ONNX graph run by ONNX Runtime: a 5×5 box mean (the matched filter for a flat
patch) followed by a logistic — it finds the high-contrast defects of the test sets, and its manifest
carries a threshold like a trained model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeseg.artifacts import sha256_file, write_manifest
from edgeseg.cli.app import app
from edgeseg.data.dataset import load_dataset, write_dataset
from edgeseg.data.synth import PRESETS
from edgeseg.evaluate import evaluate, model_threshold, predict_probs
from edgeseg.runners.base import Runner
from edgeseg.types import Backend

cli = CliRunner()
EASY = PRESETS["test"].replace(image_size=48, defect_size=(8, 16), contrast=(12, 12))


def box_filter_onnx(path: Path, threshold: float = 0.3) -> Path:
    """(N, H, W, 1) raw pixels → sigmoid((5×5 mean − 118) · 0.8), with a manifest holding ``threshold``."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["mean"], kernel_shape=[5, 5], pads=[2, 2, 2, 2],
                         count_include_pad=0),
        helper.make_node("Transpose", ["mean"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Sub", ["nhwc", "level"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probs"]),
    ]
    inits = [helper.make_tensor("level", TensorProto.FLOAT, [], [118.0]),
             helper.make_tensor("gain", TensorProto.FLOAT, [], [0.8])]
    graph = helper.make_graph(
        nodes, "box", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", "H", "W", 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "H", "W", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    write_manifest(path, "onnx", {"model": "box"}, threshold=threshold, mask_rule={"grow": None, "min_area": 0})
    return path


class BlurRunner(Runner):
    """A real detector for the library tests: Gaussian blur, then a logistic around 118 gray levels."""

    backend = Backend.classical

    def _activate(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        blurred = np.stack([cv2.GaussianBlur(b[..., 0], (0, 0), 2.0) for b in batch])
        return 1 / (1 + np.exp(-(blurred - 118.0) * 0.8))


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    return {
        "defects": write_dataset(root / "defects", EASY, count=8, seed=11),
        "good": write_dataset(root / "good", EASY.replace(good_fraction=1.0), count=4, seed=12),
        "model": box_filter_onnx(root / "box.onnx"),
    }


def test_eval_reports_both_thresholds_for_each_model_and_set(sets, tmp_path):
    out = tmp_path / "report.json"
    r = cli.invoke(app, ["eval", "--model", str(sets["model"]), "--model", "classical", "--data", str(sets["defects"]),
                         "--data", str(sets["good"]), "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "box.onnx" in r.stdout and "classical" in r.stdout and "0.3*" in r.stdout
    assert " found " in r.stdout and "contrast" not in r.stdout  # one contrast in every set: no contrast column
    report = json.loads(out.read_text())
    assert {"results", "command", "environment"} <= set(report)
    res = report["results"]
    assert [(Path(x["model"]).name, Path(x["data"]).name) for x in res] == [
        ("box.onnx", "defects"), ("box.onnx", "good"), ("classical", "defects"), ("classical", "good")]
    box_def, box_good, classical = res[0], res[1], res[2]
    assert box_def["backend"] == "onnxruntime" and box_def["precision"] == "fp32" and box_def["n_images"] == 8
    assert set(box_def["thresholds"]) == {"0.5", "best"}
    assert box_def["thresholds"]["best"]["threshold"] == 0.3 and box_def["threshold_source"] == "manifest"
    assert classical["thresholds"]["best"]["threshold"] == 0.5 and classical["threshold_source"] == "default"
    at_half = box_def["thresholds"]["0.5"]
    assert at_half["defect_recall"] == 1.0 and at_half["dice"] > 0.7 and at_half["escape_rate"] == 0.0
    assert at_half["recall_by_contrast"] == {"12": {"n": at_half["n_defects"], "found": at_half["n_defects"],
                                                    "recall": 1.0}}
    # Found, of how many: 0.990 on a table cannot hide 382 of 386.
    assert f"{at_half['defects_found']}/{at_half['n_defects']}" in r.stdout
    lo, hi = at_half["defect_recall_ci95"]
    assert lo < at_half["defect_recall"] <= hi <= 1.0
    # a lower threshold predicts more pixels
    assert box_def["thresholds"]["best"]["pixel_recall"] >= at_half["pixel_recall"]
    assert box_good["thresholds"]["0.5"]["overkill_rate"] == 0.0 and box_good["thresholds"]["0.5"]["n_defects"] == 0
    assert box_good["oracle_threshold"] is None and 0 < box_def["oracle_threshold"] < 1


def test_eval_shows_recall_per_contrast_where_a_set_has_several(tmp_path):
    mixed = write_dataset(tmp_path / "mixed", EASY.replace(contrast=(10, 14)), count=8, seed=13)
    assert len({d["contrast"] for image in load_dataset(mixed).defects for d in image}) > 1
    r = cli.invoke(app, ["eval", "--model", "classical", "--data", str(mixed), "-q"])
    assert r.exit_code == 0, r.output
    assert "contrast" in r.stdout and "10:" in r.stdout


def test_eval_applies_the_manifest_mask_rule_unless_raw(sets, tmp_path):
    from edgeseg.artifacts import write_manifest

    model = box_filter_onnx(tmp_path / "strict.onnx")
    # A minimum blob larger than any defect: every blob is dropped, so nothing is found.
    write_manifest(model, "onnx", {"model": "box"}, threshold=0.3, mask_rule={"grow": None, "min_area": 100000})
    runs = {}
    for flag in ("--mask-rule", "--raw"):
        r = cli.invoke(app, ["eval", "--model", str(model), "--data", str(sets["defects"]), flag, "--json", "-", "-q"])
        assert r.exit_code == 0, r.output
        runs[flag] = json.loads(r.stdout)["results"][0]
    assert runs["--mask-rule"]["mask_rule"] == {"grow": None, "min_area": 100000}
    assert runs["--mask-rule"]["thresholds"]["0.5"]["defect_recall"] == 0.0
    assert runs["--raw"]["mask_rule"] == {"grow": None, "min_area": 0}
    assert runs["--raw"]["thresholds"]["0.5"]["defect_recall"] == 1.0


def test_eval_json_on_stdout_and_threshold_override(sets):
    r = cli.invoke(app, ["eval", "--model", str(sets["model"]), "--data", str(sets["defects"]), "--threshold", "0.7",
                         "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)["results"][0]
    assert res["thresholds"]["best"]["threshold"] == 0.7 and res["threshold_source"] == "--threshold"


def _damage(src: Path, dst: Path, how: str) -> tuple[Path, str]:
    """A copy of the set ``src`` broken in one way; returns (data folder, what the error must name)."""
    import shutil

    shutil.copytree(src, dst)
    img, lab = dst / "images" / "2.png", dst / "labels" / "2.png"
    if how == "corrupt":
        img.write_bytes(b"GIF89a not a png")
    elif how == "truncated":
        img.write_bytes(img.read_bytes()[:100])
    elif how == "size":
        cv2.imwrite(str(lab), np.zeros((10, 10), np.uint8))
        return dst, str(lab)
    elif how == "nonbinary":
        cv2.imwrite(str(lab), np.full((48, 48), 128, np.uint8))
        return dst, str(lab)
    elif how == "missing":
        lab.unlink()
    elif how == "empty":
        shutil.rmtree(dst / "images")
        (dst / "images").mkdir()
        return dst, str(dst / "images")
    return dst, str(img)


@pytest.mark.parametrize("how", ["corrupt", "truncated", "size", "nonbinary", "missing", "empty"])
def test_eval_bad_data_is_one_line_naming_the_file(sets, tmp_path, how):
    data, named = _damage(sets["defects"], tmp_path / "bad", how)
    out = tmp_path / "report.json"
    r = cli.invoke(app, ["eval", "--model", "classical", "--data", str(data), "--json", str(out), "-q"])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and named in r.stderr
    assert "Traceback" not in r.output and not out.exists()


@pytest.mark.parametrize("model, words", [
    ("nosuch.onnx", "model file not found: nosuch.onnx"),
    ("text.keras", "is not a Keras model"),
    ("text.onnx", "is not a usable ONNX model"),
    ("model.txt", "cannot tell the backend"),
])
def test_eval_bad_model_is_one_line(sets, tmp_path, model, words):
    if model != "nosuch.onnx":
        (tmp_path / model).write_text("not a model\n")
        model = str(tmp_path / model)
    r = cli.invoke(app, ["eval", "--model", model, "--data", str(sets["defects"]), "-q", "--threshold", "0.5"])
    assert r.exit_code == 1, r.output
    assert words in r.stderr and r.stderr.count("\n") == 1 and model in r.stderr


def test_predict_writes_masks_and_pictures(sets, tmp_path):
    out = tmp_path / "pred"
    r = cli.invoke(app, ["predict", "--model", str(sets["model"]), "--input", str(sets["defects"]), "--out", str(out),
                         "--triptych", "--limit", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "threshold 0.3" in r.stdout
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png", "2.png"]
    ds = load_dataset(sets["defects"], limit=3)
    for i in range(3):
        mask = cv2.imread(str(out / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255}
        assert (mask[ds.masks[i] == 1] == 255).mean() > 0.7  # the defects are in the prediction
        pic = cv2.imread(str(out / "triptych" / f"{i}.png"))
        assert pic.shape[0] > 48 and pic.shape[1] >= 4 * 48  # raw | smoothed | truth | prediction
    assert json.loads((out / "manifest.json").read_text())["config"]["threshold"] == 0.3


def test_predict_unlabelled_folder_and_bad_image(sets, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    ds = load_dataset(sets["defects"], limit=2)
    for name, img in zip(ds.names, ds.images):
        cv2.imwrite(str(folder / name), img)
    out = tmp_path / "pred"
    r = cli.invoke(app, ["predict", "--model", str(sets["model"]), "--input", str(folder), "--out", str(out), "--triptych",
                         "-q"])
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(out / "triptych" / "0.png")).shape[1] < 4 * 48  # no truth panel
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out2 = tmp_path / "pred2"
    r = cli.invoke(app, ["predict", "--model", str(sets["model"]), "--input", str(folder), "--out", str(out2), "-q"])
    assert r.exit_code == 1 and str(folder / "1.png") in r.stderr and not out2.exists()


def test_library_evaluate_and_batched_prediction(sets):
    ds = load_dataset(sets["defects"])
    calls = []
    with BlurRunner() as runner:
        probs = predict_probs(runner, ds.images, batch_size=3, progress=lambda d, t, m="": calls.append((d, t)))
        assert calls == [(3, 8), (6, 8), (8, 8)]
        assert np.allclose(probs, predict_probs(runner, ds.images, batch_size=16), atol=1e-6)
        report = evaluate(runner, ds, [0.5, 0.9], probs=probs)
    assert set(report["thresholds"]) == {"0.5", "0.9"}
    assert report["thresholds"]["0.5"]["defect_recall"] == 1.0
    assert 0.0 < report["oracle_threshold"] < 1.0
    assert model_threshold("classical") == (0.5, "default")
    assert model_threshold(sets["model"]) == (0.3, "manifest")


def test_operating_point_refits_the_manifest_and_eval_uses_it(tmp_path):
    from edgeseg.artifacts import read_json

    model = box_filter_onnx(tmp_path / "m.onnx", threshold=0.3)
    before = read_json(tmp_path / "m.onnx.json")
    dry = cli.invoke(app, ["operating-point", "--model", str(model), "--fit-count", "12", "--dry-run", "-q"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing written" in dry.output and read_json(tmp_path / "m.onnx.json") == before
    # One row per candidate rule, the chosen one marked.
    assert "grown over 0.5, blobs >= 64 px" in dry.output and "no growing, blobs >= 128 px" in dry.output
    assert "*" in dry.output

    r = cli.invoke(app, ["operating-point", "--model", str(model), "--fit-count", "12", "--fa-budget", "0.02",
                         "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)  # the table and the summary go to stderr with --json -
    after = read_json(tmp_path / "m.onnx.json")
    assert after["threshold"] == report["chosen"]["threshold"] and after["mask_rule"] == report["chosen"]["mask_rule"]
    assert after["operating_point"]["budget"] == 0.02 and after["config"] == before["config"]  # the rest is kept
    assert after["operating_point"]["prefer"] == "balanced"
    # The box filter has points within 0.02 on both noise kinds: the chosen one is one of them.
    assert report["within_budget"] is True
    assert report["chosen"]["fp_blobs_per_image"] <= 0.02
    assert max(report["chosen"]["fp_by_group"].values()) <= 0.02
    assert model_threshold(model) == (after["threshold"], "manifest")


@pytest.mark.parametrize("args,message", [
    (["--model", "classical"], "classical has no fitted operating point"),
    (["--model", "nowhere.onnx"], "model file not found: nowhere.onnx"),
    (["--fa-budget", "-1"], "--fa-budget must be >= 0 false blobs per image, got -1"),
    (["--fit-count", "1"], "--fit-count must be an integer from 2 to"),
    (["--prefer", "escapes"], "--prefer must be one of balanced, recall, got 'escapes'"),
    (["--min-dice", "93"], "--min-dice must be in [0, 1), got 93"),
])
def test_operating_point_bad_input_is_one_line(tmp_path, args, message):
    model = box_filter_onnx(tmp_path / "m.onnx")
    r = cli.invoke(app, ["operating-point", "--model", str(model), "-q", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_operating_point_on_a_lines_own_images(sets, tmp_path):
    model = box_filter_onnx(tmp_path / "m.onnx")
    r = cli.invoke(app, ["operating-point", "--model", str(model), "--data", str(sets["defects"]),
                         "--good", str(sets["good"] / "images"), "--fa-budget", "0", "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["fitting_set"] == {"data": str(sets["defects"]), "good": str(sets["good"] / "images"),
                                     "defect_images": 8, "good_images": 4}
    # The easy set's defects (contrast 12) are all found with no false blob by some threshold of the box filter.
    assert report["within_budget"] and report["chosen"]["defect_recall"] == 1.0
    assert report["chosen"]["fp_blobs_per_image"] == 0

    # --out: a copy of the model for this line carries the new point; the model itself keeps its own.
    before = (tmp_path / "m.onnx.json").read_text()
    line = tmp_path / "line" / "m.onnx"
    r = cli.invoke(app, ["operating-point", "--model", str(model), "--data", str(sets["defects"]),
                         "--good", str(sets["good"] / "images"), "--fa-budget", "0", "--out", str(line),
                         "--prefer", "recall", "--min-dice", "0.5", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.onnx.json").read_text() == before
    assert line.read_bytes() == model.read_bytes()
    assert model_threshold(line) == (report["chosen"]["threshold"], "manifest")
    written = json.loads((tmp_path / "line" / "m.onnx.json").read_text())
    point = written["operating_point"]
    assert point["prefer"] == "recall" and point["min_dice"] == 0.5 and point["chosen"]["dice"] >= 0.5
    assert written["sha256"] == sha256_file(line)  # the copy's manifest names the copy

    for args, message in ((["--data", str(sets["defects"])], "--data and --good go together"),
                          (["--out", str(tmp_path / "m.keras")], "--out must be a file path ending in .onnx"),
                          (["--out", str(model / "m.onnx")], "is a file, not a folder"),  # said before the fit
                          (["--data", str(sets["defects"]), "--good", str(sets["defects"])], "has labelled defects")):
        r = cli.invoke(app, ["operating-point", "--model", str(model), "-q", *args])
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_a_manifest_written_for_another_file_is_refused(sets, tmp_path):
    """A model replaced after its manifest (or a crash between writing the two) must not run at the old
    model's threshold: every command that reads the manifest says so in one line."""
    import onnx
    from onnx import numpy_helper

    model = box_filter_onnx(tmp_path / "m.onnx", threshold=0.3)
    graph = onnx.load(str(model))
    gain = next(t for t in graph.graph.initializer if t.name == "gain")
    gain.CopyFrom(numpy_helper.from_array(np.array(0.9, np.float32), "gain"))
    onnx.save(graph, str(model))  # the manifest still names the old file's sha256
    for args in (["eval", "--model", str(model), "--data", str(sets["defects"]), "-q"],
                 ["operating-point", "--model", str(model), "--fit-count", "12", "-q"]):
        r = cli.invoke(app, args)
        assert r.exit_code == 1, r.output
        assert "m.onnx.json was written for another m.onnx" in r.stderr and r.stderr.count("\n") == 1
