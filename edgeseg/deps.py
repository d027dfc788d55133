"""Lazy, explicit imports of the heavy optional packages (TensorFlow, ONNX Runtime, TensorRT, pycuda).

Importing ``edgeseg`` or running ``edgeseg --help`` must not pay for TensorFlow, and a machine without
TensorRT must still run every other command; so heavy modules are imported where they are used, through
:func:`require`, which turns an ImportError into a message that says how to install the missing piece.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeseg.errors import MissingDependency

# What to tell the user for each module we import lazily.
_HOW_TO_INSTALL = {
    "tensorflow": "pip install 'edgeseg[dev]'",
    "keras": "pip install 'edgeseg[dev]'",
    "tf2onnx": "pip install 'edgeseg[dev]'",
    "onnx": "pip install 'edgeseg[dev]'",
    "onnxruntime": "pip install 'edgeseg[dev]'",
    "onnxconverter_common": "pip install 'edgeseg[dev]'",
    "matplotlib": "pip install 'edgeseg[dev]'",
    "skimage": "pip install 'edgeseg[dev]' (scikit-image)",
    "modelopt": "pip install 'edgeseg[modelopt]'",
    "tensorrt": (
        "on a GPU host: pip install 'edgeseg[trt]' (TensorRT wheels come from NVIDIA's index, "
        "pip install --extra-index-url https://pypi.nvidia.com tensorrt); "
        "on Jetson: use JetPack's python3-libnvinfer via `make jetson-setup`"
    ),
    "pycuda": (
        "pip install 'edgeseg[trt]' with the CUDA toolkit present (set CUDA_ROOT, e.g. /usr/local/cuda); "
        "on Jetson: `make jetson-setup`"
    ),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        how = _HOW_TO_INSTALL.get(top, f"pip install {top}")
        raise MissingDependency(f"{module} is needed here but is not installed: {how}") from e


def available(module: str) -> bool:
    """True when ``module`` imports (used by tests and by ``edgeseg bench`` to pick backends)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def versions(*modules: str) -> dict[str, str]:
    """Installed versions of the given top-level packages (absent ones are left out)."""
    from importlib import metadata

    dist_names = {"cv2": "opencv-python-headless", "tensorflow": "tensorflow-cpu"}
    out: dict[str, str] = {}
    for mod in modules:
        for dist in (dist_names.get(mod), mod, mod.replace("_", "-")):
            if not dist:
                continue
            try:
                out[mod] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            if mod == "tensorflow":
                try:
                    out[mod] = metadata.version("tensorflow")
                except metadata.PackageNotFoundError:
                    pass
    return out
