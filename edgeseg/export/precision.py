"""FP16 and INT8 versions of an FP32 ONNX model, made in the ONNX graph so every backend runs the same file.

TensorRT 11 has no FP16/INT8 builder flags and no calibrators: precision is part of the network (strong
typing). So FP16 is a graph conversion (onnxconverter-common, float32 kept at the inputs and outputs) and
INT8 is explicit quantization — QuantizeLinear/DequantizeLinear pairs with scales calibrated on generated
images — symmetric (zero point 0, the only kind TensorRT accepts), per-channel weights, biases left in float
(TensorRT's importer takes INT8 DequantizeLinear inputs only). Under strong typing nothing falls back to a
lower precision by itself, so the TensorRT-target INT8 file is FP16 wherever it is not INT8 (opset 19, FP16
Q/DQ scales), except the raw-pixel stem, which stays FP32. TensorRT 10 (JetPack) builds the same files as
strongly typed networks, and ONNX Runtime runs them on a CPU, so the accuracy a precision costs is measured
before any engine exists; :mod:`edgeseg.export.tensorrt_check` checks them against TensorRT's importer rules.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import atomic_path, sha256_file, write_manifest
from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.data.depth import to_levels
from edgeseg.export.calibration import (DEFAULT_CALIB_COUNT, CalibMix, CalibSet, calibration_set,
                                        line_calibration_set)
from edgeseg.export.onnx import inherited, max_abs_diff, parity_images, source_manifest
from edgeseg.progress import Progress, silent
from edgeseg.types import Precision


class CalibMethod(str, Enum):
    max = "max"
    entropy = "entropy"
    percentile = "percentile"


class Quantizer(str, Enum):
    ort = "ort"
    modelopt = "modelopt"


class HighPrecision(str, Enum):
    """What the layers an INT8 file leaves unquantized run in: ``fp16`` (TensorRT's fast path; the default
    for ``--target tensorrt``) or ``fp32`` (measures INT8 alone; the only choice for ``--target cpu``)."""

    fp16 = "fp16"
    fp32 = "fp32"


#: Q/DQ with FP16 scales (DequantizeLinear producing float16) needs opset 19.
FP16_QDQ_OPSET = 19


class Target(str, Enum):
    """Who runs the INT8 file: ``tensorrt`` (symmetric int8, zero point 0 — also runs in ONNX Runtime and is
    the default) or ``cpu`` (uint8 asymmetric activations: ONNX Runtime folds each ReLU into the conv's
    requantisation; 1.2–1.6× the symmetric file's speed on the CPU for the 16-channel inline network, refused by
    TensorRT)."""

    tensorrt = "tensorrt"
    cpu = "cpu"


@dataclass(frozen=True)
class PrecisionResult:
    path: Path
    precision: Precision
    max_abs_diff: float  # vs the FP32 ONNX on generated images
    calib_hash: str | None = None


def derived_path(onnx_path: str | Path, precision: Precision | str) -> Path:
    """``model.onnx`` → ``model.fp16.onnx`` / ``model.int8.onnx``."""
    p = Path(onnx_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.stem
    return p.with_name(f"{stem}.{Precision(precision).value}.onnx")


def _input_shape(model) -> tuple[int, int]:
    """The fixed (H, W) the model takes (parity and calibration images are made at it)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].dim_value or not dims[2].dim_value:
        raise EdgesegError("the ONNX model must take (N, H, W, 1) images of a fixed H and W "
                           "(export it with `edgeseg export --shape HxW`)")
    return int(dims[1].dim_value), int(dims[2].dim_value)


def _load_fp32(onnx_path: Path):
    from edgeseg.export.graph import graph_precision, load_onnx

    model = load_onnx(onnx_path)
    if not model.graph.input:
        raise EdgesegError(f"{onnx_path} is not an ONNX model (no graph inputs)")
    if graph_precision(model) is not Precision.fp32:
        raise EdgesegError(f"{onnx_path} is already {graph_precision(model).value}; convert the FP32 model")
    return model


def _parity(fp32_path: Path, candidate: Path, shape: tuple[int, int]) -> float:
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    images = parity_images(shape, 8, 20240)
    with OnnxRuntimeRunner(fp32_path) as ref, OnnxRuntimeRunner(candidate) as cand:
        return max_abs_diff(ref, cand, images)


