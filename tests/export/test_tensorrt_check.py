"""The static TensorRT check: each rule on hand-made graphs (one that passes, one that breaks it), the CLI's
lines and exit codes, and ONNX Runtime's own quantizer output with and without quantized biases."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgeseg.cli.app import app
from edgeseg.errors import EdgesegError
from edgeseg.export.tensorrt_check import check_tensorrt, require_tensorrt_compatible, rule_ids, tensor_types

cli = CliRunner()
CIN, COUT, HW = 16, 8, 8  # 16 channels x 3x3: reduction depth 144, deep enough that edgeseg quantizes it


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inits=(), opset=17, inputs=None, outputs=None, extra_opsets=()):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CIN, HW, HW])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(graph, opset_imports=opsets)


def _qdq_conv(zp_x=np.int8(0), bias_int32=False, w_axis=0):
    """x → Q → DQ → Conv(DQ(int8 weights, per channel)) → Relu → y: what TensorRT wants, unless told
    otherwise (an asymmetric or uint8 zero point, an INT32 bias behind a DequantizeLinear, weights on axis 1)."""
    rng = np.random.default_rng(0)
    w_scale = np.full(COUT if w_axis == 0 else CIN, 0.01, np.float32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "zp_x"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "s_x", "zp_x"], ["x_dq"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "zp_w"], ["w"], name="w_DQ", axis=w_axis),
        helper.make_node("Conv", ["x_dq", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    inits = [_init("s_x", np.float32(0.05)), _init("zp_x", zp_x),
             _init("w_q", rng.integers(-127, 128, (COUT, CIN, 3, 3)).astype(np.int8)),
             _init("s_w", w_scale), _init("zp_w", np.zeros(w_scale.shape, np.int8))]
    if bias_int32:
        nodes.insert(3, helper.make_node("DequantizeLinear", ["b_q", "s_b", "zp_b"], ["b"], name="conv/bias:0_DQ",
                                         axis=0))
        inits += [_init("b_q", np.arange(COUT, dtype=np.int32)), _init("s_b", np.full(COUT, 5e-4, np.float32)),
                  _init("zp_b", np.zeros(COUT, np.int32))]
    else:
        inits.append(_init("b", np.zeros(COUT, np.float32)))
    return _model(nodes, inits)


def _fp32(op_type, extra_inputs=(), inits=(), opset=17, **attrs):
    """x → one op → y, the op's other inputs from ``inits``."""
    return _model([helper.make_node(op_type, ["x", *extra_inputs], ["y"], name=op_type.lower(), **attrs)],
                  inits, opset)


def _rules(violations) -> list[str]:
    return [v.rule for v in violations]


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_clean_symmetric_qdq_conv_passes():
    assert check_tensorrt(_qdq_conv()) == []
    require_tensorrt_compatible(_qdq_conv())  # no exception on a clean graph


def test_int32_dequantize_input_is_a_quantized_bias():
    violations = check_tensorrt(_qdq_conv(bias_int32=True))
    assert _rules(violations) == ["dq-input-int8"]
    v = violations[0]
    assert v.node == "node 'conv/bias:0_DQ'"
    assert "INT32 (a quantized bias)" in v.message and "QuantizeBias: False" in v.fix
    assert v.line("m.onnx").startswith("m.onnx: node 'conv/bias:0_DQ': dq-input-int8: DequantizeLinear input is INT32")


def test_uint8_quantize_is_asymmetric():
    violations = check_tensorrt(_qdq_conv(zp_x=np.uint8(0)))
    q = [v for v in violations if v.rule == "q-output-int8"]
    assert len(q) == 1 and q[0].node == "node 'x_Q'" and "UINT8 (asymmetric activations)" in q[0].message
    assert "--target tensorrt" in q[0].fix
    dq = next(v for v in violations if v.rule == "dq-input-int8")  # its DequantizeLinear reads UINT8 as well
    assert dq.node == "node 'x_DQ'" and "--target tensorrt" in dq.fix


def test_non_zero_zero_point():
    violations = check_tensorrt(_qdq_conv(zp_x=np.int8(3)))
    assert _rules(violations) == ["zero-point-zero", "zero-point-zero"]  # the Q and its DQ
    assert "1 non-zero value(s) of 1" in violations[0].message


def test_zero_point_and_scale_must_be_constants():
    model = _qdq_conv()
    graph = model.graph
    graph.node.insert(0, helper.make_node("Mul", ["s_x", "two"], ["s_x2"], name="scale_math"))
    graph.initializer.append(_init("two", np.float32(2)))
    for node in graph.node[1:3]:
        node.input[1] = "s_x2"
    violations = check_tensorrt(model)
    assert _rules(violations) == ["scale-constant", "scale-constant"]
    assert "'s_x2' is computed at run time" in violations[0].message


