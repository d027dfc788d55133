"""A DeepStream Gst-nvinfer config (and labels file) that runs an edgeseg model as a semantic segmenter.

``export_deepstream("runs/demo/model.onnx", "deploy/deepstream")`` writes a self-contained folder:

    config_infer_primary_edgeseg.txt   the [property] group nvinfer reads (GLib key file)
    labels.txt                         the class names
    model.onnx (+ model.onnx.json)     the model it names (an engine: the engine and its source ONNX)
    manifest.json

Each key, from NVIDIA's Gst-nvinfer documentation (docs.nvidia.com/metropolis/deepstream/dev-guide/text/
DS_plugin_gst-nvinfer.html, "Gst-nvinfer Property Group Supported Keys"), the parser that reads them
(sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.{h,cpp}) and the segmentation post-processor
(sources/libs/nvdsinfer/nvdsinfer_context_impl_output_parsing.cpp, ``SegmentPostprocessor::fillSegmentationOutput``),
in the layout of DeepStream's reference configs (e.g. deepstream-segmentation-test's
``dstest_segmentation_config_semantic.txt``, samples/configs/deepstream-app/``config_infer_primary*.txt``):

* ``network-type=2`` — segmentation (0 detector, 1 classifier, 2 segmentation, 3 instance segmentation).
* ``model-color-format=2`` — GRAY (0 RGB, 1 BGR, 2 GRAY): edgeseg models take one gray channel.
* ``net-scale-factor=1.0`` and ``offsets=0`` — nvinfer feeds ``y = net-scale-factor × (x − offsets[c])`` with x
  the 0..255 pixel; edgeseg models take raw 0..255 gray levels as float32 and normalise inside the graph, so
  the identity is right (any other scaling would move every level the model was trained on).
* ``network-input-order=1`` (NHWC; 0 is NCHW) with ``infer-dims=1;H;W`` — the model's input is (N, H, W, 1).
  ``infer-dims`` is always channel;height;width (the parser refuses anything but "[c;h;w]"); nvinfer reorders it
  to h;w;c for an NHWC input, and without it reads the network's width, height and channels from the binding
  as if it were CHW (width 1, 256 channels). ``uff-input-order`` is for UFF models only (UFF left TensorRT 10).
* ``onnx-file`` / ``model-engine-file`` — paths relative to this file. From an ONNX file nvinfer builds the
  engine on first start and saves it as ``<onnx-file>_b<batch-size>_gpu<gpu-id>_<fp32|fp16|int8>.engine``, the
  name the reference configs put in ``model-engine-file`` so later starts load it; from an edgeseg engine, that
  engine (built strongly typed by ``edgeseg build-engine``) with its ONNX beside it for a rebuild.
* ``network-mode`` — 0 FP32, 1 INT8, 2 FP16, from the file's precision. No ``int8-calib-file``: an edgeseg INT8
  file carries its scales in Q/DQ nodes (explicit quantization), there is no calibration table. Note nvinfer's
  builder logs "INT8 calibration file not specified. Trying FP16 mode" for network-mode=1 without one and builds
  with the FP16 flag; the Q/DQ nodes keep their layers INT8, but for an INT8 model the edgeseg engine
  (``--model engines/model.int8.engine``) is the file whose layer precisions were checked.
* ``batch-size`` — frames per inference; at most the engine profile's MAX (nvinfer refuses a larger one).
* ``output-blob-names`` — the probability output; nvinfer's segmentation parser reads the first output.
* ``segmentation-output-order=1`` — the output is NHWC (N, H, W, 1) too.
* ``segmentation-threshold`` — the model's fitted threshold. nvinfer marks a pixel with class c when its
  probability is strictly greater (``prob > segmentation-threshold``), edgeseg when ``prob >= threshold``; the
  key therefore holds the largest float32 below the threshold, so both select the same pixels. The mask rule
  (hysteresis, minimum blob area) is not nvinfer's: a probe on the segmentation meta applies it.
* ``labelfile-path`` — ``labels.txt``. nvinfer's segmentation map holds the output channel index c of each
  pixel above the threshold and -1 elsewhere; an edgeseg model has one channel, so class 0 is ``defect`` and
  background is the -1 that has no label (a ``background;defect`` file would name class 0 "background").
* ``gie-unique-id=1``, ``process-mode=1`` (primary: whole frames), ``gpu-id``, ``maintain-aspect-ratio=0``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.artifacts import atomic_dir, check_writable, manifest_path, sha256_file, write_manifest
from edgeseg.errors import EdgesegError
from edgeseg.serving.signature import Signature, read_signature

CONFIG_NAME = "config_infer_primary_edgeseg.txt"
LABELS_NAME = "labels.txt"
LABELS = ("defect",)
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}


@dataclass(frozen=True)
class DeepStreamResult:
    path: Path
    config: Path
    labels: Path
    properties: dict[str, str]


def nvinfer_threshold(threshold: float) -> float:
    """The ``segmentation-threshold`` that makes nvinfer's ``prob > t`` select edgeseg's ``prob >= threshold``
    pixels: the largest float32 below ``threshold`` (probabilities are float32, and so is nvinfer's copy)."""
    t = np.float32(threshold)
    return float(np.nextafter(t, np.float32(0.0)))


def engine_name(onnx_file: str, batch_size: int, gpu_id: int, precision: str) -> str:
    """The file nvinfer serializes the engine it builds from ``onnx_file`` to."""
    return f"{onnx_file}_b{batch_size}_gpu{gpu_id}_{precision}.engine"


def nvinfer_properties(sig: Signature, *, onnx_file: str | None, engine_file: str, batch_size: int,
                       gpu_id: int = 0) -> dict[str, str]:
    """The ``[property]`` keys for ``sig`` (see the module docstring), in file order."""
    if sig.precision not in NETWORK_MODE:
        raise EdgesegError(f"{sig.path} has precision {sig.precision!r}; nvinfer's network-mode knows fp32, fp16, int8")
    if len(sig.outputs) != 1 or sig.outputs[0].dtype != "FLOAT":
        names = ", ".join(f"{o.name} ({o.dtype})" for o in sig.outputs)
        raise EdgesegError(f"{sig.path} outputs {names}; nvinfer's segmentation parser reads one float probability "
                           "output and applies segmentation-threshold itself: export the model without a mask output")
    if sig.threshold is None:
        raise EdgesegError(f"{sig.path} has no fitted threshold in its manifest, and segmentation-threshold must be "
                           "the model's own: fit one with edgeseg operating-point")
    h, w = sig.image_size
    props = {
        "gpu-id": str(gpu_id),
        "gie-unique-id": "1",
        "process-mode": "1",
        "network-type": "2",
        "model-color-format": "2",
        "net-scale-factor": "1.0",
        "offsets": "0",
        "network-input-order": "1",
        "infer-dims": f"1;{h};{w}",
        "maintain-aspect-ratio": "0",
    }
    if onnx_file:
        props["onnx-file"] = onnx_file
    props.update({
        "model-engine-file": engine_file,
        "network-mode": str(NETWORK_MODE[sig.precision]),
        "batch-size": str(batch_size),
        "output-blob-names": sig.outputs[0].name,
        "segmentation-output-order": "1",
        "segmentation-threshold": repr(nvinfer_threshold(sig.threshold)),
        "labelfile-path": LABELS_NAME,
    })
    return props


def config_text(props: dict[str, str], sig: Signature) -> str:
    """The key file: a header saying where the values came from, then ``[property]``."""
    rule = sig.mask_rule
    head = [
        f"# Gst-nvinfer config for {sig.path.name} ({sig.precision}), written by edgeseg export-deepstream.",
        "# Input: raw 0..255 gray levels, NHWC (N, H, W, 1); the model normalises inside.",
        f"# segmentation-threshold is the float32 just below the fitted threshold {sig.threshold!r}: nvinfer keeps",
        "# prob > t, edgeseg prob >= threshold.",
        f"# Not applied by nvinfer (apply it on the segmentation meta): mask rule {rule}." if rule else
        "# The model has no mask rule beyond the threshold.",
    ]
    return "\n".join([*head, "[property]", *(f"{k}={v}" for k, v in props.items())]) + "\n"


def export_deepstream(model_path: str | Path, out: str | Path, *, batch_size: int = 1, gpu_id: int = 0,
                      force: bool = False) -> DeepStreamResult:
    """Write the nvinfer folder ``out`` for an edgeseg ONNX file or engine (see the module docstring); an
    existing ``out`` is replaced only with ``force``."""
    from edgeseg.locks import lock

    sig = read_signature(model_path)
    if batch_size < 1:
        raise EdgesegError(f"--batch-size must be at least 1, got {batch_size}")
    if gpu_id < 0:
        raise EdgesegError(f"--gpu-id must be >= 0, got {gpu_id}")
    if sig.profile and not sig.profile[0] <= batch_size <= sig.profile[2]:
        lo, _, hi = sig.profile
        raise EdgesegError(f"--batch-size {batch_size} is outside {sig.path}'s optimisation profile "
                           f"(batch {lo}..{hi}); "
                           "nvinfer refuses an engine that cannot run its batch-size")
    onnx_file = sig.source_onnx.name
    if sig.kind == "engine":
        engine_file = sig.path.name
        if engine_file == onnx_file:
            raise EdgesegError(f"{sig.path} and its ONNX file have the same name; rename one")
    else:
        engine_file = engine_name(onnx_file, batch_size, gpu_id, sig.precision)
    props = nvinfer_properties(sig, onnx_file=onnx_file, engine_file=engine_file, batch_size=batch_size, gpu_id=gpu_id)

    out = Path(out)
    check_writable(out / CONFIG_NAME)
    out.parent.mkdir(parents=True, exist_ok=True)
    with lock(out):
        if out.exists() and not force:
            raise EdgesegError(f"{out} already exists: pass --force to replace it")
        with atomic_dir(out) as tmp:
            files = [sig.source_onnx] + ([sig.path] if sig.kind == "engine" else [])
            for f in files:
                shutil.copyfile(f, tmp / f.name)
                if manifest_path(f).is_file():
                    shutil.copyfile(manifest_path(f), tmp / manifest_path(f).name)
            (tmp / CONFIG_NAME).write_text(config_text(props, sig))
            (tmp / LABELS_NAME).write_text("\n".join(LABELS) + "\n")
            write_manifest(
                tmp, "deepstream-config",
                config={"batch_size": batch_size, "gpu_id": gpu_id, "properties": props},
                inputs={str(f): sha256_file(f) for f in files},
                files={"config": CONFIG_NAME, "labels": LABELS_NAME, "onnx": onnx_file,
                       "engine": engine_file if sig.kind == "engine" else None},
                precision=sig.precision, threshold=sig.threshold, mask_rule=sig.mask_rule,
                nvinfer_threshold=nvinfer_threshold(sig.threshold),
            )
    return DeepStreamResult(out, out / CONFIG_NAME, out / LABELS_NAME, props)
