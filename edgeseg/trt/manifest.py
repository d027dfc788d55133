"""The engine manifest, and the check that refuses a foreign or stale engine before TensorRT loads it.

A TensorRT engine runs only on the TensorRT version and GPU architecture that built it (version-compatible
engines also run on a *newer* runtime) and TensorRT has no preflight check: a mismatched plan fails inside
``deserialize_cuda_engine`` with a log line and a None, or worse, loads and misbehaves. So every engine has
``<name>.engine.json`` beside it, and :func:`check_engine` compares it with the machine about to run it.
Needs neither TensorRT nor a GPU (the runner passes in what it queried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifacts import manifest_path, read_json, sha256_file
from edgeseg.deps import require
from edgeseg.errors import EdgesegError


def _rebuild_hint(engine_path: Path) -> str:
    onnx = engine_manifest_source(engine_path)
    return f"rebuild it on this machine: edgeseg build-engine --model {onnx or 'MODEL.onnx'}"


def engine_manifest_source(engine_path: Path) -> str | None:
    try:
        return read_json(manifest_path(engine_path)).get("onnx", {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None


def _major_minor(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return ()


def check_engine(engine_path: str | Path, trt_version: str, gpu_name: str,
                 compute_capability: str | tuple[int, int], check_hash: bool = True) -> dict[str, Any]:
    """The engine's manifest if it was built for this TensorRT and GPU, else :class:`EdgesegError`.

    ``trt_version``: the runtime's ``tensorrt.__version__``; ``gpu_name`` and ``compute_capability``
    ("8.7" or (8, 7)) of the device about to run it. The engine must come from the same TensorRT
    major.minor — or an older one when it was built version-compatible — and the same compute capability;
    a different GPU name with the same capability is accepted (same architecture, same kernels).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EdgesegError(f"engine not found: {engine_path}")
    mpath = manifest_path(engine_path)
    if not mpath.is_file():
        raise EdgesegError(f"{engine_path} has no manifest ({mpath.name}), so it cannot be checked against this "
                           f"TensorRT and GPU; {_rebuild_hint(engine_path)}")
    try:
        meta = read_json(mpath)
        built = meta["tensorrt"]
        built_version, built_cc, built_gpu = str(built["version"]), str(built["compute_capability"]), built["gpu"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgesegError(f"{mpath} is not an engine manifest ({e}); {_rebuild_hint(engine_path)}") from e
    cc = ".".join(str(v) for v in compute_capability) if isinstance(compute_capability, tuple) else str(compute_capability)
    if built_cc != cc:
        raise EdgesegError(f"{engine_path} was built for compute capability {built_cc} ({built_gpu}), this GPU is "
                           f"{cc} ({gpu_name}); engines do not move across GPU architectures: {_rebuild_hint(engine_path)}")
    ours, theirs = _major_minor(trt_version), _major_minor(built_version)
    compatible = bool(built.get("version_compatible")) and theirs <= ours
    if ours != theirs and not compatible:
        raise EdgesegError(f"{engine_path} was built by TensorRT {built_version}, this is TensorRT {trt_version}; "
                           f"{_rebuild_hint(engine_path)}")
    if check_hash and meta.get("sha256") and sha256_file(engine_path) != meta["sha256"]:
        raise EdgesegError(f"{engine_path} does not match its manifest's sha256 (changed after it was built); "
                           f"{_rebuild_hint(engine_path)}")
    return meta


def current_device(index: int = 0) -> dict[str, str]:
    """``{"gpu": name, "compute_capability": "8.7"}`` of CUDA device ``index``, via pycuda."""
    cuda = require("pycuda.driver")
    cuda.init()
    if cuda.Device.count() <= index:
        raise EdgesegError(f"no CUDA device {index} (found {cuda.Device.count()})")
    dev = cuda.Device(index)
    major, minor = dev.compute_capability()
    return {"gpu": dev.name(), "compute_capability": f"{major}.{minor}"}