def test_per_channel_scales_only_on_weights_along_axis_0():
    assert _rules(check_tensorrt(_qdq_conv(w_axis=1))) == ["qdq-per-channel"]
    model = _qdq_conv()
    model.graph.initializer[0].CopyFrom(_init("s_x", np.full(CIN, 0.05, np.float32)))
    model.graph.initializer[1].CopyFrom(_init("zp_x", np.zeros(CIN, np.int8)))
    violations = check_tensorrt(model)
    assert _rules(violations) == ["qdq-per-channel", "qdq-per-channel"]
    assert "per-channel scales on activation 'x'" in violations[0].message


def test_quantize_must_feed_dequantize_only():
    model = _qdq_conv()
    model.graph.node.append(helper.make_node("Identity", ["x_q"], ["x_q_copy"], name="stray"))
    violations = check_tensorrt(model)
    assert _rules(violations) == ["op-types", "qdq-pairing"]  # Identity on INT8 is not in the matrix either
    assert violations[1].node == "node 'x_Q'" and "feeds Identity" in violations[1].message


def test_dequantize_on_activations_needs_its_quantize():
    model = _qdq_conv()
    del model.graph.node[0]  # x_DQ now reads the graph input
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT8
    violations = check_tensorrt(model)
    assert "qdq-pairing" in _rules(violations) and "io-dtype" in _rules(violations)
    pairing = next(v for v in violations if v.rule == "qdq-pairing")
    assert pairing.node == "node 'x_DQ'" and "comes from a graph input" in pairing.message


def test_contrib_and_onnx_ml_domains():
    model = _qdq_conv()
    model.graph.node[-1].output[0] = "r"
    model.graph.node.append(helper.make_node("QuickGelu", ["r"], ["g"], name="ort_fused", domain="com.microsoft"))
    model.graph.node.append(helper.make_node("Normalizer", ["g"], ["y"], name="ml_norm", domain="ai.onnx.ml"))
    model.opset_import.extend([helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("ai.onnx.ml", 3)])
    violations = check_tensorrt(model)
    assert _rules(violations) == ["default-domain", "default-domain"]
    assert "ONNX Runtime contrib op" in violations[0].message and "ONNX-ML op" in violations[1].message


def test_unsupported_op():
    model = _model([helper.make_node("Det", ["x"], ["y"], name="det")],
                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])])
    violations = check_tensorrt(model)
    assert _rules(violations) == ["op-supported"]
    assert violations[0].node == "node 'det'" and "Det is not in onnx-tensorrt's" in violations[0].message


def test_documented_restrictions():
    assert check_tensorrt(_fp32("MaxPool", kernel_shape=[2, 2])) == []
    dilated = check_tensorrt(_fp32("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]))
    assert _rules(dilated) == ["op-restriction"] and "dilations" in dilated[0].message
    assert check_tensorrt(_fp32("Resize", ["", "scales"], [_init("scales", np.float32([1, 1, 2, 2]))],
                                mode="linear")) == []
    cubic = check_tensorrt(_fp32("Resize", ["", "scales"], [_init("scales", np.float32([1, 1, 2, 2]))],
                                 mode="cubic"))
    assert _rules(cubic) == ["op-restriction"] and "got mode='cubic'" in cubic[0].message


def test_types_the_matrix_does_not_list_and_per_major_results():
    ints = [helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 4])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    model = _model([helper.make_node("Pow", ["x", "e"], ["p"], name="pow"),
                    helper.make_node("Cast", ["p"], ["y"], name="cast", to=TensorProto.FLOAT)],
                   [_init("e", np.int32(2))], inputs=ints, outputs=out)
    violations = check_tensorrt(model)
    # 10.0/10.1's matrix lists Pow for FP32/FP16/BF16 only; 10.15's (the 11.x rows) adds INT32 and INT64.
    pow_types = [v for v in violations if v.rule == "op-types"]
    assert len(pow_types) == 1 and pow_types[0].message.endswith("(on TensorRT 10.x)")
    assert "io-dtype" in _rules(violations)
    assert "op-types" not in _rules(check_tensorrt(model, ("11",)))


def test_opset_range_per_major():
    assert check_tensorrt(_fp32("Relu", opset=17)) == []
    newer = check_tensorrt(_fp32("Relu", opset=22))
    assert _rules(newer) == ["opset-range"] and newer[0].message.endswith("9..20, the range TensorRT documents "
                                                                           "(on TensorRT 10.x)")
    both = check_tensorrt(_fp32("Relu", opset=8))
    assert _rules(both) == ["opset-range", "opset-range"]


def test_fixed_batch_and_unfixed_size():
    fixed = _model([helper.make_node("Relu", ["x"], ["y"])],
                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "H", HW, 1])])
    violations = check_tensorrt(fixed)
    assert _rules(violations) == ["input-shape", "input-shape"]
    assert violations[0].node == "input 'x'" and "fixed at 1" in violations[0].message
    assert "dim 1 is H" in violations[1].message


def test_one_float_input_and_output():
    model = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["z"])],
                   outputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")])
    assert _rules(check_tensorrt(model)) == ["io-count"]


