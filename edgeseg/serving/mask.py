"""The operating point inside the file: the fitted threshold as ONNX nodes, so the model also outputs its mask.

``add_mask_output("runs/demo/model.onnx")`` writes ``runs/demo/model.mask.onnx``, whose graph ends in

    prob ──► GreaterOrEqual(prob, threshold) ──► Cast(to=UINT8) ──► mask   (1 = defect, 0 = background)

with ``threshold`` the one ``edgeseg train`` / ``operating-point`` fitted (the source manifest's ``threshold``),
stored as a constant of the probability's own type, so ``mask == (prob >= threshold)`` holds bit for bit as
edgeseg's own ``probs >= threshold`` does (float32 on both sides).

The probability output is kept, first, under its own name: the mask rule's hysteresis grows blobs over pixels
``>= mask_rule.grow``, a level below the threshold that only the probabilities carry, and a server client asks
for the outputs it wants (Triton sends only the requested ones), so a line that thresholds only pays for the
uint8 mask. What the graph does not do is the rest of the mask rule — hysteresis growth and the minimum blob
area, which need connected components — and the written manifest says so (``serving.left_to_caller``).

TensorRT: onnx-tensorrt's operator matrix (docs/operators.md, release/10.x) lists GreaterOrEqual for
FP32/FP16/BF16/INT32/INT64 inputs and Cast for FP32/FP16/BF16/INT32/INT64/UINT8/BOOL, with UINT8 allowed only
as a network input or output — which is exactly where it is here. :func:`tensorrt_violations` runs
``edgeseg.export.tensorrt_check`` on the new graph; the only rules it then breaks are edgeseg's own I/O
contract (``io-count``: one output; ``io-dtype``: float outputs), which is what edgeseg's runners read, not what
TensorRT accepts — so ``edgeseg build-engine`` still refuses this file, and a plan with a mask output needs that
contract widened first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import atomic_path, sha256_file, write_manifest
from edgeseg.deps import require
from edgeseg.errors import EdgesegError

MASK_NAME = "mask"
THRESHOLD_NAME = "edgeseg_threshold"
#: Images the written file is checked on against the source model (generated, seeded).
CHECK_IMAGES = 4
_FLOAT_TYPES = ("FLOAT", "FLOAT16")
_MIN_OPSET = 12  # GreaterOrEqual entered the default domain at opset 12


@dataclass(frozen=True)
class MaskResult:
    path: Path
    threshold: float
    probability: str
    mask: str
    max_abs_dprob: float


def mask_path_for(onnx_path: str | Path) -> Path:
    """``model.int8.onnx`` → ``model.int8.mask.onnx`` (beside it)."""
    p = Path(onnx_path)
    stem = p.name[:-5] if p.name.endswith(".onnx") else p.name
    return p.with_name(f"{stem}.mask.onnx")


def with_mask(model, threshold: float, name: str = MASK_NAME, mask_rule: dict[str, Any] | None = None):
    """A copy of the in-memory ONNX ``model`` with a uint8 mask output ``name`` = ``prob >= threshold`` added
    after its single float output; the threshold and mask rule also go into the file's metadata_props."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    if not 0.0 < float(threshold) < 1.0:
        raise EdgesegError(f"the threshold must be in (0, 1), got {threshold}")
    graph = model.graph
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise EdgesegError(f"the model has {len(graph.output)} outputs ({names}); a mask is added to a model with "
                           "one probability output (did it get one already?)")
    prob = graph.output[0]
    elem = prob.type.tensor_type.elem_type
    if TensorProto.DataType.Name(elem) not in _FLOAT_TYPES:
        raise EdgesegError(f"output {prob.name} is {TensorProto.DataType.Name(elem)}; a probability output is "
                           "float32 or float16")
    taken = {t for n in graph.node for t in (*n.input, *n.output)} | {t.name for t in graph.initializer}
    for tensor in (name, THRESHOLD_NAME, f"{name}_bool"):
        if tensor in taken or tensor == prob.name:
            raise EdgesegError(f"the model already has a tensor named {tensor!r}; pick another mask name")

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for opset in out.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < _MIN_OPSET:
            raise EdgesegError(f"the model is opset {opset.version}; GreaterOrEqual needs opset {_MIN_OPSET} or "
                               "newer: re-export it (edgeseg export uses 17)")
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    out.graph.initializer.append(numpy_helper.from_array(np.asarray(threshold, dtype=dtype), THRESHOLD_NAME))
    out.graph.node.extend([
        helper.make_node("GreaterOrEqual", [prob.name, THRESHOLD_NAME], [f"{name}_bool"], name=f"{name}_threshold"),
        helper.make_node("Cast", [f"{name}_bool"], [name], to=TensorProto.UINT8, name=f"{name}_cast"),
    ])
    mask = out.graph.output.add()
    mask.CopyFrom(prob)
    mask.name = name
    mask.type.tensor_type.elem_type = TensorProto.UINT8
    meta = {"edgeseg.threshold": repr(float(threshold)), "edgeseg.mask_output": name,
            "edgeseg.mask_rule": json.dumps(mask_rule) if mask_rule else "null"}
    kept = [p for p in out.metadata_props if p.key not in meta]
    del out.metadata_props[:]
    out.metadata_props.extend(kept)
    for key, value in meta.items():
        out.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as e:
        raise EdgesegError(f"the model with a mask output does not pass the ONNX checker: {e}") from e
    return out


