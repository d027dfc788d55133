"""Engine manifests, version rules and layer-precision parsing (checked without TensorRT) and, on a GPU host,
FP16/INT8 engines built from a small model and compared with ONNX Runtime (marked ``gpu``: they skip here with
the reason, and fail under ``make test-gpu`` where TensorRT, pycuda or the GPU is missing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from tiny_models import NOISE_UNITS, save_tiny_model

SIZE = 32


def engine_with_manifest(tmp_path, version="10.3.0", cc="8.7", gpu="Orin", version_compatible=False, manifest=True):
    """A file with an engine manifest beside it: check_engine reads only the manifest and the file hash."""
    from edgeseg.artifacts import write_manifest

    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"serialized plan bytes")
    if manifest:
        write_manifest(engine, "engine", config={}, onnx={"path": "runs/demo/model.int8.onnx"},
                       tensorrt={"version": version, "gpu": gpu, "compute_capability": cc,
                                 "version_compatible": version_compatible})
    return engine


def test_check_engine_accepts_the_machine_that_built_it(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path)
    assert check_engine(engine, "10.3.0", "Orin", (8, 7))["tensorrt"]["gpu"] == "Orin"


def test_check_engine_refuses_another_gpu_of_the_same_architecture(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path, cc="8.6", gpu="NVIDIA A10")
    with pytest.raises(EdgesegError, match=r"built on NVIDIA A10, this GPU is NVIDIA RTX A4000 \(same compute "):
        check_engine(engine, "10.3.0", "NVIDIA RTX A4000", "8.6")


def test_check_engine_refuses_another_tensorrt(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path)
    with pytest.raises(EdgesegError, match="built by TensorRT 10.3.0, this is TensorRT 11.2.0.*rebuild") as e:
        check_engine(engine, "11.2.0", "Orin", "8.7")
    assert "edgeseg build-engine --model runs/demo/model.int8.onnx" in str(e.value)
    assert "\n" not in str(e.value)
    # A standard engine needs the exact version, patch and build included.
    for other in ("10.3.1", "10.3.0.30", "10.2.0"):
        with pytest.raises(EdgesegError, match="exact version"):
            check_engine(engine, other, "Orin", "8.7")


@pytest.mark.parametrize("built, runtime, compatible, refused", [
    ("10.3.0", "10.3.0", False, None),
    ("10.3.0", "10.4.0", False, "exact version"),
    ("10.3.0", "10.4.0", True, None),            # version-compatible: a newer runtime of the same major
    ("10.3.0", "11.4.1", True, None),            # and across majors from 10 to 11
    ("10.3.0", "11.4.1", False, "exact version"),
    ("10.8.0", "10.3.0", True, "newer than this"),
    ("11.2.0", "10.16.0", True, "newer than this"),
    ("10.3.0", "12.0.0", True, "only 10 → 11"),
    ("abc", "10.3.0", False, "cannot compare"),
])
def test_version_rules(built, runtime, compatible, refused):
    from edgeseg.trt.manifest import version_refusal

    reason = version_refusal(built, runtime, compatible)
    assert reason is None if refused is None else refused in reason


def test_version_compatible_engines_load_with_host_code_allowed(tmp_path):
    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.trt.manifest import runtime_flags

    compatible = read_json(manifest_path(engine_with_manifest(tmp_path, version_compatible=True)))
    standard = read_json(manifest_path(engine_with_manifest(tmp_path, version_compatible=False)))
    assert runtime_flags(compatible) == {"engine_host_code_allowed": True}
    assert runtime_flags(standard) == {}


def test_version_compatible_engines_run_on_newer_tensorrt_only(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path, version_compatible=True)
    assert check_engine(engine, "11.2.0", "Orin", "8.7")
    assert check_engine(engine, "10.4.0", "Orin", "8.7")
    with pytest.raises(EdgesegError, match="built by TensorRT"):
        check_engine(engine, "10.1.0", "Orin", "8.7")


def test_check_engine_refuses_another_gpu_architecture(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path)
    with pytest.raises(EdgesegError, match=r"compute capability 8.7 \(Orin\), this GPU is 9.0 \(NVIDIA H100"):
        check_engine(engine, "10.3.0", "NVIDIA H100 80GB HBM3", (9, 0))


def test_check_engine_refuses_missing_or_broken_manifest_and_changed_file(tmp_path):
    from edgeseg.artifacts import manifest_path
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path, manifest=False)
    with pytest.raises(EdgesegError, match="has no manifest .*rebuild"):
        check_engine(engine, "10.3.0", "Orin", "8.7")
    manifest_path(engine).write_text(json.dumps({"kind": "engine"}))
    with pytest.raises(EdgesegError, match="is not an engine manifest"):
        check_engine(engine, "10.3.0", "Orin", "8.7")
    engine = engine_with_manifest(tmp_path)
    engine.write_bytes(b"another plan")
    with pytest.raises(EdgesegError, match="does not match its manifest's sha256"):
        check_engine(engine, "10.3.0", "Orin", "8.7")
    with pytest.raises(EdgesegError, match="engine not found"):
        check_engine(tmp_path / "nope.engine", "10.3.0", "Orin", "8.7")
    # A manifest that names no sha256 cannot vouch for the file beside it.
    meta = json.loads(manifest_path(engine).read_text())
    del meta["sha256"]
    manifest_path(engine).write_text(json.dumps(meta))
    with pytest.raises(EdgesegError, match="names no sha256"):
        check_engine(engine, "10.3.0", "Orin", "8.7")


def test_engine_names_and_profiles():
    from edgeseg.trt.build import check_profile, engine_path_for

    assert engine_path_for("runs/demo/model.int8.onnx").as_posix() == "engines/model.int8.engine"
    assert engine_path_for("m.onnx", "out/x.engine").as_posix() == "out/x.engine"
    assert check_profile((1, 8, 32)) == (1, 8, 32)
    with pytest.raises(EdgesegError, match="MIN <= OPT <= MAX"):
        check_profile((0, 1, 2))


def test_the_profile_of_a_fixed_size_file_is_its_own_shape():
    from edgeseg.trt.build import input_profile

    fixed = (-1, 768, 1280, 1)
    expected = ((1, 768, 1280, 1), (8, 768, 1280, 1), (32, 768, 1280, 1))
    assert input_profile(fixed, (1, 8, 32)) == expected
    assert input_profile(fixed, (1, 8, 32), "768x1280") == expected
    assert input_profile(fixed, (1, 8, 32), "768x1280:768x1280:768x1280") == expected
    with pytest.raises(EdgesegError, match="m.onnx is exported for 768x1280 images only.*edgeseg export --shape HxW"):
        input_profile(fixed, (1, 8, 32), "1024x1024", name="m.onnx")
    with pytest.raises(EdgesegError, match="exported for 768x1280"):
        input_profile(fixed, (1, 8, 32), "512x512:768x1280:1024x1280")


def test_the_profile_of_a_dynamic_file_comes_from_shape():
    from edgeseg.trt.build import input_profile, profile_record

    dynamic = (-1, -1, -1, 1)
    assert input_profile(dynamic, (1, 4, 8), "1024x1024") == ((1, 1024, 1024, 1), (4, 1024, 1024, 1),
                                                              (8, 1024, 1024, 1))
    ranged = input_profile(dynamic, (1, 1, 4), "512x512:1024x1024:2048x2048", size_multiple=4)
    assert ranged == ((1, 512, 512, 1), (1, 1024, 1024, 1), (4, 2048, 2048, 1))
    assert profile_record("image", ranged) == {"input": "image", "min": [1, 512, 512, 1], "opt": [1, 1024, 1024, 1],
                                               "max": [4, 2048, 2048, 1], "shape": [1024, 1024]}
    assert input_profile((-1, 256, -1, 1), (1, 1, 1), "256x640")[0] == (1, 256, 640, 1)
    for shape, words in ((None, "takes images of any size: give --shape HxW"),
                         ("12x", "--shape must be HEIGHTxWIDTH"), ("0x256", "each side must be 16..4096"),
                         ("256x257", "multiples of 4; 256x260 would do"),
                         ("1024x1024:512x512:2048x2048", "grow from MIN to OPT to MAX"),
                         ("1x2x3", "HEIGHTxWIDTH")):
        with pytest.raises(EdgesegError, match=words):
            input_profile(dynamic, (1, 1, 1), shape, size_multiple=4)
    with pytest.raises(EdgesegError, match="height 256 and width any"):
        input_profile((-1, 256, -1, 1), (1, 1, 1), "512x512")


def test_build_engine_refuses_another_shape_before_importing_tensorrt(tmp_path):
    from tiny_models import tiny_onnx

    from edgeseg.trt.build import build_engine, check_engine_shape

    model = tiny_onnx(tmp_path / "m.onnx", 32)
    assert check_engine_shape(model, (1, 2, 4), "32x32")[2] == (4, 32, 32, 1)
    with pytest.raises(EdgesegError, match="m.onnx is exported for 32x32 images only"):
        build_engine(model, tmp_path, shape="64x64")
    assert not list(tmp_path.glob("*.engine"))


def test_layer_precisions_are_read_from_the_inspectors_formats():
    from edgeseg.trt.inspect import layer_precision, parse_engine_information, precision_summary, tensor_dtype

    assert tensor_dtype("Channel major FP16 format where channel % 8 == 0") == "fp16"
    assert tensor_dtype("Row major Int8 format") == "int8"
    assert tensor_dtype("Channel major INT8 format where channel % 32 == 0") == "int8"
    assert tensor_dtype("Row major linear FP32 format (kLINEAR)") == "fp32"
    assert tensor_dtype({"Name": "x", "DataType": "Half"}) == "fp16"
    assert tensor_dtype({"Name": "x"}) is None
    text = json.dumps({"Layers": [
        {"Name": "stem", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "a", "Format/Datatype": "Row major linear FP32 format (kLINEAR)"}]},
        {"Name": "ctx_d1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "b", "Format/Datatype": "Channel major INT8 format where channel % 32 == 0"}],
         "Outputs": [{"Name": "c", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Name": "sigmoid", "LayerType": "PointWiseV2",
         "Outputs": [{"Name": "d", "Format/Datatype": "Row major linear FP16 format"}]},
        "a layer name only"]})
    layers = parse_engine_information(text)
    assert [layer_precision(layer) for layer in layers] == ["fp32", "int8", "fp16", None]
    summary = precision_summary(layers)
    assert summary["convolutions"] == {"fp32": 1, "int8": 1} and summary["detailed"] is True
    assert summary["all"] == {"fp32": 1, "int8": 1, "fp16": 1, "unknown": 1}


def test_building_needs_no_pycuda_and_says_when_there_is_no_cuda_driver(monkeypatch):
    import ctypes

    import edgeseg.trt.build as build_module
    from edgeseg.trt import device

    import edgeseg.trt.manifest as manifest_module

    for module in (build_module, device, manifest_module):
        source = Path(module.__file__).read_text()
        assert 'require("pycuda' not in source and "import pycuda" not in source, module.__name__

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    with pytest.raises(EdgesegError, match="no CUDA driver"):
        device.gpu_info()


def test_build_engine_refuses_a_file_tensorrt_would_reject_before_importing_tensorrt(tmp_path):
    """The static importer check runs first: on a machine without TensorRT the user still hears what is wrong
    with the file (here an INT32 DequantizeLinear input, as ONNX Runtime writes for quantized biases)."""
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.trt.build import build_engine

    bias = helper.make_tensor("bias_q", TensorProto.INT32, [1], [7])
    scale = helper.make_tensor("bias_scale", TensorProto.FLOAT, [], [0.01])
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["bias_q", "bias_scale"], ["bias"], name="bias_dq"),
         helper.make_node("Add", ["image", "bias"], ["prob"], name="add")],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 8, 8, 1])], [bias, scale])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(EdgesegError, match="bias_dq"):
        build_engine(path, tmp_path)
    assert not list(tmp_path.glob("*.engine"))


# ---- on a GPU host (the demo network's engines: tests/trt/test_demo_engines.py) ----------------------------
@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """``onnx_models()`` → a small network deep enough to quantize (its convs pass --min-conv-depth 128) as
    FP32/FP16/INT8 ONNX, made on first call (TensorFlow and ONNX Runtime), so that setting up a GPU test
    never fails where TensorRT is missing: the test itself does."""
    import functools

    from edgeseg.export.onnx import export_onnx
    from edgeseg.export.precision import to_fp16, to_int8

    d = tmp_path_factory.mktemp("trt")

    @functools.cache
    def make():
        save_tiny_model(d / "model.keras", convs=((16, 1), (16, 2)), rescale=NOISE_UNITS)
        fp32 = export_onnx(d / "model.keras", d / "model.onnx", image_size=SIZE, parity_count=2).path
        return {"fp32": fp32, "fp16": to_fp16(fp32).path,
                "int8": to_int8(fp32, calib_count=16, calib_root=d / "calib").path}

    return make


def test_the_gpu_fixture_really_quantizes(onnx_models):
    from edgeseg.export.tensorrt_check import check_tensorrt
    from edgeseg.export.graph import onnx_precision

    models = onnx_models()
    assert onnx_precision(models["int8"]).value == "int8"
    assert check_tensorrt(models["int8"]) == [] and check_tensorrt(models["fp16"]) == []


@pytest.mark.gpu
@pytest.mark.parametrize("precision, tolerance", [("fp16", 1e-2), ("int8", 0.1)])
def test_engine_matches_onnxruntime(onnx_models, tmp_path, precision, tolerance):
    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner
    from edgeseg.runners.trt import TrtRunner
    from edgeseg.trt.build import build_engine

    cache = tmp_path / "timing.cache"
    models = onnx_models()
    result = build_engine(models[precision], tmp_path, batch=(1, 2, 4), workspace_mb=256, timing_cache=cache)
    meta = read_json(manifest_path(result.path))
    assert meta["precision"] == precision and meta["profile"]["max"] == [4, SIZE, SIZE, 1]
    assert cache.is_file() and meta["tensorrt"]["compute_capability"] and meta["config"]["tf32"] is False
    assert meta["layers"]["convolutions"].get(precision, 0) >= 1, meta["layers"]
    images = np.random.default_rng(0).integers(100, 128, size=(3, SIZE, SIZE), dtype=np.uint8)
    with TrtRunner(result.path) as trt_runner, OnnxRuntimeRunner(models[precision]) as ort_runner:
        trt_probs = trt_runner.infer(images)
        assert trt_probs.shape == (3, SIZE, SIZE)
        assert np.max(np.abs(trt_probs - ort_runner.infer(images))) < tolerance
        assert trt_runner.infer(images[:1]).shape == (1, SIZE, SIZE)
    # The cache it wrote is used on the next build (same device, same TensorRT).
    again = build_engine(models[precision], tmp_path / "again", batch=(1, 2, 4), workspace_mb=256,
                         timing_cache=cache)
    assert again.path.is_file()


@pytest.mark.gpu
def test_tf32_is_cleared_in_the_builder_config():
    import tensorrt as trt

    from edgeseg.trt.build import configure

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config, cache = configure(trt, builder, "image", (SIZE, SIZE, 1), (1, 2, 4), workspace_mb=64,
                              version_compatible=False, timing_cache=None)
    assert not config.get_flag(trt.BuilderFlag.TF32) and cache is None


@pytest.mark.gpu
def test_build_engine_from_fp32_with_fp16_flag_via_cli(onnx_models, tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli.app import app

    result = CliRunner().invoke(app, ["build-engine", "--fp16", "--model", str(onnx_models()["fp32"]), "--batch", "1,1,2",
                                      "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.fp16.engine").is_file() and (tmp_path / "model.fp16.engine.json").is_file()