def test_float64_tensors():
    model = _model([helper.make_node("Cast", ["x"], ["d"], name="to_double", to=TensorProto.DOUBLE),
                    helper.make_node("Cast", ["d"], ["y"], name="to_float", to=TensorProto.FLOAT)])
    violations = check_tensorrt(model)
    assert "no-float64" in _rules(violations)
    assert next(v for v in violations if v.rule == "no-float64").node == "tensor 'd'"
    assert tensor_types(model)["d"] == TensorProto.DOUBLE


def test_unknown_major_and_rules_are_counted():
    with pytest.raises(EdgesegError, match="known: 10, 11"):
        check_tensorrt(_qdq_conv(), ("9",))
    assert len(rule_ids()) == 15


def test_require_lists_every_violation(tmp_path):
    path = _save(_qdq_conv(bias_int32=True, zp_x=np.int8(1)), tmp_path / "bad.onnx")
    with pytest.raises(EdgesegError) as err:
        require_tensorrt_compatible(path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path} breaks 3 TensorRT 10.x and 11.x rule(s)")
    assert [line.split(": ")[2] for line in lines[1:]] == ["dq-input-int8", "zero-point-zero", "zero-point-zero"]


def test_cli_one_line_per_violation_and_exit_1(tmp_path):
    bad = _save(_qdq_conv(bias_int32=True), tmp_path / "model.int8.onnx")
    good = _save(_qdq_conv(), tmp_path / "good.onnx")
    result = cli.invoke(app, ["check", "--target", "tensorrt", str(good), str(bad)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"{good}: passes 15 rules for TensorRT 10.x and 11.x",
        *(v.line(str(bad)) for v in check_tensorrt(bad))]
    assert "dq-input-int8" in result.output


def test_cli_pass_and_json(tmp_path):
    good = _save(_qdq_conv(), tmp_path / "good.onnx")
    result = cli.invoke(app, ["check", str(good)])
    assert result.exit_code == 0 and result.output == f"{good}: passes 15 rules for TensorRT 10.x and 11.x\n"
    bad = _save(_qdq_conv(bias_int32=True), tmp_path / "bad.onnx")
    result = cli.invoke(app, ["check", "--json", "-", str(bad)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["target"] == "tensorrt" and report["majors"] == ["10", "11"]
    assert report["files"][0]["passes"] is False
    assert [v["rule"] for v in report["files"][0]["violations"]] == ["dq-input-int8"]
    out = tmp_path / "report.json"
    result = cli.invoke(app, ["check", "--json", str(out), str(good)])
    assert result.exit_code == 0 and json.loads(out.read_text())["files"][0]["passes"] is True


@pytest.mark.parametrize("name, message", [("missing.onnx", "ONNX file not found"),
                                           ("", "is a folder, not an ONNX file"),
                                           ("notes.onnx", "is not an ONNX model")])
def test_cli_bad_paths_one_line(tmp_path, name, message):
    (tmp_path / "notes.onnx").write_text("not a model")
    result = cli.invoke(app, ["check", str(tmp_path / name)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def fp32_conv(tmp_path_factory):
    """A float conv network for ONNX Runtime's quantizer: Conv(16→8, 3x3, bias) → Relu, dynamic batch."""
    rng = np.random.default_rng(1)
    model = _model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["c"], ["y"], name="relu")],
                   [_init("w", rng.normal(0, 0.1, (COUT, CIN, 3, 3)).astype(np.float32)),
                    _init("b", rng.normal(0, 0.1, COUT).astype(np.float32))], opset=17)
    return _save(model, tmp_path_factory.mktemp("ort") / "fp32.onnx")


class _Reader:
    def __init__(self, count=8):
        rng = np.random.default_rng(2)
        self.batches = iter([{"x": rng.normal(0, 1, (1, CIN, HW, HW)).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)


def _ort_quantize(src, dst, extra_options):
    from onnxruntime import quantization as q

    q.quantize_static(str(src), str(dst), _Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8, extra_options=extra_options)
    return dst


def test_onnxruntime_quantized_biases_are_flagged(fp32_conv, tmp_path):
    default = check_tensorrt(_ort_quantize(fp32_conv, tmp_path / "default.onnx", {}))
    assert "dq-input-int8" in _rules(default)
    symmetric = check_tensorrt(_ort_quantize(fp32_conv, tmp_path / "sym.onnx",
                                             {"ActivationSymmetric": True, "WeightSymmetric": True}))
    assert _rules(symmetric) == ["dq-input-int8"]  # symmetric alone still quantizes the bias to INT32
    assert "INT32 (a quantized bias)" in symmetric[0].message


def test_onnxruntime_without_bias_quantization_passes(fp32_conv, tmp_path):
    path = _ort_quantize(fp32_conv, tmp_path / "trt.onnx",
                         {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    model = onnx.load(str(path))
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) >= 2  # it really is a Q/DQ model
    assert check_tensorrt(path) == []
