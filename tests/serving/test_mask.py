"""The fitted threshold inside the ONNX graph: a uint8 mask output equal to ``prob >= threshold``, checked on real
files (hand-built FP32 and Q/DQ INT8 models, and the demo model when ``make demo`` has run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from serving_models import RULE, SIZE, save_with_manifest, tiny_model, tiny_qdq_model

DEMO = Path(__file__).resolve().parents[2] / "runs" / "demo"


def run(path_or_model, images: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    src = path_or_model if isinstance(path_or_model, (str, Path)) else path_or_model.SerializeToString()
    session = ort.InferenceSession(str(src) if isinstance(src, Path) else src, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})


def reference_masks(model_path: Path, images: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """What ``edgeseg predict`` thresholds before its mask rule: probabilities from the ONNX Runtime runner."""
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    with OnnxRuntimeRunner(model_path) as runner:
        probs = runner.infer(images)
    return probs, probs >= threshold


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("mask")
    return {"fp32": save_with_manifest(tiny_model(), d / "model.onnx"),
            "int8": save_with_manifest(tiny_qdq_model(), d / "model.int8.onnx", threshold=0.55, precision="int8")}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mask_output_equals_probs_at_the_fitted_threshold(models, precision):
    from edgeseg.bench.harness import bench_images
    from edgeseg.serving.mask import add_mask_output

    src = models[precision]
    threshold = json.loads(Path(f"{src}.json").read_text())["threshold"]
    result = add_mask_output(src)
    assert result.path == src.with_name(src.name[:-5] + ".mask.onnx") and result.threshold == threshold
    images = bench_images(16, SIZE, seed=5).astype(np.float32)[..., None]
    probs, expected = reference_masks(src, images, threshold)
    prob, mask = run(result.path, images)
    assert mask.dtype == np.uint8 and mask.shape == (*probs.shape, 1)  # the runner drops the channel axis
    assert np.array_equal(prob[..., 0], probs)  # the probability output is kept, unchanged
    assert np.array_equal(mask[..., 0], expected.astype(np.uint8))
    assert 0 < mask.sum() < mask.size  # the threshold cuts through these images: a real comparison


def test_mask_is_greater_or_equal_not_greater(tmp_path):
    """prob = pixel / 256 is exact in float32, so pixel 128 lands on threshold 0.5 itself: it must be defect."""
    from onnx import TensorProto, helper

    from edgeseg.serving.mask import add_mask_output

    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "k"], ["prob"])], "exact",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [1 / 256])])
    src = save_with_manifest(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                             tmp_path / "exact.onnx", threshold=0.5)
    out = add_mask_output(src, check_images=0).path
    images = np.array([127, 128, 129, 255] * 4, dtype=np.float32).reshape(1, 4, 4, 1)
    prob, mask = run(out, images)
    assert prob.ravel()[1] == np.float32(0.5)
    assert mask.ravel()[:4].tolist() == [0, 1, 1, 1]


def test_manifest_says_what_the_graph_does_and_what_is_left(models):
    import onnx

    from edgeseg.serving.mask import add_mask_output

    out = add_mask_output(models["fp32"], models["fp32"].with_name("m.onnx")).path
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["threshold"] == 0.6 and meta["mask_rule"] == RULE and meta["precision"] == "fp32"
    assert meta["serving"]["applied_in_graph"] == "mask = uint8(prob >= 0.6)"
    assert meta["serving"]["left_to_caller"]["mask_rule"] == RULE
    assert "min_area" in meta["serving"]["left_to_caller"]["what"]
    assert meta["parity"]["max_abs_dprob"] == 0.0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["edgeseg.threshold"] == "0.6" and json.loads(props["edgeseg.mask_rule"]) == RULE
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["prob", "mask"]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mask_graph_passes_tensorrt_rules_but_edgesegs_one_output_contract(models, tmp_path, precision):
    from edgeseg.export.tensorrt_check import check_tensorrt
    from edgeseg.serving.mask import add_mask_output, tensorrt_violations

    assert check_tensorrt(models[precision]) == []
    out = add_mask_output(models[precision], tmp_path / "m.onnx").path
    assert tensorrt_violations(out) == []
    assert sorted((v.rule, v.node) for v in check_tensorrt(out)) == [("io-count", "model"), ("io-dtype", "output 'mask'")]


def test_refusals(models, tmp_path):
    from edgeseg.serving.mask import add_mask_output

    bare = tmp_path / "bare.onnx"
    shutil.copyfile(models["fp32"], bare)  # no manifest: no fitted threshold
    with pytest.raises(EdgesegError, match="no fitted threshold"):
        add_mask_output(bare)
    twice = add_mask_output(models["fp32"], tmp_path / "once.onnx").path
    with pytest.raises(EdgesegError, match="has 2 outputs"):
        add_mask_output(twice, tmp_path / "twice.onnx")
    with pytest.raises(EdgesegError, match="is the source model"):
        add_mask_output(models["fp32"], models["fp32"])
    with pytest.raises(EdgesegError, match="model not found"):
        add_mask_output(tmp_path / "missing.onnx")
    assert not (tmp_path / "twice.onnx").exists()


@pytest.mark.skipif(not (DEMO / "model.onnx.json").is_file(), reason="needs the demo run (make demo)")
@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_demo_model_masks_equal_predict_before_the_blob_rule(tmp_path, name):
    from edgeseg.bench.harness import bench_images
    from edgeseg.serving.mask import add_mask_output, tensorrt_violations

    for f in (name, f"{name}.json"):
        shutil.copyfile(DEMO / f, tmp_path / f)
    meta = json.loads((tmp_path / f"{name}.json").read_text())
    result = add_mask_output(tmp_path / name)
    images = bench_images(8, 256).astype(np.float32)[..., None]
    probs, expected = reference_masks(tmp_path / name, images, meta["threshold"])
    _, mask = run(result.path, images)
    assert np.array_equal(mask[..., 0], expected.astype(np.uint8)) and mask.any()
    assert tensorrt_violations(result.path) == []
    assert json.loads(Path(f"{result.path}.json").read_text())["mask_rule"] == meta["mask_rule"]
