"""What a GPU host or a Jetson installs: the extras and Makefile targets that TensorRT and pycuda need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def make_n(target: str) -> str:
    return subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True).stdout


def test_trt_extras_name_the_cuda_build_and_a_pycuda_that_runs_on_cuda_13():
    # The bare `tensorrt` package installs the CUDA 13 build (driver r580+): the default extra must not.
    assert "tensorrt-cu12>=10" in extras()["trt"] and not any(d.startswith("tensorrt>") for d in extras()["trt"])
    assert any(d.startswith("tensorrt-cu13") for d in extras()["trt-cu13"])
    for extra in ("trt", "trt-cu13"):
        assert "pycuda>=2025.1.2" in extras()[extra]


def test_gpu_targets_put_nvcc_on_path_and_jetson_setup_checks_its_prerequisites():
    assert '/bin:$PATH" EDGESEG_REQUIRE_GPU=1' in make_n("test-gpu")
    jetson = make_n("jetson-setup")
    for needed in ("python3-venv", "python3-dev", "Python.h", "include/cuda.h", "pycuda>=2025.1.2", "JetPack 7.2.2+"):
        assert needed in jetson, needed