def stem_nodes(model, min_conv_depth: int = 128) -> list[str]:
    """The stem: every node the first convolution of depth ≥ ``min_conv_depth`` depends on.

    In edgeseg networks that is the part working on raw gray levels (standardisation, the fold conv,
    pooling). FP16 resolves 0.06 gray level around the background level of 112, and the image mean is
    subtracted there, so the stem in FP16 costs accuracy for no speed (it is memory-bound): measured on the
    inline network, max |Δprob| vs FP32 drops from 3.5e-2 to 1.4e-3 when the stem stays FP32.
    """
    shallow = set(shallow_convs(model, min_conv_depth))
    first = next((n for n in model.graph.node if n.op_type == "Conv" and n.name not in shallow), None)
    if first is None:
        return []
    producers = {o: n for n in model.graph.node for o in n.output}
    stem: list[str] = []
    frontier = [first.input[0]]
    while frontier:
        node = producers.get(frontier.pop())
        if node is None or node.name in stem:
            continue
        stem.append(node.name)
        frontier.extend(node.input)
    return stem


def to_fp16(onnx_path: str | Path, out: str | Path | None = None, keep_stem_fp32: bool = True,
            min_conv_depth: int = 128, progress: Progress = silent) -> PrecisionResult:
    """FP16 copy of an FP32 ONNX model with float32 inputs/outputs (``keep_io_types``); the stem (see
    :func:`stem_nodes`) stays FP32 unless ``keep_stem_fp32`` is False."""
    onnx_path = Path(onnx_path)
    out = Path(out) if out else derived_path(onnx_path, Precision.fp16)
    src = source_manifest(onnx_path)  # refused now, before the file is written, if it cannot vouch for it
    model = _load_fp32(onnx_path)
    size = _input_shape(model)
    float16 = require("onnxconverter_common.float16")
    progress(0, 2, "converting to float16")
    blocked = stem_nodes(model, min_conv_depth) if keep_stem_fp32 else []
    # keep_io_types: callers feed float32 camera pixels and read float32 probabilities, whatever the inside.
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked or None)
    converted = fold_cast_pairs(converted)
    with atomic_path(out) as tmp:
        require("onnx").save(converted, str(tmp))
        progress(1, 2, "parity against FP32")
        diff = _parity(onnx_path, tmp, size)
    write_manifest(out, "onnx", config={"conversion": "onnxconverter_common.float16", "keep_io_types": True,
                                        "keep_stem_fp32": keep_stem_fp32, "fp32_nodes": blocked},
                   inputs={str(onnx_path): sha256_file(onnx_path)}, precision=Precision.fp16.value,
                   parity={"max_abs_diff": diff, "reference": str(onnx_path)}, **inherited(src))
    progress(2, 2, f"max |Δprob| {diff:.1e}")
    return PrecisionResult(out, Precision.fp16, diff)


def head_nodes(model) -> list[str]:
    """Names of the segmentation head: the nodes from the last Conv to the graph output (the head conv,
    depth-to-space, sigmoid). Left in FP32 by ``--keep-head-fp32``: the last layer decides the threshold."""
    producers = {o: n for n in model.graph.node for o in n.output}
    head, frontier = [], [model.graph.output[0].name]
    while frontier:
        node = producers.get(frontier.pop())
        if node is None or node.name in head:
            continue
        head.append(node.name)
        if node.op_type != "Conv":
            frontier.extend(i for i in node.input if i in producers)
    return head


