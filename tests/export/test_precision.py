"""FP16 conversion and INT8 Q/DQ quantization of a tiny exported model, and the calibration cache."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.types import Precision
from tiny_models import NOISE_UNITS, save_tiny_model

SIZE = 32


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    from edgeseg.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("precision")
    save_tiny_model(d / "model.keras", convs=((8, 1), (16, 2)), rescale=NOISE_UNITS, head_name="head")
    return export_onnx(d / "model.keras", d / "model.onnx", image_size=SIZE, parity_count=2).path


@pytest.fixture(scope="module")
def int8(fp32, tmp_path_factory):
    from edgeseg.export.precision import to_int8

    root = tmp_path_factory.mktemp("calib")
    # min_conv_depth 0: every conv quantized, so the checks below see all three.
    return to_int8(fp32, calib_count=16, calib_root=root, min_conv_depth=0), root


def _initializer(model, name):
    from onnx import numpy_helper

    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_fp16_keeps_float32_io_and_stays_close(fp32):
    import onnx

    from edgeseg.export.precision import to_fp16
    from edgeseg.export.graph import graph_precision
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    result = to_fp16(fp32)
    assert result.path.name == "model.fp16.onnx"
    model = onnx.load(str(result.path))
    assert graph_precision(model) is Precision.fp16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert result.max_abs_diff < 1e-2
    with OnnxRuntimeRunner(result.path) as runner:
        assert runner.precision is Precision.fp16
    # The stem (everything before the first conv of depth >= 128, here the head) keeps FP32 weights.
    weight_types = {n.name: _weight_type(model, n) for n in model.graph.node if n.op_type == "Conv"}
    assert sorted(weight_types.values()) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16]
    everything = onnx.load(str(to_fp16(fp32, fp32.with_name("all.fp16.onnx"), keep_stem_fp32=False).path))
    assert {_weight_type(everything, n) for n in everything.graph.node if n.op_type == "Conv"} == {onnx.TensorProto.FLOAT16}


def _weight_type(model, conv):
    """Element type of a conv's weights, following a Cast inserted by the FP16 conversion."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = conv.input[1]
    while name in producers:
        name = producers[name].input[0]
    return next(t.data_type for t in model.graph.initializer if t.name == name)


def test_int8_is_symmetric_per_channel_qdq(int8):
    import onnx

    result, _ = int8
    model = onnx.load(str(result.path))
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert q_nodes and dq_nodes
    for node in q_nodes + dq_nodes:  # TensorRT accepts zero point 0 only
        if len(node.input) > 2:
            assert not np.any(_initializer(model, node.input[2]))
    # Per-channel weights: every conv weight has one scale per output channel.
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = [n for n in dq_nodes if n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert len(weights) == 3
    for n in weights:
        assert inits[n.input[0]].dtype == np.int8
        assert inits[n.input[1]].size == inits[n.input[0]].shape[0]
    assert result.max_abs_diff < 0.2


def test_int8_manifest_records_calibration_and_reuses_it(int8, fp32):
    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.export.calibration import calibration_set
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    result, root = int8
    meta = read_json(manifest_path(result.path))
    assert meta["precision"] == "int8" and meta["calibration"]["hash"] == result.calib_hash
    assert meta["config"]["calib_method"] == "max" and meta["config"]["calib_mix"] == "mixed"
    again = calibration_set(SIZE, 16, "mixed", 7, root)
    assert again.reused and again.hash == result.calib_hash
    other = calibration_set(SIZE, 16, "background", 7, root)
    assert other.hash != result.calib_hash and not other.reused
    assert read_json(other.path / "manifest.json")["request"]["generator"]["good_fraction"] == 1.0
    with OnnxRuntimeRunner(result.path) as runner:
        assert runner.precision is Precision.int8


def test_corrupt_calibration_cache_is_regenerated(int8):
    from edgeseg.export.calibration import calibration_set

    _, root = int8
    first = calibration_set(SIZE, 4, "defect", 3, root)
    (first.path / "images.npy").write_bytes(b"garbage")
    again = calibration_set(SIZE, 4, "defect", 3, root)
    assert not again.reused
    np.testing.assert_array_equal(again.images, first.images)


def test_shallow_convs_stay_fp32_by_default(fp32, tmp_path):
    import onnx

    from edgeseg.export.precision import head_nodes, shallow_convs, to_int8

    shallow = shallow_convs(onnx.load(str(fp32)), 128)
    assert len(shallow) == 2  # depths 9 and 72; the head (16 channels × 3×3 = 144) is deep enough
    result = to_int8(fp32, tmp_path / "d.int8.onnx", calib_count=8, calib_root=tmp_path / "calib")
    model = onnx.load(str(result.path))
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv in (n for n in model.graph.node if n.name in shallow):
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in conv.input)
    quantized = [n for n in model.graph.node if n.op_type == "Conv"
                 and any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)]
    source = onnx.load(str(fp32))
    head = set(head_nodes(source))
    assert [n.name for n in quantized] == [n.name for n in source.graph.node if n.op_type == "Conv" and n.name in head]
    with pytest.raises(EdgesegError, match="nothing left to quantize"):
        to_int8(fp32, tmp_path / "e.int8.onnx", calib_count=8, calib_root=tmp_path / "none", keep_head_fp32=True)
    assert not (tmp_path / "e.int8.onnx").exists() and not (tmp_path / "none").exists()


