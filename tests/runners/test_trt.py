"""TrtRunner on a real engine (GPU hosts only: TensorRT + pycuda + an NVIDIA GPU; skipped elsewhere).

The engine is built from a tiny ONNX graph by `edgeseg build-engine` (the deploy helper's command), so this
also checks that the runner reads what the builder writes: manifest, profile, I/O names.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError

# Imports of the CLI (typer) happen inside the tests: on a bare GPU host without them this module must still
# be collected, so that its tests skip with the marker's reason instead of failing to import.
pytestmark = pytest.mark.gpu


def invoke(args):
    from typer.testing import CliRunner

    from edgeseg.cli.app import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built()`` → (tiny ONNX, its engine), built by `edgeseg build-engine` on first call: a fixture that
    touched TensorRT while being set up would error where TensorRT is missing, instead of the test failing."""
    import functools

    from tiny_models import tiny_onnx

    d = tmp_path_factory.mktemp("trt")

    @functools.cache
    def build():
        onnx_path = tiny_onnx(d / "tiny.onnx", size=32)
        r = invoke(["build-engine", "--model", str(onnx_path), "--batch", "1,4,8", "--out", str(d / "engines")])
        assert r.exit_code == 0, r.output
        (engine,) = sorted((d / "engines").glob("*.engine"))
        return onnx_path, engine

    return build


def _reference(onnx_path, x):
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    with OnnxRuntimeRunner(onnx_path) as ort:
        return ort.infer(x)


def test_engine_matches_onnx_runtime_for_every_batch_in_the_profile(built):
    from edgeseg.bench.harness import bench_images
    from edgeseg.runners.trt import TrtRunner

    onnx_path, engine = built()
    x = bench_images(8, 32)
    ref = _reference(onnx_path, x)
    with TrtRunner(engine, streams=2) as trt:
        assert trt.batch_range == (1, 8) and trt.image_shape == (32, 32)
        for n in (1, 3, 8):
            out = trt.infer(x[:n])
            assert out.shape == (n, 32, 32)          # the real batch, not the profile's maximum
            np.testing.assert_allclose(out, ref[:n], atol=1e-3)
        with pytest.raises(EdgesegError, match="outside the engine's optimization profile"):
            trt.infer(np.concatenate([x, x[:1]]))


def test_pipelined_streams_return_batches_in_order_with_a_split(built):
    from edgeseg.bench.harness import bench_images
    from edgeseg.runners.trt import TrtRunner

    onnx_path, engine = built()
    x = bench_images(16, 32, seed=5)
    ref = _reference(onnx_path, x)
    with TrtRunner(engine, streams=2) as trt:
        trt.drain_split()
        a, b = trt.submit(x[:8]), trt.submit(x[8:])
        np.testing.assert_allclose(trt.collect(a), ref[:8], atol=1e-3)
        np.testing.assert_allclose(trt.collect(b), ref[8:], atol=1e-3)
        split = trt.drain_split()
    assert all(len(v) == 2 for v in split.values()) and all(v > 0 for v in split["compute"])


def test_bench_cli_on_an_engine(built, tmp_path):
    _, engine = built()
    base = ["bench", "--model", str(engine), "--warmup-s", "0", "--duration-s", "0.2", "--repeats", "1"]
    ok = invoke(base + ["--batch-sizes", "1,8", "--json", str(tmp_path / "b.json")])
    assert ok.exit_code == 0, ok.output
    bad = invoke(base + ["--batch-sizes", "1,16"])
    assert bad.exit_code == 1 and "outside the engine's optimization profile" in bad.output
