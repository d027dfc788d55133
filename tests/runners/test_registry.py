"""The backend registry: one entry per backend, and a new backend added with one file and one entry
(tests/dummy_backend.py) runs through load_runner, the benchmark harness and the option routing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseg.errors import EdgesegError


@pytest.fixture
def boxnet(tmp_path):
    from edgeseg.runners import registry

    from dummy_backend import INFO

    registry.register(INFO)  # the one registry entry
    path = tmp_path / "m.boxnet"
    path.write_text(json.dumps({"size": 5, "level": 112, "scale": 2}))
    yield path
    registry.BACKENDS.pop(INFO.name)


def test_a_new_backend_is_one_file_and_one_entry(boxnet):
    from edgeseg.bench.harness import Timing, bench_images, sweep
    from edgeseg.runners import load_runner
    from edgeseg.runners.registry import backend_of

    assert backend_of(boxnet).name == "boxnet"
    with load_runner(boxnet, size=3) as runner:
        probs = runner.infer(np.full((2, 16, 16), 120, np.uint8))
        assert probs.shape == (2, 16, 16) and np.allclose(probs, 1 / (1 + np.exp(-4)))
        assert runner.describe() == "m.boxnet [boxnet fp32]"
    rows = sweep([boxnet], (1, 2), Timing(0.0, 0.05, 1), images=bench_images(4, 16))
    assert [r["backend"] for r in rows] == ["boxnet", "boxnet"] and rows[0]["runner_config"]["size"] == 5


def test_a_new_backend_is_scored_like_any_other(boxnet, tmp_path):
    from edgeseg.compare import compare
    from edgeseg.data.dataset import write_dataset
    from edgeseg.data.synth import preset

    data = write_dataset(tmp_path / "d", preset("seed").replace(image_size=32, defect_size=(8, 16),
                                                                 contrast=(20, 20)), 4, seed=1)
    wide = tmp_path / "w.boxnet"
    wide.write_text(json.dumps({"size": 9, "level": 112, "scale": 2}))
    rows = compare([str(boxnet), str(wide)], [data], threshold=0.5)["rows"]  # no manifests: a chosen threshold
    assert [r["backend"] for r in rows] == ["boxnet", "boxnet"] and rows[0]["defect_recall"] > 0.5
    assert rows[1]["reference"] is False and 0 < rows[1]["mask_iou_vs_ref"] < 1


def test_options_are_routed_to_the_backends_that_take_them(boxnet):
    from edgeseg.runners.registry import info

    asked = {"size": 7, "workers": 2, "streams": None}
    assert info("boxnet").accepts(asked) == {"size": 7}
    assert info("onnxruntime").accepts(asked) == {"workers": 2}
    assert info("tensorrt").accepts(asked) == {}


def test_suffixes_and_names_are_checked():
    from edgeseg.runners.registry import BackendInfo, backend_of, load_runner, register

    assert backend_of("m.onnx").name == "onnxruntime" and backend_of("x.plan").name == "tensorrt"
    assert backend_of("classical").name == "classical"
    with pytest.raises(EdgesegError, match="cannot tell the backend of m.pt"):
        backend_of("m.pt")
    with pytest.raises(EdgesegError, match="is a onnxruntime artifact, not one for the keras backend"):
        backend_of("m.onnx", "keras")
    with pytest.raises(EdgesegError, match="unknown backend 'nope'"):
        backend_of("m.onnx", "nope")
    for missing in ("missing.onnx", "missing"):  # a missing file is said as such, whatever its suffix
        with pytest.raises(EdgesegError, match="model file not found"):
            load_runner(missing)
    with pytest.raises(ValueError, match=r"\.onnx is already read by onnxruntime"):
        register(BackendInfo("other", "x:Y", (".onnx",)))


def test_the_runners_package_has_no_import_cycle():
    """base.py imports no runner; the registry imports runners by name on first use only."""
    code = ("import sys, edgeseg.runners.base, edgeseg.runners.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('edgeseg.runners.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['edgeseg.runners.base', 'edgeseg.runners.registry']"