def test_keep_head_fp32_leaves_the_head_unquantized(fp32, tmp_path):
    import onnx

    from edgeseg.export.precision import head_nodes, to_int8

    result = to_int8(fp32, tmp_path / "head.int8.onnx", calib_count=8, calib_root=tmp_path / "calib",
                     keep_head_fp32=True, calib_method="percentile", min_conv_depth=0)
    model = onnx.load(str(result.path))
    head = set(head_nodes(onnx.load(str(fp32))))
    assert any("head" in name for name in head)
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name in head and node.op_type == "Conv":
            assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input[1:])


def test_empty_calibration_request_is_refused_and_writes_nothing(fp32, tmp_path):
    from edgeseg.export.precision import to_int8

    out = tmp_path / "x.int8.onnx"
    with pytest.raises(EdgesegError, match="--calib-count must be between 1 and 512"):
        to_int8(fp32, out, calib_count=0, calib_root=tmp_path / "calib")
    assert not out.exists() and not (tmp_path / "calib").exists()


def test_modelopt_missing_names_the_extra(fp32, tmp_path):
    from edgeseg.deps import available
    from edgeseg.export.precision import to_int8

    if available("modelopt.onnx.quantization"):
        pytest.skip("modelopt is installed here")
    with pytest.raises(EdgesegError, match=r"pip install 'edgeseg\[modelopt\]'"):
        to_int8(fp32, tmp_path / "m.int8.onnx", calib_count=4, calib_root=tmp_path / "calib", quantizer="modelopt")
    assert not (tmp_path / "m.int8.onnx").exists()


def test_only_fp32_models_are_converted(int8, tmp_path):
    from edgeseg.export.precision import to_fp16

    with pytest.raises(EdgesegError, match="is already int8"):
        to_fp16(int8[0].path, tmp_path / "x.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not onnx")
    with pytest.raises(EdgesegError, match="bad.onnx is not an ONNX model"):
        to_fp16(bad)


def test_entropy_calibration_is_not_max_in_disguise(fp32, int8, tmp_path):
    """quantize_static's own Entropy settings (128 bins, 128 levels) return the max range; ours search."""
    import onnx

    def activation_scales(path):
        model = onnx.load(str(path))
        return {n.input[0]: float(_initializer(model, n.input[1])) for n in model.graph.node
                if n.op_type == "QuantizeLinear"}

    from edgeseg.export.precision import to_int8

    result = to_int8(fp32, tmp_path / "e.int8.onnx", calib_count=16, calib_root=int8[1], calib_method="entropy",
                     min_conv_depth=0)
    entropy, maximum = activation_scales(result.path), activation_scales(int8[0].path)
    assert entropy.keys() == maximum.keys()
    assert any(entropy[k] < 0.99 * maximum[k] for k in entropy)
    assert result.calib_hash == int8[0].calib_hash  # same images, other method


