"""Keras → ONNX with tf2onnx, and a parity check that refuses an export that changes the answers.

tf2onnx cannot read a Keras 3 model's signature by itself (onnx/tensorflow-onnx#2329), so the input
signature is explicit: ``image`` (None, H, W, 1) float32 gray levels (8-bit scale: a 16-bit camera's pixels
/ 257, :mod:`edgeseg.data.depth`), dynamic batch, fixed image shape — square (``image_size``) or a line's
own H×W (``shape``), the size TensorRT profiles and the camera use; images of other sizes are tiled
(:mod:`edgeseg.tiling`). The exported file is checked against Keras on *generated* images of that shape
(never test data) and only renamed into place when max |Δprob| ≤ ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import atomic_path, read_manifest, sha256_file, write_manifest
from edgeseg.data.depth import describe as describe_scaling
from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent
from edgeseg.shapes import check_shape, format_shape
from edgeseg.types import Precision

DEFAULT_OPSET = 17
#: The newest opset tf2onnx converts to (ONNX's own newest is ahead of it).
MAX_OPSET = 18
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    parity_images: int


def check_export(opset: int, image_size: int, shape: tuple[int, int] | None = None) -> None:
    """``--opset`` and ``--image-size`` in one line if wrong: the parity check draws images of that size with
    the generator, whose sides are :data:`~edgeseg.data.synth.MIN_SIZE`..:data:`~edgeseg.data.synth.MAX_SIZE`
    (a larger side would take gigabytes per parity image, and no camera line takes it whole)."""
    from edgeseg.data.synth import MAX_SIZE, MIN_SIZE
    from edgeseg.validate import whole

    whole("--opset", opset, 17, MAX_OPSET)
    if shape is None:
        whole("--image-size", image_size, MIN_SIZE, MAX_SIZE, unit="pixels")
    else:
        check_shape(shape)


def source_manifest(model_path: str | Path) -> dict[str, Any]:
    """The manifest beside a model artifact, or {} when there is none (a hand-made model). A manifest that
    cannot vouch for the file (bad JSON, no sha256 or another one: :func:`~edgeseg.artifacts.read_manifest`)
    is refused: a derived model would inherit a threshold and mask rule fitted for another file."""
    return read_manifest(model_path) or {}


def inherited(src: dict[str, Any]) -> dict[str, Any]:
    """What a derived artifact copies from its source's manifest (threshold, mask rule, model summary, the
    input scaling)."""
    return {k: src[k] for k in ("threshold", "mask_rule", "model", "input_scaling") if k in src}


def as_shape(image_size: int | tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    """A side (square) or (H, W) as (H, W)."""
    if np.ndim(image_size) == 0:
        return int(image_size), int(image_size)  # type: ignore[arg-type]
    h, w = image_size  # type: ignore[misc]
    return int(h), int(w)


def parity_images(image_size: int | tuple[int, int], count: int, seed: int) -> np.ndarray:
    """Generated images for parity checks (synth, default preset), (count, H, W) uint8: drawn square at the
    longer side, then cropped to (H, W)."""
    from edgeseg.data.synth import generate_batch, preset

    h, w = as_shape(image_size)
    side = max(h, w)
    images, _ = generate_batch(np.random.default_rng(seed), sized(preset("test"), side), count)
    return images if (h, w) == (side, side) else np.ascontiguousarray(images[:, :h, :w])


def sized(cfg, image_size: int):
    """``cfg`` at another image size, defect sizes scaled with it (the presets are for 256×256)."""
    if image_size == cfg.image_size:
        return cfg
    f = image_size / cfg.image_size
    lo, hi = cfg.defect_size
    lo, hi = max(2, round(lo * f)), max(2, min(round(hi * f), image_size // 2))
    return cfg.replace(image_size=image_size, defect_size=(min(lo, hi), hi))


def export_onnx(model_path: str | Path, out: str | Path, *, image_size: int = 256, opset: int = DEFAULT_OPSET,
                parity_count: int = 8, parity_seed: int = 20240, tolerance: float = PARITY_TOLERANCE,
                progress: Progress = silent, shape: tuple[int, int] | None = None) -> ExportResult:
    """Export ``model_path`` (.keras) to ``out`` (.onnx) for ``image_size``² images — or ``shape`` (H, W) — check
    parity at that shape, write the manifest (shape, the network's size multiple, the input scaling).

    Raises :class:`EdgesegError` when the model cannot be read or does not take that shape (a side that is not a
    multiple of what its pooling or folding needs), the conversion fails, or the ONNX file differs from Keras by
    more than ``tolerance``; nothing is left at ``out`` then.
    """
    from edgeseg.runners.keras import KerasRunner
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    model_path, out = Path(model_path), Path(out)
    if not model_path.is_file():
        raise EdgesegError(f"model file not found: {model_path}")
    check_export(opset, image_size, shape)
    square = shape is None
    h, w = as_shape(image_size) if square else as_shape(shape)
    src = source_manifest(model_path)  # refused now, before any work, if it cannot vouch for the model
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    progress(0, 3, "loading Keras model")
    keras_runner = KerasRunner(model_path).activate()
    fixed = keras_runner.image_shape
    if fixed and tuple(fixed) != (h, w):
        fix = f"--image-size {fixed[0]}" if fixed[0] == fixed[1] else f"--shape {format_shape(fixed)}"
        raise EdgesegError(f"{model_path} takes {fixed[0]}x{fixed[1]} images; pass {fix}")
    multiple = keras_runner.size_multiple
    check_shape((h, w), multiple, "--image-size" if square else "--shape", model_path.name)
    model = keras_runner.model
    progress(1, 3, "converting with tf2onnx")
    spec = (tf.TensorSpec((None, h, w, 1), tf.float32, name="image"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as e:  # tf2onnx raises many kinds; fall back to tracing a tf.function
        try:
            fn = tf.function(lambda image: model(image, training=False), input_signature=spec)
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
        except Exception as e2:
            raise EdgesegError(f"tf2onnx could not convert {model_path}: {e}; from_function: {e2}") from e2
    _name_output(proto)

    images = parity_images((h, w), parity_count, parity_seed)
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        progress(2, 3, "parity check against Keras")
        with OnnxRuntimeRunner(tmp, io_binding=False) as ort_runner:
            diff = max_abs_diff(keras_runner, ort_runner, images)
        if not diff <= tolerance:
            raise EdgesegError(
                f"ONNX export of {model_path} differs from Keras by max |Δprob| = {diff:.2e} "
                f"(> {tolerance:.0e}); not written")
        onnx_sha = sha256_file(tmp)
    keras_runner.deactivate()
    write_manifest(
        out, "onnx",
        config={"opset": opset, "image_size": h if h == w else None, "shape": [h, w], "size_multiple": multiple,
                "input": "image", "dynamic_batch": True},
        inputs={str(model_path): sha256_file(model_path)},
        precision=Precision.fp32.value,
        parity={"max_abs_diff": diff, "images": parity_count, "seed": parity_seed, "tolerance": tolerance,
                "reference": "keras"},
        sha256=onnx_sha,
        **{**inherited(src), "input_scaling": describe_scaling()},
    )
    progress(3, 3, f"max |Δprob| {diff:.1e}")
    return ExportResult(out, diff, parity_count)


def max_abs_diff(reference, candidate, images: np.ndarray, batch: int = 8) -> float:
    """max |Δprob| between two active runners over ``images``."""
    worst = 0.0
    for i in range(0, len(images), batch):
        a = reference.infer(images[i:i + batch])
        b = candidate.infer(images[i:i + batch])
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _name_output(proto) -> None:
    """Give the graph output a stable name (``prob``): tf2onnx names it after the last Keras layer."""
    graph = proto.graph
    if len(graph.output) != 1 or graph.output[0].name == "prob":
        return
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["prob" if o == old else o for o in node.output]
        node.input[:] = ["prob" if i == old else i for i in node.input]
    graph.output[0].name = "prob"
