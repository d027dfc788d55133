"""A Triton Inference Server model-repository entry for an edgeseg ONNX file or TensorRT engine.

``export_triton("runs/demo/model.int8.onnx", "deploy/triton")`` writes

    deploy/triton/model_int8/config.pbtxt      the model configuration (protobuf text format)
    deploy/triton/model_int8/1/model.onnx      version 1 (an engine: 1/model.plan)
    deploy/triton/model_int8/manifest.json     what was written from what, and the operating point

and every field of ``config.pbtxt`` is read from the model, not assumed. Sources, Triton's documentation
(github.com/triton-inference-server/server, docs/user_guide/) and its schema (common/protobuf/model_config.proto,
shipped as ``tritonclient.grpc.model_config_pb2``, which the tests parse the file back with):

* ``platform`` — ``onnxruntime_onnx`` for ONNX, ``tensorrt_plan`` for engines; the version folder holds
  ``model.onnx`` / ``model.plan``, the backends' default file names (model_configuration.md, "Name, Platform
  and Backend"; model_repository.md, "Model Files": TensorRT and ONNX models).
* ``max_batch_size`` with ``dims`` that leave the batch axis out — "If the model's batch dimension is the
  first dimension, and all inputs and outputs to the model have this batch dimension, then Triton can use its
  dynamic batcher … max_batch_size should be set to a value greater-or-equal-to 1"; the dims then "do not
  include the batch dimension" (model_configuration.md, "Maximum Batch Size", "Inputs and Outputs"). For an
  engine it cannot exceed the MAX of the engine's optimisation profile: the TensorRT backend runs batches only
  inside the profile it was built with.
* ``input`` / ``output`` ``name``, ``data_type`` (``TYPE_FP32``, ``TYPE_UINT8``, …, the table "Datatypes" of
  model_configuration.md) and ``dims`` from the ONNX graph (an engine's from the ONNX it was built from).
* ``instance_group { count kind }`` — how many copies of the model run at once and where, ``KIND_GPU`` or
  ``KIND_CPU`` (model_configuration.md, "Instance Groups"). Plans run on GPUs only.
* ``dynamic_batching { preferred_batch_size max_queue_delay_microseconds }`` — "preferred_batch_size … the
  batch sizes that the dynamic batcher should attempt to create", and how long a request may wait for others
  (model_configuration.md / batcher.md, "Dynamic Batcher": "Preferred Batch Sizes", "Delayed Batching"). The
  preferred size defaults to where ``edgeseg bench`` measured that throughput stops growing (``--bench``:
  its ``saturation``), else to the engine profile's OPT (the batch its kernels were tuned for), else 8.
* ``cc_model_filenames`` — a map from CUDA compute capability to the file in the version folder that serves
  GPUs of that capability (model_config.proto, ``ModelConfig.cc_model_filenames``; model_configuration.md,
  "cc_model_filenames"), keyed by the capability recorded in the engine's manifest: a plan runs only on the
  architecture that built it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from edgeseg.artifacts import atomic_dir, check_writable, read_json, sha256_file, write_manifest
from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.serving.signature import Signature, Tensor, read_signature

DEFAULT_MAX_BATCH = 32
DEFAULT_PREFERRED = 8
DEFAULT_QUEUE_DELAY_US = 100
VERSION = "1"

#: ONNX element type → Triton data type (model_configuration.md, "Datatypes").
DATA_TYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16", "DOUBLE": "TYPE_FP64",
              "UINT8": "TYPE_UINT8", "INT8": "TYPE_INT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
              "BOOL": "TYPE_BOOL"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class InstanceKind(str, Enum):
    """Where Triton runs the model's instances: ``auto`` is GPU for plans, CPU for ONNX files."""

    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


@dataclass(frozen=True)
class TritonOptions:
    name: str | None = None
    max_batch: int | None = None
    instances: int = 1
    kind: InstanceKind = InstanceKind.auto
    preferred_batch: tuple[int, ...] | None = None
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    bench: Path | None = None
    mask_output: bool = False
    force: bool = False


@dataclass(frozen=True)
class TritonModel:
    """The resolved configuration of one repository entry (what ``config.pbtxt`` says)."""

    name: str
    platform: str
    filename: str
    max_batch: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    instances: int
    kind: str
    preferred: tuple[int, ...]
    preferred_source: str
    max_queue_delay_us: int
    cc_model_filenames: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TritonResult:
    path: Path
    model: TritonModel
    mask_output: str | None