def shallow_convs(model, min_depth: int) -> list[str]:
    """Conv nodes whose reduction depth (input channels × kernel height × width) is below ``min_depth``.

    Why they stay FP32: an int8 kernel only pays for quantizing its input and requantizing its output when
    each output sums enough products. Measured on the inline network (docs/benchmarks.md), ONNX
    Runtime's QLinearConv is *slower* than the FP32 NCHWc kernel for the 4×4 single-channel fold conv
    (depth 16) and for 8-channel context convs (depth 72), and ~4× faster for the head (depth 216); with
    the default 16 context channels (depth 144) every context conv is quantized, and the CPU-target INT8 runs
    faster than FP32 (docs/benchmarks.md).
    The first conv of an edgeseg network also reads raw pixels: symmetric int8 over 0..255 has a step of
    2 gray levels, the size of the defects' contrast, and it caused most of the INT8 error.
    """
    inits = {t.name: t for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            dims = inits[node.input[1]].dims  # (out, in/group, kh, kw)
            if len(dims) == 4 and dims[1] * dims[2] * dims[3] < min_depth:
                names.append(node.name)
    return names


def to_int8(onnx_path: str | Path, out: str | Path | None = None, *, calib_count: int = DEFAULT_CALIB_COUNT,
            calib_mix: CalibMix | str = CalibMix.mixed, calib_method: CalibMethod | str = CalibMethod.max,
            calib_seed: int = 7, calib_root: str | Path = "calib", quantizer: Quantizer | str = Quantizer.ort,
            keep_head_fp32: bool = False, min_conv_depth: int = 128, op_types: tuple[str, ...] = ("Conv",),
            target: Target | str = Target.tensorrt, high_precision: HighPrecision | str | None = None,
            calib_data: str | Path | None = None, progress: Progress = silent) -> PrecisionResult:
    """INT8 Q/DQ copy of an FP32 ONNX model, calibrated on a generated set — or, with ``calib_data``, on crops of
    a line's own images (a folder, 8- or 16-bit; ``calib_mix`` is then unused) — see :mod:`.calibration`.

    Symmetric activations and weights (zero point 0: TensorRT's requirement), per-channel weights, after
    ``quant_pre_process`` (shape inference + graph clean-up, so every Conv gets its Q/DQ pair). Only
    ``op_types`` are quantized (convolutions: the standardisation, pooling and reshaping ops around them
    are memory-bound, and Q/DQ pairs around them cost more than int8 saves); convolutions shallower than
    ``min_conv_depth`` stay FP32 (see :func:`shallow_convs`). Both keep the file TensorRT-compatible.

    ``high_precision`` (default: fp16 for TensorRT, fp32 for the CPU) is what everything else runs in; with
    fp16 the stem (see :func:`stem_nodes`) stays FP32 and the manifest lists it. A TensorRT-target file is
    checked against TensorRT's importer rules before it is renamed into place.
    """
    onnx_path = Path(onnx_path)
    out = Path(out) if out else derived_path(onnx_path, Precision.int8)
    method, quantizer, target = CalibMethod(calib_method), Quantizer(quantizer), Target(target)
    if high_precision is None:
        high_precision = HighPrecision.fp16 if target is Target.tensorrt else HighPrecision.fp32
    high_precision = HighPrecision(high_precision)
    if target is Target.cpu and quantizer is not Quantizer.ort:
        raise EdgesegError("--target cpu needs --quantizer ort (ModelOpt writes TensorRT's symmetric Q/DQ only)")
    if target is Target.cpu and high_precision is HighPrecision.fp16:
        raise EdgesegError("--target cpu keeps unquantized layers in FP32 (ONNX Runtime's CPU kernels are "
                           "FP32): drop --high-precision fp16")
    src = source_manifest(onnx_path)  # refused now, before the file is written, if it cannot vouch for it
    model = _load_fp32(onnx_path)
    size = _input_shape(model)
    # A line's folder is read (and every file checked) first: one that cannot calibrate fails before anything else.
    calib = line_calibration_set(calib_data, size, calib_count, calib_seed, calib_root) if calib_data else None
    if quantizer is Quantizer.modelopt:
        require("modelopt.onnx.quantization")  # fails with the install hint before any work is done
    exclude = shallow_convs(model, min_conv_depth) + (head_nodes(model) if keep_head_fp32 else [])
    exclude = list(dict.fromkeys(exclude))
    if "Conv" in op_types and not [n for n in model.graph.node if n.op_type == "Conv" and n.name not in exclude]:
        raise EdgesegError(f"nothing left to quantize in {onnx_path}: every convolution is shallower than "
                           f"--min-conv-depth {min_conv_depth} or excluded (lower --min-conv-depth)")
    progress(0, 4, "calibration images")
    if calib is None:
        calib = calibration_set(size, calib_count, calib_mix, calib_seed, calib_root)
    progress(1, 4, f"calibrating ({method.value}, {quantizer.value})")
    with atomic_path(out) as tmp:
        if quantizer is Quantizer.ort:
            overrides: dict[str, Any] = {"op_types_to_quantize": list(op_types)}
            if target is Target.cpu:
                q = require("onnxruntime.quantization")
                overrides = {"op_types_to_quantize": list(op_types) + ["Relu"], "activation_type": q.QuantType.QUInt8,
                             "extra_options": {"ActivationSymmetric": False}}
            settings = _quantize_ort(onnx_path, tmp, calib, method, exclude, **overrides)
        else:
            settings = _quantize_modelopt(onnx_path, tmp, calib, method, exclude, list(op_types))
        fp32_nodes: list[str] = []
        if high_precision is HighPrecision.fp16:
            progress(2, 4, "unquantized layers to FP16 (stem FP32)")
            fp32_nodes = stem_nodes(model, min_conv_depth)
            _high_precision_fp16(tmp, fp32_nodes)
        if target is Target.tensorrt:
            from edgeseg.export.tensorrt_check import require_tensorrt_compatible

            require_tensorrt_compatible(tmp)
        progress(3, 4, "parity against FP32")
        diff = _parity(onnx_path, tmp, size)
    config = {"quantizer": quantizer.value, "target": target.value, "calib_method": method.value,
              "calib_mix": None if calib_data is not None else CalibMix(calib_mix).value,
              **({"calib_data": str(calib_data)} if calib_data is not None else {}), "calib_count": calib_count,
              "calib_seed": calib_seed, "keep_head_fp32": keep_head_fp32,
              "min_conv_depth": min_conv_depth, "op_types": list(op_types), "excluded_nodes": exclude,
              "high_precision": high_precision.value, "fp32_nodes": fp32_nodes, **settings}
    write_manifest(out, "onnx", config=config,
                   inputs={str(onnx_path): sha256_file(onnx_path), "calibration": str(calib.path)},
                   precision=Precision.int8.value,
                   calibration={"hash": calib.hash, "path": str(calib.path),
                                **({"source": calib.source} if calib.source else {})},
                   parity={"max_abs_diff": diff, "reference": str(onnx_path)}, **inherited(src))
    progress(4, 4, f"max |Δprob| {diff:.1e}")
    return PrecisionResult(out, Precision.int8, diff, calib.hash)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over the calibration images, in small batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = 16):
        self.input_name, self.images, self.batch, self.i = input_name, images, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.images):
            return None
        chunk = to_levels(self.images[self.i: self.i + self.batch])[..., None]
        self.i += self.batch
        return {self.input_name: chunk}

    def rewind(self) -> None:
        self.i = 0


