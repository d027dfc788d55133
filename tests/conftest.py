"""Shared fixtures and the GPU marker policy.

Tests marked ``gpu`` need an NVIDIA GPU with TensorRT and pycuda. Where those are missing they skip with the
reason; under ``EDGESEG_REQUIRE_GPU=1`` (``make test-gpu``) they run anyway and fail, so a GPU host that
silently lacks TensorRT is noticed.
"""

from __future__ import annotations

import os

import pytest


def _gpu_missing() -> str | None:
    from edgeseg.deps import available

    missing = [m for m in ("tensorrt", "pycuda") if not available(m)]
    if missing:
        return f"needs {' and '.join(missing)} on an NVIDIA GPU host (run `make test-gpu` there)"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device visible"
    except Exception as e:  # driver missing or broken
        return f"CUDA driver not usable: {e}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or os.environ.get("EDGESEG_REQUIRE_GPU") == "1":
        return
    reason = _gpu_missing()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
