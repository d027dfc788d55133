"""The engine manifest, and the check that refuses a foreign or stale engine before TensorRT loads it.

A TensorRT engine runs only on the TensorRT version and GPU that built it (version-compatible engines also
run on a *newer* runtime) and TensorRT has no preflight check: a mismatched plan fails inside
``deserialize_cuda_engine`` with a log line and a None, or worse, loads and misbehaves. So every engine has
``<name>.engine.json`` beside it, and :func:`check_engine` compares it with the machine about to run it.
Needs neither TensorRT nor a GPU (the runner passes in what it queried).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.artifacts import manifest_path, read_json, sha256_file
from edgeseg.errors import EdgesegError


def _rebuild_hint(engine_path: Path) -> str:
    onnx = engine_manifest_source(engine_path)
    return f"rebuild it on this machine: edgeseg build-engine --model {onnx or 'MODEL.onnx'}"


def engine_manifest_source(engine_path: Path) -> str | None:
    try:
        return read_json(manifest_path(engine_path)).get("onnx", {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None


def _version(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` → (10, 3, 0, 30); () when it is not a version."""
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return ()


def version_refusal(built: str, runtime: str, version_compatible: bool) -> str | None:
    """Why TensorRT ``runtime`` cannot load an engine built by TensorRT ``built``, or None when it can.

    A standard engine runs only on the exact TensorRT version that built it. A version-compatible engine
    (it embeds a lean runtime) also runs on a newer runtime of the same major, and across majors only from
    10 to 11 (TensorRT's engine-compatibility and 10.x → 11.x migration documentation).
    """
    b, r = _version(built), _version(runtime)
    if not b or not r:
        return f"cannot compare TensorRT versions {built!r} and {runtime!r}"
    if not version_compatible:
        if b != r:
            return (f"was built by TensorRT {built}, this is TensorRT {runtime} (a standard engine needs the exact "
                    "version that built it; build with --version-compatible for newer runtimes)")
        return None
    if r < b:
        return f"was built by TensorRT {built}, newer than this TensorRT {runtime}"
    if r[0] != b[0] and (b[0], r[0]) != (10, 11):
        return (f"was built by TensorRT {built} (version-compatible), which TensorRT {runtime} cannot load: across "
                "majors only 10 → 11 is supported")
    return None


def check_engine(engine_path: str | Path, trt_version: str, gpu_name: str,
                 compute_capability: str | tuple[int, int], check_hash: bool = True) -> dict[str, Any]:
    """The engine's manifest if it was built for this TensorRT and GPU, else :class:`EdgesegError`.

    ``trt_version``: the runtime's ``tensorrt.__version__``; ``gpu_name`` and ``compute_capability``
    ("8.7" or (8, 7)) of the device about to run it. TensorRT versions must match as
    :func:`version_refusal` says; the GPU must be the same model, not only the same compute capability:
    engines hold kernels timed and chosen on the device that built them (Jetson modules with one compute
    capability differ in SMs, clocks and memory). The manifest must name the engine's sha256.
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
    if built_gpu != gpu_name:
        raise EdgesegError(f"{engine_path} was built on {built_gpu}, this GPU is {gpu_name} (same compute capability "
                           f"{cc}, but kernels are chosen for the device that built them): {_rebuild_hint(engine_path)}")
    refusal = version_refusal(built_version, trt_version, bool(built.get("version_compatible")))
    if refusal:
        raise EdgesegError(f"{engine_path} {refusal}; {_rebuild_hint(engine_path)}")
    if check_hash:
        if not meta.get("sha256"):
            raise EdgesegError(f"{mpath} names no sha256, so it cannot vouch for {engine_path.name}; "
                               f"{_rebuild_hint(engine_path)}")
        if sha256_file(engine_path) != meta["sha256"]:
            raise EdgesegError(f"{engine_path} does not match its manifest's sha256 (changed after it was built); "
                               f"{_rebuild_hint(engine_path)}")
    return meta


def runtime_flags(manifest: dict[str, Any]) -> dict[str, bool]:
    """``trt.Runtime`` attributes an engine needs before ``deserialize_cuda_engine``: a version-compatible
    plan embeds its own lean runtime, which TensorRT runs only with ``engine_host_code_allowed`` (TensorRT's
    ``samples/common/sampleEngines.cpp`` and Polygraphy's engine loader do the same)."""
    compatible = bool((manifest.get("tensorrt") or {}).get("version_compatible"))
    return {"engine_host_code_allowed": True} if compatible else {}


def current_device(index: int = 0) -> dict[str, str]:
    """``{"gpu": name, "compute_capability": "8.7"}`` of CUDA device ``index`` (CUDA driver only)."""
    from edgeseg.trt.device import gpu_info

    return gpu_info(index).as_dict()