def test_cpu_target_uses_uint8_activations_and_tensorrt_refuses_it(fp32, tmp_path):
    import onnx

    from edgeseg.export.precision import to_int8
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner
    from edgeseg.trt.build import build_engine

    result = to_int8(fp32, tmp_path / "cpu.int8.onnx", calib_count=8, calib_root=tmp_path / "calib", target="cpu")
    model = onnx.load(str(result.path))
    zero_points = [_initializer(model, n.input[2]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)
    with OnnxRuntimeRunner(result.path) as runner:
        assert runner.precision is Precision.int8
        assert runner.infer(np.full((1, SIZE, SIZE), 112, np.uint8)).shape == (1, SIZE, SIZE)
    with pytest.raises(EdgesegError, match="TensorRT rejects: quantize the FP32 model with --target tensorrt"):
        build_engine(result.path, tmp_path / "engines")
    assert not (tmp_path / "engines").exists()


def _dq_input_types(model):
    """Element type of every DequantizeLinear input that is an initializer (weights, and biases if quantized)."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    return {n.name: inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}


def test_tensorrt_int8_has_float_biases_fp16_elsewhere_and_an_fp32_stem(fp32, tmp_path):
    """TensorRT's importer takes INT8 DequantizeLinear inputs only (no INT32 biases), and under strong typing
    whatever is not INT8 runs at the graph's own type: FP16 here, except the raw-pixel stem."""
    import onnx

    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.export.precision import FP16_QDQ_OPSET, stem_nodes, to_int8
    from edgeseg.export.tensorrt_check import check_tensorrt

    result = to_int8(fp32, tmp_path / "t.int8.onnx", calib_count=8, calib_root=tmp_path / "calib")
    model = onnx.load(str(result.path))
    assert set(_dq_input_types(model).values()) == {onnx.TensorProto.INT8}
    assert check_tensorrt(model) == []
    assert next(o.version for o in model.opset_import if o.domain == "") >= FP16_QDQ_OPSET
    inits = {t.name: t.data_type for t in model.graph.initializer}
    scales = {inits[n.input[1]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert scales == {onnx.TensorProto.FLOAT16}
    # The stem keeps FP32 weights, and no FP32 → FP16 → FP32 round trip is left in front of it.
    stem = set(stem_nodes(onnx.load(str(fp32))))
    weight_types = {n.name: _weight_type(model, n) for n in model.graph.node if n.op_type == "Conv"}
    assert {weight_types[n] for n in weight_types if n in stem} == {onnx.TensorProto.FLOAT}
    producers = {o: n for n in model.graph.node for o in n.output}
    assert not [n.name for n in model.graph.node if n.op_type == "Cast" and n.input[0] in producers
                and producers[n.input[0]].op_type == "Cast"]
    meta = read_json(manifest_path(result.path))
    assert meta["config"]["high_precision"] == "fp16" and set(meta["config"]["fp32_nodes"]) == stem
    assert meta["config"]["extra_options"]["QuantizeBias"] is False
    assert result.max_abs_diff < 0.2
    fp32_rest = to_int8(fp32, tmp_path / "f.int8.onnx", calib_count=8, calib_root=tmp_path / "calib",
                        high_precision="fp32")
    rest = onnx.load(str(fp32_rest.path))
    assert onnx.TensorProto.FLOAT16 not in {t.data_type for t in rest.graph.initializer}
    assert check_tensorrt(rest) == []


def test_cpu_target_keeps_fp32_and_refuses_fp16(fp32, tmp_path):
    from edgeseg.export.precision import to_int8

    with pytest.raises(EdgesegError, match="--target cpu keeps unquantized layers in FP32"):
        to_int8(fp32, tmp_path / "c.int8.onnx", calib_count=8, calib_root=tmp_path / "calib", target="cpu",
                high_precision="fp16")
    assert not (tmp_path / "c.int8.onnx").exists()


def test_fold_cast_pairs_removes_round_trips_only():
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.export.precision import fold_cast_pairs

    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Cast", ["a"], ["a16"], to=f16, name="down"),
        helper.make_node("Cast", ["a16"], ["a32"], to=f32, name="up"),        # a round trip: goes
        helper.make_node("Neg", ["a32"], ["b"], name="neg"),
        helper.make_node("Cast", ["b"], ["b16"], to=f16, name="to16"),        # a real conversion: stays
        helper.make_node("Cast", ["b16"], ["y"], to=f32, name="out"),         # feeds the graph output: stays
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f32, [2])],
                              [helper.make_tensor_value_info("y", f32, [2])])
    folded = fold_cast_pairs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(folded)
    assert [n.name for n in folded.graph.node] == ["relu", "neg", "to16", "out"]
    assert folded.graph.node[1].input[0] == "a"
