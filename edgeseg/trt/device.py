"""Which GPU this is, from the CUDA driver alone (``libcuda``, through ctypes).

Building an engine needs TensorRT and nothing else; the engine's manifest still names the GPU and compute
capability it was built for. Asking pycuda would make pycuda a build dependency, and asking TensorRT is not
possible (it has no device query), so this reads the driver API that every CUDA install and JetPack ships:
``cuInit``, ``cuDeviceGet``, ``cuDeviceGetName`` and ``cuDeviceGetAttribute`` (compute capability major 75,
minor 76, ``CUdevice_attribute`` in cuda.h).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

from edgeseg.errors import EdgesegError

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"

    def as_dict(self) -> dict[str, str]:
        return {"gpu": self.name, "compute_capability": self.compute_capability}


def _driver():
    names = (*_LIBRARIES, ctypes.util.find_library("cuda"))
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise EdgesegError("no CUDA driver (libcuda) on this machine: engines are built on the GPU that runs them")


def _call(lib, fn: str, *args) -> None:
    status = getattr(lib, fn)(*args)
    if status != 0:
        raise EdgesegError(f"CUDA driver call {fn} failed with error {status}")


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``index``."""
    lib = _driver()
    _call(lib, "cuInit", 0)
    count = ctypes.c_int()
    _call(lib, "cuDeviceGetCount", ctypes.byref(count))
    if not 0 <= index < count.value:
        raise EdgesegError(f"no CUDA device {index} (found {count.value})")
    device = ctypes.c_int()
    _call(lib, "cuDeviceGet", ctypes.byref(device), index)
    name = ctypes.create_string_buffer(256)
    _call(lib, "cuDeviceGetName", name, len(name), device)
    major, minor = ctypes.c_int(), ctypes.c_int()
    _call(lib, "cuDeviceGetAttribute", ctypes.byref(major), _CC_MAJOR, device)
    _call(lib, "cuDeviceGetAttribute", ctypes.byref(minor), _CC_MINOR, device)
    return GpuInfo(name.value.decode(errors="replace"), f"{major.value}.{minor.value}")