def model_name_for(path: str | Path) -> str:
    """``runs/demo/model.int8.onnx`` → ``model_int8``; ``engines/model.int8.engine`` → ``model_int8_plan``."""
    p = Path(path)
    stem = p.name.rsplit(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "model"
    return f"{name}_plan" if p.suffix in (".engine", ".plan") else name


def plan_model(sig: Signature, options: TritonOptions = TritonOptions(), outputs: tuple[Tensor, ...] | None = None
               ) -> TritonModel:
    """Check ``options`` against the model and resolve every field (see the module docstring)."""
    engine = sig.kind == "engine"
    name = options.name or model_name_for(sig.path)
    if not _NAME.match(name):
        raise EdgesegError(f"--name {name!r}: use letters, digits, '_', '.' and '-' (it is a folder and a URL part)")
    if options.instances < 1:
        raise EdgesegError(f"--instances must be at least 1, got {options.instances}")
    if options.max_queue_delay_us < 0:
        raise EdgesegError(f"--max-queue-delay-us must be >= 0, got {options.max_queue_delay_us}")
    kind = InstanceKind(options.kind)
    if engine and kind == InstanceKind.cpu:
        raise EdgesegError(f"{sig.path} is a TensorRT engine, which runs on a GPU only: drop --instance-kind cpu")
    kind = InstanceKind.gpu if (engine or kind == InstanceKind.gpu) else InstanceKind.cpu
    lo, opt, hi = sig.profile or (1, None, None)

    preferred, source = _preferred(sig, options)
    if options.max_batch is not None:
        max_batch = options.max_batch
        if max_batch < 1:
            raise EdgesegError(f"--max-batch must be at least 1, got {max_batch}")
    else:
        max_batch = hi if engine else max(DEFAULT_MAX_BATCH, *(preferred or (0,)))
    if engine and not lo <= max_batch <= hi:
        raise EdgesegError(f"--max-batch {max_batch} is outside {sig.path}'s optimisation profile (batch {lo}..{hi}); "
                           f"Triton cannot run batches the engine was not built for: rebuild it with "
                           f"edgeseg build-engine --batch {lo},{opt},{max(max_batch, opt)}")
    if preferred is None:
        preferred, source = (((opt,), "engine profile OPT") if engine
                             else ((min(DEFAULT_PREFERRED, max_batch),), "default"))
    bad = [b for b in preferred if not lo <= b <= max_batch]
    if bad:
        raise EdgesegError(f"preferred batch size(s) {', '.join(map(str, bad))} ({source}) are outside "
                           f"{lo}..{max_batch} (max batch {max_batch}); pass --preferred-batch or --max-batch")
    return TritonModel(
        name=name, platform="tensorrt_plan" if engine else "onnxruntime_onnx",
        filename="model.plan" if engine else "model.onnx", max_batch=max_batch,
        inputs=(sig.input,), outputs=outputs or sig.outputs, instances=options.instances,
        kind=f"KIND_{kind.value.upper()}", preferred=tuple(sorted(set(preferred))), preferred_source=source,
        max_queue_delay_us=options.max_queue_delay_us,
        cc_model_filenames={sig.compute_capability: "model.plan"} if engine and sig.compute_capability else {},
    )


def _preferred(sig: Signature, options: TritonOptions) -> tuple[tuple[int, ...] | None, str]:
    if options.preferred_batch:
        return tuple(int(b) for b in options.preferred_batch), "--preferred-batch"
    if options.bench is not None:
        return (saturation_batch(options.bench, sig.path, "tensorrt" if sig.kind == "engine" else "onnxruntime"),), \
            f"saturation in {options.bench}"
    return None, ""


def saturation_batch(bench: str | Path, model: str | Path, backend: str) -> int:
    """The batch size after which ``edgeseg bench`` measured images/s growing less than 5 % for ``model``
    (its ``saturation`` entry; the same path, else the same file name, preferring ``backend``'s row)."""
    from edgeseg.bench.report import saturation

    bench, model = Path(bench), Path(model)
    if not bench.is_file():
        raise EdgesegError(f"bench report not found: {bench} (write one with edgeseg bench --json)")
    try:
        doc = read_json(bench)
    except (ValueError, OSError) as e:
        raise EdgesegError(f"{bench} is not a bench report (bad JSON: {e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("saturation", doc.get("rows")), list):
        raise EdgesegError(f"{bench} is not a bench report (no saturation or rows); write one with "
                           "edgeseg bench --json")
    entries = doc.get("saturation") or saturation(doc.get("rows") or [])
    same = [e for e in entries if _same_file(e.get("model"), model)] or \
           [e for e in entries if Path(str(e.get("model"))).name == model.name]
    same = sorted(same, key=lambda e: e.get("backend") != backend)
    if not same or not isinstance(same[0].get("saturation_batch"), int):
        known = ", ".join(sorted({str(e.get("model")) for e in entries})) or "none"
        raise EdgesegError(f"{bench} has no saturation entry for {model} (it measured: {known}); bench this model "
                           "or pass --preferred-batch")
    return int(same[0]["saturation_batch"])


def _same_file(recorded: Any, model: Path) -> bool:
    try:
        return Path(str(recorded)).resolve() == model.resolve()
    except OSError:
        return False


def config_text(model: TritonModel) -> str:
    """``config.pbtxt`` of ``model``, in protobuf text format."""
    lines = [f"name: {_q(model.name)}", f"platform: {_q(model.platform)}", f"max_batch_size: {model.max_batch}"]
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        lines.append(f"{kind} [")
        for i, t in enumerate(tensors):
            if t.dtype not in DATA_TYPES:
                raise EdgesegError(f"{kind} {t.name} is {t.dtype}, which Triton has no data type for")
            lines += ["  {", f"    name: {_q(t.name)}", f"    data_type: {DATA_TYPES[t.dtype]}",
                      f"    dims: [ {', '.join(map(str, t.shape))} ]", "  }" + ("," if i < len(tensors) - 1 else "")]
        lines.append("]")
    lines += ["instance_group [", "  {", f"    count: {model.instances}", f"    kind: {model.kind}", "  }", "]",
              "dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, model.preferred))} ]",
              f"  max_queue_delay_microseconds: {model.max_queue_delay_us}", "}"]
    if model.cc_model_filenames:
        lines.append(f"default_model_filename: {_q(model.filename)}")
        for cc, filename in model.cc_model_filenames.items():
            lines.append(f"cc_model_filenames {{ key: {_q(cc)} value: {_q(filename)} }}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def export_triton(model_path: str | Path, repo: str | Path, options: TritonOptions = TritonOptions()) -> TritonResult:
    """Write ``repo/<name>/`` for ``model_path`` (ONNX file or edgeseg engine); see the module docstring.

    An existing entry is replaced only with ``options.force``. ``options.mask_output`` (ONNX only) serves the
    graph with the fitted threshold built in (:mod:`edgeseg.serving.mask`): outputs ``prob`` and ``mask``.
    """
    from edgeseg.locks import lock
    from edgeseg.serving.mask import MASK_NAME, check_mask_model, serving_record, with_mask

    sig = read_signature(model_path)
    mask = None
    if options.mask_output:
        if sig.kind == "engine":
            raise EdgesegError(f"{model_path} is an engine, whose graph is fixed when it is built (and edgeseg "
                               "build-engine builds one-output graphs only): serve its probabilities and threshold "
                               "them in the client at the manifest's threshold, or serve the ONNX file with "
                               "--mask-output")
        if sig.threshold is None:
            raise EdgesegError(f"{model_path} has no fitted threshold in its manifest, so --mask-output has nothing to "
                               "apply: fit one with edgeseg operating-point")
        if len(sig.outputs) != 1:
            raise EdgesegError(f"{model_path} already has {len(sig.outputs)} outputs; --mask-output adds a mask to "
                               "a model with one probability output")
        mask = MASK_NAME
        outputs = (*sig.outputs, Tensor(MASK_NAME, "UINT8", sig.outputs[0].shape))
    else:
        outputs = sig.outputs
    model = plan_model(sig, options, outputs)
    repo = Path(repo)
    entry = repo / model.name
    check_writable(entry / "config.pbtxt")
    repo.mkdir(parents=True, exist_ok=True)
    with lock(entry):
        if entry.exists() and not options.force:
            raise EdgesegError(f"{entry} already exists: pass --force to replace it, or --name another")
        with atomic_dir(entry) as tmp:
            version = tmp / VERSION
            version.mkdir()
            if mask:
                onnx = require("onnx")
                graph = with_mask(onnx.load(str(sig.path)), sig.threshold, mask, sig.mask_rule)
                check_mask_model(sig.path, graph, sig.threshold, mask)
                onnx.save(graph, str(version / model.filename))
            else:
                shutil.copyfile(sig.path, version / model.filename)
            (tmp / "config.pbtxt").write_text(config_text(model))
            write_manifest(
                tmp, "triton-model",
                config={"name": model.name, "platform": model.platform, "max_batch_size": model.max_batch,
                        "instance_group": {"count": model.instances, "kind": model.kind},
                        "preferred_batch_size": list(model.preferred), "preferred_source": model.preferred_source,
                        "max_queue_delay_microseconds": model.max_queue_delay_us,
                        "cc_model_filenames": model.cc_model_filenames, "mask_output": mask},
                inputs={str(sig.path): sha256_file(sig.path)},
                files={"config": "config.pbtxt", "model": f"{VERSION}/{model.filename}"},
                precision=sig.precision, source_onnx=str(sig.source_onnx),
                profile=list(sig.profile) if sig.profile else None,
                serving=serving_record(sig.outputs[0].name, mask, sig.threshold, sig.mask_rule)
                if sig.threshold is not None else None,
                **{k: v for k, v in (("threshold", sig.threshold), ("mask_rule", sig.mask_rule)) if v is not None},
            )
    return TritonResult(entry, model, mask)
