"""Engine manifests (checked without TensorRT) and, on a GPU host, FP16/INT8 engines built from a tiny model
and compared with ONNX Runtime (marked ``gpu``: they skip here with the reason, run under ``make test-gpu``)."""

from __future__ import annotations

import json

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
    assert check_engine(engine, "10.3.0.30", "Orin", (8, 7))["tensorrt"]["gpu"] == "Orin"
    # Same architecture under another name (e.g. another Orin module) runs the same kernels.
    assert check_engine(engine, "10.3.1", "Jetson AGX Orin", "8.7")


def test_check_engine_refuses_another_tensorrt(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path)
    with pytest.raises(EdgesegError, match="built by TensorRT 10.3.0, this is TensorRT 11.2.0.*rebuild") as e:
        check_engine(engine, "11.2.0", "Orin", "8.7")
    assert "edgeseg build-engine --model runs/demo/model.int8.onnx" in str(e.value)
    assert "\n" not in str(e.value)


def test_version_compatible_engines_run_on_newer_tensorrt_only(tmp_path):
    from edgeseg.trt.manifest import check_engine

    engine = engine_with_manifest(tmp_path, version_compatible=True)
    assert check_engine(engine, "11.2.0", "Orin", "8.7")
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


def test_engine_names_and_profiles():
    from edgeseg.trt.build import check_profile, engine_path_for

    assert engine_path_for("runs/demo/model.int8.onnx").as_posix() == "engines/model.int8.engine"
    assert engine_path_for("m.onnx", "out/x.engine").as_posix() == "out/x.engine"
    assert check_profile((1, 8, 32)) == (1, 8, 32)
    with pytest.raises(EdgesegError, match="MIN <= OPT <= MAX"):
        check_profile((0, 1, 2))


# ---- on a GPU host ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from edgeseg.export.onnx import export_onnx
    from edgeseg.export.precision import to_fp16, to_int8

    d = tmp_path_factory.mktemp("trt")
    save_tiny_model(d / "model.keras", convs=((8, 1),), rescale=NOISE_UNITS)
    fp32 = export_onnx(d / "model.keras", d / "model.onnx", image_size=SIZE, parity_count=2).path
    return {"fp32": fp32, "fp16": to_fp16(fp32).path,
            "int8": to_int8(fp32, calib_count=16, calib_root=d / "calib").path}


@pytest.mark.gpu
@pytest.mark.parametrize("precision, tolerance", [("fp16", 1e-2), ("int8", 0.1)])
def test_engine_matches_onnxruntime(onnx_models, tmp_path, precision, tolerance):
    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner
    from edgeseg.runners.trt import TrtRunner
    from edgeseg.trt.build import build_engine

    cache = tmp_path / "timing.cache"
    result = build_engine(onnx_models[precision], tmp_path, batch=(1, 2, 4), workspace_mb=256, timing_cache=cache)
    meta = read_json(manifest_path(result.path))
    assert meta["precision"] == precision and meta["profile"]["max"] == [4, SIZE, SIZE, 1]
    assert cache.is_file() and meta["tensorrt"]["compute_capability"]
    images = np.random.default_rng(0).integers(100, 128, size=(3, SIZE, SIZE), dtype=np.uint8)
    with TrtRunner(result.path) as trt_runner, OnnxRuntimeRunner(onnx_models[precision]) as ort_runner:
        trt_probs = trt_runner.infer(images)
        assert trt_probs.shape == (3, SIZE, SIZE)
        assert np.max(np.abs(trt_probs - ort_runner.infer(images))) < tolerance
        assert trt_runner.infer(images[:1]).shape == (1, SIZE, SIZE)


@pytest.mark.gpu
def test_build_engine_from_fp32_with_fp16_flag_via_cli(onnx_models, tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli.app import app

    result = CliRunner().invoke(app, ["build-engine", "--fp16", "--model", str(onnx_models["fp32"]), "--batch", "1,1,2",
                                      "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.fp16.engine").is_file() and (tmp_path / "model.fp16.engine.json").is_file()
