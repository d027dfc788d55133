"""What precision each layer of a built engine runs in, read back with TensorRT's engine inspector.

The ONNX file says what precision was asked for; only the engine says what TensorRT chose. With
``ProfilingVerbosity.DETAILED`` (set by :func:`edgeseg.trt.build.configure`) the inspector's JSON lists every
fused layer with the format of its inputs and outputs, e.g. ``"Channel major FP16 format where channel % 8
== 0"`` or ``"Row major Int8 format"``; the data type is read from that text (TensorRT 10.x: the
``Format/Datatype`` field; 11.x may name it ``DataType``). The parsing needs no TensorRT and is tested on the
CPU; reading an engine needs TensorRT.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

_DTYPES = (("int8", re.compile(r"\bint8\b", re.I)), ("fp16", re.compile(r"\b(fp16|half)\b", re.I)),
           ("fp32", re.compile(r"\b(fp32|float)\b", re.I)), ("int32", re.compile(r"\bint32\b", re.I)))
_FORMAT_KEYS = ("Format/Datatype", "DataType", "Format")


def tensor_dtype(tensor: dict[str, Any] | str) -> str | None:
    """``int8`` / ``fp16`` / ``fp32`` / ``int32`` of one inspector tensor entry (or format string)."""
    texts = [tensor] if isinstance(tensor, str) else [str(tensor[k]) for k in _FORMAT_KEYS if k in tensor]
    for text in texts:
        for name, pattern in _DTYPES:
            if pattern.search(text):
                return name
    return None


def layer_precision(layer: dict[str, Any]) -> str | None:
    """The precision a layer computes in: the type of its first input (a conv's activations), else output."""
    for key in ("Inputs", "Outputs"):
        for tensor in layer.get(key) or []:
            if isinstance(tensor, (dict, str)):
                dtype = tensor_dtype(tensor)
                if dtype:
                    return dtype
    return None


def is_convolution(layer: dict[str, Any]) -> bool:
    kind = f"{layer.get('LayerType', '')} {layer.get('Name', '')}".lower()
    return "conv" in kind


def parse_engine_information(text: str) -> list[dict[str, Any]]:
    """The layers of ``get_engine_information(LayerInformationFormat.JSON)``."""
    info = json.loads(text)
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    return [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in layers]


def precision_summary(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"convolutions": {"int8": 6, "fp32": 2}, "all": {...}, "detailed": bool}`` for a manifest."""
    convs = Counter(layer_precision(layer) or "unknown" for layer in layers if is_convolution(layer))
    every = Counter(layer_precision(layer) or "unknown" for layer in layers)
    return {"convolutions": dict(convs), "all": dict(every),
            "detailed": any("Inputs" in layer for layer in layers)}


def inspect_plan(trt, plan: bytes, logger) -> list[dict[str, Any]]:
    """The inspector's layers of a serialized engine (deserialized once, with host code allowed so that
    version-compatible plans load too)."""
    runtime = trt.Runtime(logger)
    runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return []
    inspector = engine.create_engine_inspector()
    return parse_engine_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
