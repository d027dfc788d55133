"""Static check of an ONNX file against what TensorRT's ONNX parser and strongly typed networks accept.

A file TensorRT refuses is otherwise found out at ``build-engine``, on the device, after the quantization
work is done. No TensorRT is needed here: the rules are data (``tensorrt_rules.json``: onnx-tensorrt's
operator support matrix per TensorRT major, the Q/DQ rules of explicit quantization, edgeseg's I/O
contract), each citing its source, and a new TensorRT release is a new entry there, not new code.

    >>> for v in check_tensorrt("runs/demo/model.int8.onnx"):
    ...     print(v.line("model.int8.onnx"))
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.export.graph import load_onnx

RULES_FILE = Path(__file__).with_name("tensorrt_rules.json")
MAJORS: tuple[str, ...] = ("10", "11")
_DEFAULT_DOMAINS = ("", "ai.onnx")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``node`` says what it is about: ``node 'name'``, ``tensor 'name'``, ``input 'name'``
    or ``model``; ``fix`` says what to do about it."""

    node: str
    rule: str
    message: str
    fix: str

    def line(self, file: str) -> str:
        return f"{file}: {self.node}: {self.rule}: {self.message}: {self.fix}"


@functools.cache
def rules() -> dict[str, Any]:
    """The rule table (see the ``about`` entry of ``tensorrt_rules.json``)."""
    return json.loads(RULES_FILE.read_text(encoding="utf-8"))


def rule_ids() -> tuple[str, ...]:
    return tuple(rules()["rules"])


def majors_text(majors: tuple[str, ...] = MAJORS) -> str:
    """``("10", "11")`` → ``"10.x and 11.x"``."""
    names = [f"{m}.x" for m in majors]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def operator_table(major: str) -> dict[str, dict[str, Any]]:
    """onnx-tensorrt's support matrix for one TensorRT major: the shared rows with the major's own on top."""
    data = rules()
    if major not in data["majors"]:
        raise EdgesegError(f"no TensorRT rules for major {major!r}; known: {', '.join(data['majors'])}")
    own = data["majors"][major]
    table = {**data["operators"], **own.get("operators", {})}
    for op in own.get("removed_operators", []):
        table.pop(op, None)
    return table


def tensor_types(model) -> dict[str, int]:
    """Element type (``onnx.TensorProto`` enum) of every tensor whose type is known: graph inputs and outputs,
    value_info after ONNX shape inference, initializers and Constant outputs."""
    onnx = require("onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference rejects still has its declared types worth checking
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)
             if v.type.tensor_type.elem_type}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.attribute:
            types[node.output[0]] = _constant_type(node.attribute[0])
    return {name: t for name, t in types.items() if t}


def constants(model) -> dict[str, np.ndarray]:
    """Values known before run time: initializers and Constant outputs (what the parser turns into weights)."""
    onnx = require("onnx")
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.attribute:
            attr = node.attribute[0]
            value = onnx.helper.get_attribute_value(attr)
            if attr.name == "value":
                values[node.output[0]] = onnx.numpy_helper.to_array(value)
            elif attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                values[node.output[0]] = np.asarray(value, dtype=np.float32 if "float" in attr.name else np.int64)
    return values


def _constant_type(attr) -> int:
    onnx = require("onnx")
    by_name = {"value_float": onnx.TensorProto.FLOAT, "value_floats": onnx.TensorProto.FLOAT,
               "value_int": onnx.TensorProto.INT64, "value_ints": onnx.TensorProto.INT64,
               "value_string": onnx.TensorProto.STRING, "value_strings": onnx.TensorProto.STRING}
    return attr.t.data_type if attr.name == "value" else by_name.get(attr.name, onnx.TensorProto.UNDEFINED)


@dataclass
class _Graph:
    """What every rule reads, computed once: types, constant values, who produces and who reads each tensor."""

    model: Any
    types: dict[str, int]
    consts: dict[str, np.ndarray]
    producers: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)

    @classmethod
    def of(cls, model) -> _Graph:
        g = cls(model, tensor_types(model), constants(model))
        for node in model.graph.node:
            g.producers.update({o: node for o in node.output if o})
            for k, name in enumerate(node.input):
                g.consumers.setdefault(name, []).append((node, k))
        return g

    @staticmethod
    def label(node) -> str:
        return f"node '{node.name}'" if node.name else f"node {node.op_type} → '{node.output[0]}'"

    def type_name(self, name: str) -> str:
        return require("onnx").TensorProto.DataType.Name(self.types[name])

    def nodes(self, *op_types: str) -> Iterator[Any]:
        return (n for n in self.model.graph.node
                if n.domain in _DEFAULT_DOMAINS and (not op_types or n.op_type in op_types))