def add_mask_output(onnx_in: str | Path, onnx_out: str | Path | None = None, *, threshold: float | None = None,
                    name: str = MASK_NAME, check_images: int = CHECK_IMAGES) -> MaskResult:
    """Write ``onnx_in`` with a uint8 mask output (see the module docstring) to ``onnx_out`` (default
    :func:`mask_path_for`), with its manifest. ``threshold`` defaults to the fitted one in ``onnx_in``'s manifest.

    Before anything is written, both files run on ``check_images`` generated images with ONNX Runtime: the
    probabilities must be the source model's and the mask ``prob >= threshold`` exactly, else nothing is written.
    """
    from edgeseg.export.onnx import inherited
    from edgeseg.serving.signature import read_signature

    onnx = require("onnx")
    src = read_signature(onnx_in)
    if src.kind != "onnx":
        raise EdgesegError(f"{onnx_in} is an engine; a mask output is added to the ONNX file, and the engine built "
                           "from that")
    if threshold is None:
        threshold = src.threshold
        if threshold is None:
            raise EdgesegError(f"{onnx_in} has no fitted threshold in its manifest ({Path(onnx_in).name}.json); fit "
                               "one with edgeseg operating-point, or pass threshold=")
    out_path = Path(onnx_out) if onnx_out is not None else mask_path_for(onnx_in)
    if out_path.resolve() == Path(onnx_in).resolve():
        raise EdgesegError(f"{out_path} is the source model; write the mask model beside it")
    model = with_mask(onnx.load(str(onnx_in)), threshold, name, src.mask_rule)
    dprob = check_mask_model(onnx_in, model, threshold, name, check_images)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    write_manifest(
        out_path, "onnx",
        config={"source": str(onnx_in), "mask_output": name, "threshold": float(threshold), "mask_dtype": "uint8"},
        inputs={str(onnx_in): sha256_file(onnx_in)},
        precision=src.precision,
        serving=serving_record(src.outputs[0].name, name, float(threshold), src.mask_rule),
        parity={"max_abs_dprob": dprob, "images": check_images, "reference": str(onnx_in)},
        **{**inherited(src.manifest), "threshold": float(threshold)},
    )
    return MaskResult(out_path, float(threshold), src.outputs[0].name, name, dprob)


def serving_record(prob: str, mask: str | None, threshold: float, mask_rule: dict[str, Any] | None) -> dict[str, Any]:
    """What a served graph does with the operating point and what it leaves to the caller (for manifests)."""
    return {
        "outputs": {prob: "defect probability, float", **({mask: "uint8 mask, 1 = defect"} if mask else {})},
        "applied_in_graph": f"{mask} = uint8({prob} >= {threshold!r})" if mask else None,
        "left_to_caller": {
            "mask_rule": mask_rule,
            "what": ("the mask rule: blobs grown over pixels >= mask_rule.grow from the thresholded seeds "
                     "(hysteresis), then blobs with fewer than mask_rule.min_area seed pixels dropped "
                     "(edgeseg.postprocess.MaskRule.apply)") if mask_rule else "nothing: the model has no mask rule",
        },
    }


def check_mask_model(reference: str | Path, model, threshold: float, name: str = MASK_NAME,
                     count: int = CHECK_IMAGES) -> float:
    """Run ``reference`` and the in-memory mask ``model`` on ``count`` generated images with ONNX Runtime;
    the largest |Δprob| between them, or :class:`EdgesegError` when they differ or the mask is not
    ``prob >= threshold``."""
    from edgeseg.bench.harness import bench_images

    ort = require("onnxruntime")
    if count < 1:
        return 0.0
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: INT8 graphs log a constant-folding warning per Q/DQ scale
    ref = ort.InferenceSession(str(reference), sess_options=opts, providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    h, w = ref.get_inputs()[0].shape[1:3]  # a model exported for a line's H×W is not square
    images = bench_images(count, (int(h), int(w)), seed=11).astype(np.float32)[..., None]
    feed = {ref.get_inputs()[0].name: images}
    (p_ref,) = ref.run(None, feed)[:1]
    p_new, mask = new.run(None, feed)
    dprob = float(np.max(np.abs(p_new.astype(np.float32) - p_ref.astype(np.float32))))
    if dprob > 1e-6:
        raise EdgesegError(f"the mask model's probabilities differ from {reference} by {dprob:.1e}; nothing written")
    if mask.dtype != np.uint8 or not np.array_equal(mask, (p_new >= p_new.dtype.type(threshold)).astype(np.uint8)):
        raise EdgesegError(f"the {name} output is not prob >= {threshold} on generated images; nothing written")
    return dprob


def tensorrt_violations(model) -> list:
    """TensorRT rule violations of a mask model (a path or ModelProto), less the two edgeseg I/O-contract
    rules a mask output breaks by design (``io-count``: two outputs; ``io-dtype``: the uint8 ``mask`` output,
    which onnx-tensorrt accepts as a network output). Empty when TensorRT's parser should take the file."""
    from edgeseg.export.tensorrt_check import check_tensorrt, load_onnx

    model = load_onnx(model) if isinstance(model, (str, Path)) else model
    uint8 = require("onnx").TensorProto.UINT8
    masks = {o.name for o in model.graph.output[1:] if o.type.tensor_type.elem_type == uint8}
    expected = {f"output '{m}'" for m in masks}
    return [v for v in check_tensorrt(model)
            if not (v.rule == "io-count" and " outputs" in v.message and len(model.graph.output) == 1 + len(masks))
            and not (v.rule == "io-dtype" and v.node in expected)]