# Histogram calibration as TensorRT's entropy calibrator does it: 2048 bins searched for the 128-level
# window with the least KL divergence. quantize_static cannot pass bin counts, and its Entropy default
# (128 bins, 128 quantized bins) leaves nothing to search — it returns the max range, identical to "max"
# (measured: every scale equal) — so histogram methods are calibrated here and handed over as a cache.
_HISTOGRAM = {
    CalibMethod.entropy: {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True},
    CalibMethod.percentile: {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
}


def _quantize_ort(src: Path, dst: Path, calib: CalibSet, method: CalibMethod, exclude: list[str],
                  **overrides: Any) -> dict[str, Any]:
    q = require("onnxruntime.quantization")
    calibrate = require("onnxruntime.quantization.calibrate")
    methods = {CalibMethod.max: q.CalibrationMethod.MinMax, CalibMethod.entropy: q.CalibrationMethod.Entropy,
               CalibMethod.percentile: q.CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="edgeseg-quant-") as work:
        pre = Path(work) / "pre.onnx"
        q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = require("onnx").load(str(pre))
        reader = _Reader(model.graph.input[0].name, calib.images)
        # QuantizeBias False: ORT would otherwise store biases as INT32 behind a DequantizeLinear, which
        # TensorRT's importer rejects (INT8 inputs only); TensorRT folds a float bias into the int8 conv itself.
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                 **overrides.pop("extra_options", {})}
        settings = {"quant_format": q.QuantFormat.QDQ, "per_channel": True, "activation_type": q.QuantType.QInt8,
                    "weight_type": q.QuantType.QInt8, "calibrate_method": methods[method],
                    "nodes_to_exclude": exclude or None, "extra_options": extra, **overrides}
        # The histogram calibrators print progress to stdout; library code stays quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            if method in _HISTOGRAM:
                calibrator = calibrate.create_calibrator(
                    pre, settings.get("op_types_to_quantize"), augmented_model_path=str(Path(work) / "aug.onnx"),
                    calibrate_method=methods[method], extra_options=dict(_HISTOGRAM[method]))
                calibrator.collect_data(reader)
                cache = Path(work) / "ranges.json"
                calibrate.save_tensors_data(calibrator.compute_data(), cache)
                q.quantize_static(str(pre), str(dst), None, calibration_cache_path=str(cache), **settings)
            else:
                q.quantize_static(str(pre), str(dst), reader, **settings)
    symmetric = bool(extra["ActivationSymmetric"])
    return {"format": "QDQ", "per_channel": settings["per_channel"],
            "activation_type": "int8" if symmetric else "uint8", "weight_type": "int8", "symmetric": symmetric,
            "extra_options": extra,
            "histogram": _HISTOGRAM.get(method),
            **{k: v for k, v in settings.items() if k == "op_types_to_quantize"}}


