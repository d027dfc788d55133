"""The demo network on TensorRT: what the README claims of its engines, proved on a GPU host.

Needs the demo's ONNX files (``make demo``, or copies of ``runs/demo/model*.onnx`` with their manifests in
``$EDGESEG_DEMO_RUN``; a Jetson trains nowhere and takes them from the machine that did) and TensorRT,
pycuda and an NVIDIA GPU. Everything is marked ``gpu``: skipped with the reason elsewhere, failing under
``make test-gpu`` (``EDGESEG_REQUIRE_GPU=1``). Engines are built once per module, on the first test that asks.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError

pytestmark = pytest.mark.gpu

#: What a precision may cost against another runtime of the same file (the compare table's tolerances).
MAX_DELTA_DICE = 0.002
MAX_DELTA_RECALL = 0.003


def demo_run() -> Path:
    run = Path(os.environ.get("EDGESEG_DEMO_RUN", "runs/demo"))
    missing = [p.name for p in (run / "model.onnx", run / "model.fp16.onnx", run / "model.int8.onnx") if not p.is_file()]
    assert not missing, f"{run} lacks {', '.join(missing)}: run `make demo` (or set EDGESEG_DEMO_RUN)"
    return run


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """``engines(precision, **options)`` → the demo model's engine for that precision, built on first use."""
    out = tmp_path_factory.mktemp("engines")

    @functools.cache
    def build(precision: str, version_compatible: bool = False) -> Path:
        from edgeseg.trt.build import build_engine

        name = f"model.{precision}{'.vc' if version_compatible else ''}.engine"
        return build_engine(demo_run() / f"model.{precision}.onnx", out / name, batch=(1, 8, 32),
                            version_compatible=version_compatible).path

    return build


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """``defects()`` → a generated set with the seed's defects (a seed no other set uses), made on first use."""
    out = tmp_path_factory.mktemp("data") / "seed"

    @functools.cache
    def make() -> Path:
        from typer.testing import CliRunner

        from edgeseg.cli.app import app

        r = CliRunner().invoke(app, ["generate", "--preset", "seed", "--count", "96", "--seed", "4711",
                                     "--out", str(out), "-q"])
        assert r.exit_code == 0, r.output
        return out

    return make


def quantized_convs(onnx_path: Path) -> int:
    import onnx

    model = onnx.load(str(onnx_path))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type == "Conv" and producers.get(n.input[1]) == "DequantizeLinear")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_demo_engines_run_their_convolutions_in_the_precision_asked(engines, precision):
    from edgeseg.artifacts import manifest_path, read_json

    meta = read_json(manifest_path(engines(precision)))
    convs = meta["layers"]["convolutions"]
    assert meta["layers"]["detailed"] and meta["config"]["tf32"] is False
    if precision == "int8":
        assert convs.get("int8", 0) >= quantized_convs(demo_run() / "model.int8.onnx") > 0, convs
    else:
        assert convs.get("fp16", 0) > convs.get("fp32", 0), convs  # FP32 is the raw-pixel stem only


def test_engines_agree_with_onnxruntime_on_defect_images_two_engines_in_one_process(engines, defects):
    """``compare`` activates every runner before running any: two engines, two CUDA contexts, one process."""
    from edgeseg.compare import compare

    run = demo_run()
    models = [run / "model.onnx", engines("fp16"), engines("int8"), run / "model.fp16.onnx", run / "model.int8.onnx"]
    rows = {Path(r["model"]).name: r for r in compare([str(m) for m in models], [defects()])["rows"]}
    for precision in ("fp16", "int8"):
        trt_row, ort_row = rows[f"model.{precision}.engine"], rows[f"model.{precision}.onnx"]
        assert trt_row["backend"] == "tensorrt" and trt_row["precision"] == precision
        assert abs(trt_row["dice"] - ort_row["dice"]) <= MAX_DELTA_DICE, (precision, trt_row["dice"], ort_row["dice"])
        assert abs(trt_row["defect_recall"] - ort_row["defect_recall"]) <= MAX_DELTA_RECALL, precision
        assert trt_row["fp_blobs_per_image"] <= ort_row["fp_blobs_per_image"] + 0.01, precision


def test_a_version_compatible_engine_builds_and_loads(engines):
    from edgeseg.artifacts import manifest_path, read_json
    from edgeseg.runners.trt import TrtRunner

    engine = engines("int8", version_compatible=True)
    assert read_json(manifest_path(engine))["tensorrt"]["version_compatible"] is True
    with TrtRunner(engine) as runner:  # deserialising needs engine_host_code_allowed
        assert runner.infer(np.full((2, 256, 256), 112, np.uint8)).shape == (2, 256, 256)


@pytest.mark.parametrize("field, value, message", [
    ("gpu", "Another GPU", "was built on Another GPU"),
    ("compute_capability", "5.3", "compute capability 5.3"),
    ("version", "9.0.0", "built by TensorRT 9.0.0"),
])
def test_a_foreign_engine_is_refused_with_its_message(engines, tmp_path, field, value, message):
    from edgeseg.artifacts import manifest_path
    from edgeseg.runners.trt import TrtRunner

    engine = engines("fp16")
    copy = tmp_path / engine.name
    shutil.copy(engine, copy)
    meta = json.loads(manifest_path(engine).read_text())
    meta["tensorrt"][field] = value
    manifest_path(copy).write_text(json.dumps(meta))
    with pytest.raises(EdgesegError, match=message):
        TrtRunner(copy).activate()
