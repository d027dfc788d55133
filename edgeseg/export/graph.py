"""What an ONNX file is, read from its manifest or its graph: no runtime needed.

Export, quantization, the TensorRT builder and every runner ask the same question (which precision is this
file?); the answer lives here, beside the files that make them, so none of them depends on a runner.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifacts import manifest_path, read_json
from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.types import Precision


def onnx_precision(path: str | Path) -> Precision:
    """fp32/fp16/int8 of an ONNX file: from its manifest when present, else by looking at the graph
    (QuantizeLinear nodes → int8, float16 initializers → fp16)."""
    path = Path(path)
    mpath = manifest_path(path)
    if mpath.is_file():
        try:
            value = read_json(mpath).get("precision")
            if value:
                return Precision(value)
        except (ValueError, AttributeError):
            pass  # an unreadable manifest: fall back to the graph
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise EdgesegError(f"{path} is not an ONNX model: {e}") from e
    return graph_precision(model)


def graph_precision(model) -> Precision:
    """Precision of an in-memory ONNX ModelProto (see :func:`onnx_precision`)."""
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}:
        return Precision.int8
    if any(t.data_type == 10 for t in model.graph.initializer):  # TensorProto.FLOAT16
        return Precision.fp16
    return Precision.fp32