def _onnx_types(names: list[str]) -> set[int]:
    """Table type names (FP32, INT8, ...) → ``onnx.TensorProto`` enums known to the installed onnx."""
    proto, mapping = require("onnx").TensorProto, rules()["type_names"]
    return {getattr(proto, mapping.get(n, n)) for n in names if hasattr(proto, mapping.get(n, n))}


def _attr(node, name: str, default: Any = None) -> Any:
    onnx = require("onnx")
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _v(g: _Graph, node_or_label, rule: str, message: str, fix: str | None = None) -> Violation:
    label = node_or_label if isinstance(node_or_label, str) else g.label(node_or_label)
    return Violation(label, rule, message, fix or rules()["rules"][rule]["fix"])


def _opset(g: _Graph, major: str) -> Iterator[Violation]:
    lo, hi = rules()["majors"][major]["opset"]
    versions = [o.version for o in g.model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions:
        yield _v(g, "model", "opset-range", "the model imports no default-domain opset")
    elif not lo <= versions[0] <= hi:
        yield _v(g, "model", "opset-range", f"opset {versions[0]} is outside {lo}..{hi}, the range TensorRT documents")


def _domains(g: _Graph, major: str) -> Iterator[Violation]:
    kinds = {"com.microsoft": "an ONNX Runtime contrib op", "ai.onnx.ml": "an ONNX-ML op"}
    for node in g.model.graph.node:
        if node.domain not in _DEFAULT_DOMAINS:
            kind = kinds.get(node.domain, "a custom op")
            yield _v(g, node, "default-domain", f"{node.op_type} is in domain '{node.domain}' ({kind}); "
                                                "TensorRT's parser reads the default ONNX domain")


def _operators(g: _Graph, major: str) -> Iterator[Violation]:
    table = operator_table(major)
    for node in g.nodes():
        entry = table.get(node.op_type)
        if entry is None:
            yield _v(g, node, "op-supported", f"{node.op_type} is not in onnx-tensorrt's operator support matrix")
            continue
        if node.op_type not in _QDQ:  # Q/DQ types have their own rules, with a better fix
            yield from _op_types(g, node, entry)
        for check in entry.get("checks", []):
            problem = _restriction(g, node, check)
            if problem is not None:
                yield _v(g, node, "op-restriction", f"{node.op_type}: {check['text']}{problem}")


def _op_types(g: _Graph, node, entry: dict[str, Any]) -> Iterator[Violation]:
    allowed = _onnx_types(entry["types"])
    for where in entry.get("typed", ["input:0"]):
        kind, index = where.split(":")
        names = node.input if kind == "input" else node.output
        name = names[int(index)] if int(index) < len(names) else ""
        if name and name in g.types and g.types[name] not in allowed:
            yield _v(g, node, "op-types", f"{node.op_type} {kind} '{name}' is {g.type_name(name)}, a type the "
                                          f"matrix does not list for {node.op_type}")


def _restriction(g: _Graph, node, check: dict[str, Any]) -> str | None:
    """None when ``node`` meets ``check`` (one machine-checkable part of a documented restriction), else what
    it has instead."""
    kind = check["kind"]
    if kind == "attr_in":
        value = _attr(node, check["attr"], check["default"])
        return None if value in check["allowed"] else f" (got {check['attr']}={value!r})"
    if kind == "attr_all_ones":
        value = list(_attr(node, check["attr"], []))
        return None if all(v == 1 for v in value) else f" (got {check['attr']}={value})"
    if kind == "attr_len_in":
        value = _attr(node, check["attr"])
        return None if value is None or len(value) in check["allowed"] else f" (got {len(value)}D)"
    if kind == "attr_absent":
        present = [a.name for a in node.attribute if a.name in check["attrs"]]
        return f" (has {', '.join(present)})" if present else None
    if kind == "constant_input":
        i = check["index"]
        name = node.input[i] if i < len(node.input) else ""
        return None if not name or name in g.consts else f" ('{name}' is computed at run time)"
    if kind == "output_absent":
        i = check["index"]
        return f" (output '{node.output[i]}' is declared)" if i < len(node.output) and node.output[i] else None
    raise ValueError(f"unknown check kind {kind!r} in {RULES_FILE.name}")


def _dequantize(g: _Graph, major: str) -> Iterator[Violation]:
    entry = operator_table(major)["DequantizeLinear"]
    allowed, fixes = _onnx_types(entry["types"]), rules()["rules"]["dq-input-int8"]["fix_by_type"]
    for node in g.nodes("DequantizeLinear"):
        x = node.input[0]
        if x in g.types and g.types[x] not in allowed:
            name = g.type_name(x)
            what = " (a quantized bias)" if name == "INT32" else ""
            yield _v(g, node, "dq-input-int8", f"DequantizeLinear input is {name}{what}; TensorRT takes INT8 "
                                               "only (FP8/INT4/FP4 where its matrix lists them)", fixes.get(name))


def _quantize(g: _Graph, major: str) -> Iterator[Violation]:
    allowed = _onnx_types(operator_table(major)["DequantizeLinear"]["types"])
    uint8 = require("onnx").TensorProto.UINT8
    for node in g.nodes("QuantizeLinear"):
        y = next((t for t in (node.output[0], *node.input[2:3]) if t in g.types), None)
        if y is not None and g.types[y] not in allowed:
            what = " (asymmetric activations)" if g.types[y] == uint8 else ""
            yield _v(g, node, "q-output-int8", f"QuantizeLinear output is {g.type_name(y)}{what}; "
                                               "TensorRT quantizes to INT8 (zero point 0) only")


def _zero_points(g: _Graph, major: str) -> Iterator[Violation]:
    for node in g.nodes(*_QDQ):
        zp = node.input[2] if len(node.input) > 2 else ""
        if not zp:
            continue
        if zp not in g.consts:
            yield _v(g, node, "zero-point-zero", f"zero point '{zp}' is computed at run time, not a constant")
        elif np.any(g.consts[zp].astype(np.float64) != 0):
            nonzero = int(np.count_nonzero(g.consts[zp].astype(np.float64)))
            yield _v(g, node, "zero-point-zero", f"zero point '{zp}' has {nonzero} non-zero value(s) of "
                                                 f"{g.consts[zp].size} (asymmetric quantization)")


def _weights(g: _Graph, node) -> np.ndarray | None:
    """The constant a Q/DQ node quantizes (directly, or through the QuantizeLinear feeding a DQ), else None."""
    x = node.input[0]
    if x in g.consts:
        return g.consts[x]
    producer = g.producers.get(x)
    if node.op_type == "DequantizeLinear" and producer is not None and producer.op_type == "QuantizeLinear":
        return g.consts.get(producer.input[0])
    return None


def _scales(g: _Graph, major: str) -> Iterator[Violation]:
    scale_types = rules()["rules"]["scale-constant"]["types"]
    allowed, blocked = _onnx_types(scale_types), _onnx_types(["INT4", "FP4"])
    for node in g.nodes(*_QDQ):
        s = node.input[1]
        q = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
        if s not in g.consts:
            yield _v(g, node, "scale-constant", f"scale '{s}' is computed at run time, not an initializer or Constant")
            continue
        if s in g.types and g.types[s] not in allowed:
            yield _v(g, node, "scale-constant", f"scale '{s}' is {g.type_name(s)}, not {', '.join(scale_types)}")
        scale = g.consts[s]
        if scale.ndim > 1 and g.types.get(q) not in blocked:
            yield _v(g, node, "scale-constant", f"scale '{s}' has rank {scale.ndim}: per-tensor (scalar) or "
                                                "per-channel (1-D) only (blocks are for INT4/FP4 weights)")
        elif scale.ndim == 1 and scale.size > 1:
            yield from _per_channel(g, node, scale)


def _per_channel(g: _Graph, node, scale: np.ndarray) -> Iterator[Violation]:
    weights = _weights(g, node)
    if weights is None:
        yield _v(g, node, "qdq-per-channel", f"{scale.size} per-channel scales on activation '{node.input[0]}'; "
                                             "TensorRT quantizes activations per tensor")
        return
    rank, axis = weights.ndim, int(_attr(node, "axis", 1))
    if not -rank <= axis < rank:
        yield _v(g, node, "qdq-per-channel", f"axis {axis} is out of range for rank-{rank} weights")
    elif weights.shape[axis] != scale.size:
        yield _v(g, node, "qdq-per-channel", f"{scale.size} scales for {weights.shape[axis]} channels on axis {axis}")
    elif node.op_type == "DequantizeLinear" and axis % rank != 0 and any(
            c.op_type == "Conv" and k == 1 for c, k in g.consumers.get(node.output[0], [])):
        yield _v(g, node, "qdq-per-channel", f"Conv weights quantized along axis {axis}; "
                                             "TensorRT takes axis 0 (output channels)")


def _pairing(g: _Graph, major: str) -> Iterator[Violation]:
    outputs = {o.name for o in g.model.graph.output}
    for node in g.nodes("QuantizeLinear"):
        readers = {c.op_type for c, _ in g.consumers.get(node.output[0], [])} - {"DequantizeLinear"}
        if node.output[0] in outputs:
            readers.add("the graph output")
        if readers:
            yield _v(g, node, "qdq-pairing", f"QuantizeLinear output feeds {', '.join(sorted(readers))}; TensorRT "
                                             "needs every QuantizeLinear followed by DequantizeLinear")
    for node in g.nodes("DequantizeLinear"):
        x = node.input[0]
        producer = g.producers.get(x)
        if x not in g.consts and (producer is None or producer.op_type != "QuantizeLinear"):
            source = f"{producer.op_type} ({g.label(producer)})" if producer is not None else "a graph input"
            yield _v(g, node, "qdq-pairing", f"DequantizeLinear input '{x}' comes from {source}, "
                                             "not from a QuantizeLinear or weights")


def _io(g: _Graph, major: str) -> Iterator[Violation]:
    onnx = require("onnx")
    graph = g.model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]  # old IRs list initializers as inputs
    for kind, tensors in (("input", inputs), ("output", list(graph.output))):
        if len(tensors) != 1:
            yield _v(g, "model", "io-count", f"the model has {len(tensors)} {kind}s; edgeseg deploys exactly one")
        for t in tensors:
            elem = t.type.tensor_type.elem_type
            if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                yield _v(g, f"{kind} '{t.name}'", "io-dtype",
                         f"{kind} is {onnx.TensorProto.DataType.Name(elem)}, not float32 or float16")
    for t in inputs:
        yield from _input_shape(g, t)