def _high_precision_fp16(path: Path, fp32_nodes: list[str]) -> None:
    """Rewrite the Q/DQ file at ``path`` so that everything not INT8 runs in FP16, ``fp32_nodes`` excepted.

    Strong typing has no fallback: a layer the Q/DQ file leaves in float runs at the type the graph gives it,
    so without this an INT8 engine runs its unquantized layers in FP32 and can be slower than the FP16 one
    (NVIDIA's ModelOpt casts them to FP16 by default for the same reason). The graph moves to opset 19, where
    Q/DQ scales may be float16, and float16 conversion keeps float32 at the inputs and outputs.
    """
    onnx = require("onnx")
    float16 = require("onnxconverter_common.float16")
    version_converter = require("onnx.version_converter")
    model = onnx.load(str(path))
    default = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if default < FP16_QDQ_OPSET:
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    model = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=fp32_nodes or None)
    model = fold_cast_pairs(model)
    onnx.save(model, str(path))


def fold_cast_pairs(model):
    """Remove ``x → Cast → Cast → y`` chains whose second Cast gives back ``x``'s own type.

    The float16 converter inserts such round trips at the boundary of the nodes it leaves in FP32; an
    FP32 → FP16 → FP32 trip rounds the stem's values to FP16, exactly what keeping the stem FP32 is for, and
    an FP16 → FP32 → FP16 trip is two copies for nothing. Consumers are rewired to ``x``; a graph output is
    never rewired.
    """
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producers = {o: n for n in model.graph.node for o in n.output}
    outputs = {o.name for o in model.graph.output}
    replace: dict[str, str] = {}
    for node in model.graph.node:
        first = producers.get(node.input[0]) if node.op_type == "Cast" else None
        if first is None or first.op_type != "Cast" or node.output[0] in outputs:
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        if types.get(first.input[0]) == to:
            replace[node.output[0]] = first.input[0]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    # Casts nobody reads any more go (repeat: removing a second Cast can orphan the first).
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type == "Cast" and n.output[0] not in read]
        if not dead:
            return model
        for n in dead:
            model.graph.node.remove(n)


def _quantize_modelopt(src: Path, dst: Path, calib: CalibSet, method: CalibMethod,
                       exclude: list[str], op_types: list[str]) -> dict[str, Any]:
    mq = require("modelopt.onnx.quantization")
    if method is CalibMethod.percentile:
        raise EdgesegError("--quantizer modelopt supports --calib-method max or entropy")
    # high_precision_dtype fp32: the FP16 step (stem kept FP32) is edgeseg's own, the same for both quantizers.
    mq.quantize(onnx_path=str(src), quantize_mode="int8",
                calibration_data=to_levels(calib.images)[..., None], calibration_method=method.value,
                calibration_eps=["cpu"], nodes_to_exclude=exclude or None, op_types_to_quantize=op_types,
                high_precision_dtype="fp32",
                output_path=str(dst))
    return {"format": "QDQ", "symmetric": True, "high_precision_dtype": "fp32"}
