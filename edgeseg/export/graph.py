"""What an ONNX file is, read from its manifest or its graph: no runtime needed.

Export, quantization, the TensorRT builder and every runner ask the same question (which precision is this
file?); the answer lives here, beside the files that make them, so none of them depends on a runner.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.artifacts import manifest_path, read_manifest
from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.types import Precision


def onnx_precision(path: str | Path) -> Precision:
    """fp32/fp16/int8 of an ONNX file: from its manifest when present (one that names another file or none is
    refused), else by looking at the graph (QuantizeLinear nodes → int8, float16 initializers → fp16)."""
    path = Path(path)
    value = (read_manifest(path) or {}).get("precision")  # a manifest that cannot vouch for the file is refused
    if value:
        try:
            return Precision(value)
        except ValueError:
            raise EdgesegError(f"{manifest_path(path)}: precision must be one of "
                               f"{', '.join(p.value for p in Precision)}, got {value!r}") from None
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


def load_onnx(path: str | Path):
    """``onnx.load`` with the user's mistakes (a folder, a missing or non-ONNX file) as :class:`EdgesegError`."""
    onnx = require("onnx")
    path = Path(path)
    if path.is_dir():
        raise EdgesegError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise EdgesegError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise EdgesegError(f"{path} is not an ONNX model: {str(e).splitlines()[0] if str(e) else e}") from e
    if not model.graph.node:
        raise EdgesegError(f"{path} is not an ONNX model (no graph nodes)")
    return model