def _input_shape(g: _Graph, tensor) -> Iterator[Violation]:
    label = f"input '{tensor.name}'"
    if not tensor.type.tensor_type.HasField("shape") or not tensor.type.tensor_type.shape.dim:
        yield _v(g, label, "input-shape", "the input has no shape")
        return
    dims = tensor.type.tensor_type.shape.dim
    if dims[0].dim_value > 0:
        yield _v(g, label, "input-shape", f"the batch (dim 0) is fixed at {dims[0].dim_value}, not dynamic")
    for i, d in enumerate(dims[1:], start=1):
        if d.dim_value <= 0:
            yield _v(g, label, "input-shape", f"dim {i} is {d.dim_param or 'unset'}, not a fixed size")


def _float64(g: _Graph, major: str) -> Iterator[Violation]:
    double = require("onnx").TensorProto.DOUBLE
    for name, t in g.types.items():
        if t == double:
            yield _v(g, f"tensor '{name}'", "no-float64", "tensor is float64; TensorRT has no FP64 and casts it "
                                                          "down to float32, clamping")


_CHECKS = (_opset, _domains, _operators, _dequantize, _quantize, _zero_points, _scales, _pairing, _io, _float64)


def check_tensorrt(model, majors: tuple[str, ...] = MAJORS) -> list[Violation]:
    """Every rule of ``tensorrt_rules.json`` an ONNX model (a ``ModelProto`` or a path) breaks for each TensorRT
    major in ``majors``; empty when the file should parse and build. A violation found for some majors only
    says which ones."""
    if not majors:
        raise EdgesegError("name at least one TensorRT major (e.g. 10)")
    model = load_onnx(model) if isinstance(model, (str, Path)) else model
    for major in majors:
        operator_table(major)  # unknown majors fail before any work
    g = _Graph.of(model)
    found = {major: [v for check in _CHECKS for v in check(g, major)] for major in majors}
    seen: dict[Violation, list[str]] = {}
    for major in majors:
        for v in found[major]:
            seen.setdefault(v, [])
            if major not in seen[v]:
                seen[v].append(major)
    return [v if len(on) == len(majors) else
            Violation(v.node, v.rule, f"{v.message} (on TensorRT {majors_text(tuple(on))})", v.fix)
            for v, on in seen.items()]


def require_tensorrt_compatible(path, majors: tuple[str, ...] = MAJORS) -> None:
    """Raise :class:`EdgesegError` listing every violation (first line a summary) if ``path`` breaks a rule."""
    violations = check_tensorrt(path, majors)
    if violations:
        name = str(path) if isinstance(path, (str, Path)) else "model"
        head = (f"{name} breaks {len(violations)} TensorRT {majors_text(majors)} rule(s) "
                "(edgeseg check --target tensorrt):")
        raise EdgesegError("\n".join([head, *(v.line(name) for v in violations)]))
