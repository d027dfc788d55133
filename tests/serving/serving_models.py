"""Models and helpers the serving tests share: tiny ONNX files (FP32 and symmetric Q/DQ INT8) with the manifest
edgeseg writes beside them, an engine file with build-engine's manifest, and the one-line error check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiny_models import tiny_graph

SIZE = 32
RULE = {"grow": 0.4, "min_area": 8}


def save_with_manifest(model, path: Path, threshold: float | None = 0.6, rule=RULE, precision="fp32") -> Path:
    """Save an ONNX ModelProto with an edgeseg manifest beside it (threshold and mask rule, as train writes)."""
    import onnx

    from edgeseg.artifacts import write_manifest

    onnx.save(model, str(path))
    extra = {"threshold": threshold, "mask_rule": rule} if threshold is not None else {}
    write_manifest(path, "onnx", {"input": "image"}, precision=precision, **extra)
    return path


def tiny_model(size: int = SIZE):
    """(N, size, size, 1) raw pixels → 5×5 mean → sigmoid((m − 112) / 2) → prob (N, size, size, 1)."""
    return tiny_graph(size)


def tiny_qdq_model(size: int = SIZE):
    """A symmetric Q/DQ INT8 model as edgeseg quantize writes them: quantized activations and per-channel int8
    weights into a 3×3 conv, then a sigmoid."""
    from onnx import TensorProto, helper

    w = np.full((1, 1, 3, 3), 14, dtype=np.int8)  # ×(1/126) per weight: a 3×3 mean, roughly
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("QuantizeLinear", ["nchw", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["p"]),
        helper.make_node("Transpose", ["p"], ["prob"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_qdq",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", size, size, 1])],
        [helper.make_tensor("x_scale", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("x_zero", TensorProto.INT8, [], [0]),
         helper.make_tensor("w_q", TensorProto.INT8, [1, 1, 3, 3], w.ravel().tolist()),
         helper.make_tensor("w_scale", TensorProto.FLOAT, [1], [1 / 126]),
         helper.make_tensor("w_zero", TensorProto.INT8, [1], [0]),
         helper.make_tensor("b", TensorProto.FLOAT, [1], [-112.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


ENGINE_PROFILE = {"input": "image", "min": [1, SIZE, SIZE, 1], "opt": [8, SIZE, SIZE, 1], "max": [32, SIZE, SIZE, 1]}


def fake_engine(folder: Path, onnx_path: Path, profile=ENGINE_PROFILE, cc: str = "8.7") -> Path:
    """An engine file with the manifest edgeseg build-engine writes (profile, TensorRT device, source ONNX).
    The plan bytes are opaque to everything tested here: Triton's config is written from the manifest."""
    from edgeseg.artifacts import sha256_file, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / "model.int8.engine"
    engine.write_bytes(b"serialized-plan-bytes")
    write_manifest(engine, "engine", {"batch": [profile["min"][0], profile["opt"][0], profile["max"][0]]},
                   precision="int8", profile=profile,
                   tensorrt={"version": "10.3.0.30", "gpu": "Orin", "compute_capability": cc, "version_compatible": False},
                   onnx={"path": str(onnx_path), "sha256": sha256_file(onnx_path)}, threshold=0.6, mask_rule=RULE)
    return engine


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert text in result.output and result.output.startswith("error:"), result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
