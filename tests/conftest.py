"""Shared fixtures and the GPU marker policy.

Tests marked ``gpu`` need an NVIDIA GPU with TensorRT and pycuda; those also marked ``transport`` need pycuda
and the GPU only (they run the CUDA transport with a kernel of their own, never TensorRT). Where something is
missing they skip with the reason. Under ``EDGESEG_REQUIRE_GPU=1`` (``make test-gpu``) they fail instead, in
the test itself with a message naming what is missing, so a GPU host that silently lacks TensorRT is noticed.
GPU fixtures therefore never touch TensorRT or CUDA while they are set up: they hand the test a builder that
it calls.
"""

from __future__ import annotations

import functools
import os

import pytest


@functools.cache
def gpu_missing(need_tensorrt: bool = True) -> str | None:
    """Why a GPU test cannot run here, or None."""
    from edgeseg.deps import available

    missing = [m for m in (("tensorrt", "pycuda") if need_tensorrt else ("pycuda",)) if not available(m)]
    if missing:
        return (f"needs {' and '.join(missing)} on an NVIDIA GPU host (install the trt extra there, "
                "then run `make test-gpu`)")
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device visible"
    except Exception as e:  # driver missing or broken
        return f"CUDA driver not usable: {e}"
    return None


def _reason(item) -> str | None:
    return gpu_missing(need_tensorrt="transport" not in item.keywords)


def require_gpu() -> bool:
    return os.environ.get("EDGESEG_REQUIRE_GPU") == "1"


def pytest_collection_modifyitems(config, items):
    if require_gpu():
        return
    for item in items:
        if "gpu" in item.keywords:
            reason = _reason(item)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    # Under EDGESEG_REQUIRE_GPU=1 a GPU test that cannot run fails here, in its own call, naming what is missing.
    if require_gpu() and "gpu" in item.keywords:
        reason = _reason(item)
        if reason:
            pytest.fail(f"EDGESEG_REQUIRE_GPU=1 but this test {reason}", pytrace=False)
