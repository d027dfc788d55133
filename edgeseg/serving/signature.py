"""What a server must know about a model file, read from the file itself: names, types, shapes, batch range.

An ONNX file says it in its graph (``onnx.load``). A TensorRT engine is opaque without TensorRT, so its batch
profile and compute capability come from the manifest ``edgeseg build-engine`` wrote beside it (``profile``,
``tensorrt.compute_capability``) and its output names and shapes from the ONNX file it was built from
(``onnx.path``), which must still be there and unchanged. The operating point (``threshold``, ``mask_rule``)
comes from the manifest in both cases.

    sig = read_signature("runs/demo/model.onnx")
    sig.input.name, sig.input.shape        # 'image', (256, 256, 1)  (the batch axis is left out)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.artifacts import read_manifest, sha256_file
from edgeseg.deps import require
from edgeseg.errors import EdgesegError

ENGINE_SUFFIXES = (".engine", ".plan")
_CONTRACT = "an edgeseg model takes one input, image (N, H, W, 1) float32 raw gray levels, with a dynamic batch N"


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: ``dtype`` is the ONNX element type's name (FLOAT, FLOAT16, UINT8, ...),
    ``shape`` the shape of one item (the batch axis left out)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """A model file as a server sees it. ``profile`` (MIN, OPT, MAX batch) and ``compute_capability`` are set
    for engines only; ``source_onnx`` is the ONNX file itself, or the one an engine was built from."""

    path: Path
    kind: str  # "onnx" | "engine"
    input: Tensor
    outputs: tuple[Tensor, ...]
    precision: str
    source_onnx: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    profile: tuple[int, int, int] | None = None
    compute_capability: str | None = None

    @property
    def threshold(self) -> float | None:
        value = self.manifest.get("threshold")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def mask_rule(self) -> dict[str, Any] | None:
        rule = self.manifest.get("mask_rule")
        return dict(rule) if isinstance(rule, dict) else None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.input.shape[0], self.input.shape[1]


def is_engine(path: str | Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


def read_signature(path: str | Path) -> Signature:
    """The :class:`Signature` of an ONNX file or an edgeseg engine; :class:`EdgesegError` when the file is
    missing, is not an edgeseg model, or is an engine whose manifest or source ONNX cannot vouch for it."""
    path = Path(path)
    if path.is_dir():
        raise EdgesegError(f"{path} is a folder; pass a model file (.onnx or .engine)")
    if not path.is_file():
        raise EdgesegError(f"model not found: {path}")
    return _engine(path) if is_engine(path) else _onnx(path)


def _onnx(path: Path) -> Signature:
    from edgeseg.export.graph import graph_precision
    from edgeseg.export.tensorrt_check import load_onnx

    model = load_onnx(path)
    image, outputs = onnx_io(model, path)
    meta = read_manifest(path) or {}
    precision = meta.get("precision") or graph_precision(model).value
    return Signature(path, "onnx", image, outputs, str(precision), path, meta)


def onnx_io(model, path: str | Path) -> tuple[Tensor, tuple[Tensor, ...]]:
    """(input, outputs) of an in-memory ONNX model, checked against edgeseg's I/O contract."""
    onnx = require("onnx")
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]  # old IRs list initializers as inputs
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise EdgesegError(f"{path} has {len(inputs)} inputs ({names}); {_CONTRACT}")
    if not graph.output:
        raise EdgesegError(f"{path} has no outputs")
    image = _tensor(onnx, inputs[0], path, "input")
    if image.dtype != "FLOAT" or len(image.shape) != 3 or image.shape[2] != 1:
        raise EdgesegError(f"{path} input {image.name} is {image.dtype} (N, {', '.join(map(str, image.shape))}); "
                           f"{_CONTRACT}")
    return image, tuple(_tensor(onnx, o, path, "output") for o in graph.output)


def _tensor(onnx, value_info, path, kind: str) -> Tensor:
    ttype = value_info.type.tensor_type
    dims = list(ttype.shape.dim) if ttype.HasField("shape") else []
    if len(dims) < 2:
        raise EdgesegError(f"{path} {kind} {value_info.name} has no batch axis and item shape; {_CONTRACT}")
    if dims[0].dim_value > 0:
        raise EdgesegError(f"{path} {kind} {value_info.name} has a fixed batch of {dims[0].dim_value}; servers batch "
                           "requests along a dynamic first axis: re-export it with edgeseg export")
    item = tuple(d.dim_value for d in dims[1:])
    if any(d <= 0 for d in item):
        shown = ", ".join(d.dim_param or "?" if d.dim_value <= 0 else str(d.dim_value) for d in dims[1:])
        raise EdgesegError(f"{path} {kind} {value_info.name} is shaped (N, {shown}); servers need every axis but "
                           "the batch fixed")
    return Tensor(value_info.name, onnx.TensorProto.DataType.Name(ttype.elem_type), item)


def _rebuild(path: Path) -> str:
    return f"rebuild it with edgeseg build-engine --model MODEL.onnx --out {path.parent}"


def _engine(path: Path) -> Signature:
    meta = read_manifest(path)
    if meta is None:
        raise EdgesegError(f"{path} has no manifest ({path.name}.json), which holds its batch profile, compute "
                           f"capability and source ONNX; {_rebuild(path)}")
    profile, onnx_entry = meta.get("profile"), meta.get("onnx")
    cc = (meta.get("tensorrt") or {}).get("compute_capability")
    batch = _profile(profile)
    if batch is None or not cc or not isinstance(onnx_entry, dict) or not onnx_entry.get("path"):
        raise EdgesegError(f"{path}.json is not an engine manifest (it needs profile, tensorrt.compute_capability "
                           f"and onnx.path); {_rebuild(path)}")
    source = _source_onnx(path, str(onnx_entry["path"]))
    expected = onnx_entry.get("sha256")
    if expected and sha256_file(source) != expected:
        raise EdgesegError(f"{source} changed after {path} was built from it, so its output names and shapes may "
                           f"not be the engine's; {_rebuild(path)}")
    src = _onnx(source)
    item = tuple(int(d) for d in profile["max"][1:])
    if profile.get("input") != src.input.name or item != src.input.shape:
        raise EdgesegError(f"{path}.json profiles input {profile.get('input')!r} {item}, but {source} takes "
                           f"{src.input.name!r} {src.input.shape}; {_rebuild(path)}")
    precision = str(meta.get("precision") or src.precision)
    return Signature(path, "engine", src.input, src.outputs, precision, source, meta, batch, str(cc))


def _profile(profile: Any) -> tuple[int, int, int] | None:
    try:
        lo, opt, hi = (int(profile[k][0]) for k in ("min", "opt", "max"))
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return (lo, opt, hi) if 1 <= lo <= opt <= hi else None


def _source_onnx(engine: Path, recorded: str) -> Path:
    """The ONNX file an engine was built from: the manifest's path as recorded (relative to where the build
    ran), else beside the engine."""
    for candidate in (Path(recorded), engine.parent / Path(recorded).name):
        if candidate.is_file():
            return candidate
    raise EdgesegError(f"{engine} was built from {recorded} (its manifest's onnx.path), which is not here; an "
                       "engine's output names and shapes are read from that ONNX file: put it back, or "
                       f"{_rebuild(engine)}")
