"""A TensorRT engine from an FP32, FP16 or INT8 (Q/DQ) ONNX file, as a strongly typed network.

The precision is already in the ONNX graph (see :mod:`edgeseg.export.precision`): TensorRT 11 has no
FP16/INT8 builder flags, and TensorRT 10 (JetPack) builds the same file when the network is created
STRONGLY_TYPED. The file is first checked against TensorRT's importer rules without TensorRT
(:mod:`edgeseg.export.tensorrt_check`), so a file TensorRT would refuse is refused with its fix before
anything is parsed. The batch dimension gets one optimisation profile (MIN, OPT, MAX): keep OPT at the batch
the line actually runs, since kernels are tuned for it. The image shape is the ONNX file's own (``edgeseg
export --shape HxW`` fixes it); only a file with dynamic H and W takes ``--shape HxW`` or a range
``MINHxMINW:OPTHxOPTW:MAXHxMAXW`` (:func:`input_profile`, a pure function), and the engine's runner runs it
at OPT, tiling other sizes. TF32 is cleared: FP32 layers (the raw-pixel stem,
which subtracts a level of ~112 from raw pixels) must not round to a 10-bit mantissa. Building needs TensorRT
and the CUDA driver, not pycuda. The engine is written atomically with a manifest that
:func:`edgeseg.trt.manifest.check_engine` reads before anything deserialises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeseg.artifacts import atomic_path, sha256_file, write_bytes, write_manifest
from edgeseg.deps import require
from edgeseg.errors import BadInput, EdgesegError
from edgeseg.export.onnx import inherited, source_manifest
from edgeseg.progress import Progress, silent
from edgeseg.shapes import Shape, check_shape, format_shape, parse_profile
from edgeseg.trt.inspect import inspect_plan, precision_summary

DEFAULT_BATCH = (1, 8, 32)
DEFAULT_WORKSPACE_MB = 1024


@dataclass(frozen=True)
class EngineResult:
    path: Path
    precision: str
    profile: tuple[int, int, int]
    shape: tuple[Shape, Shape, Shape] | None = None  # (MIN, OPT, MAX) image shapes


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def onnx_input_dims(onnx_path: str | Path) -> tuple[int, ...]:
    """The ONNX file's input shape with -1 for every dynamic dimension, as TensorRT's parser reports it."""
    from edgeseg.export.graph import load_onnx

    model = load_onnx(onnx_path)
    if len(model.graph.input) != 1:
        raise EdgesegError(f"{onnx_path} has {len(model.graph.input)} inputs; edgeseg models have one (image)")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims)


def input_profile(dims: Sequence[int], batch: tuple[int, int, int], shape: str | None = None,
                  size_multiple: int = 1, name: str = "the ONNX file") -> Profile:
    """The (MIN, OPT, MAX) input shapes (N, H, W, 1) TensorRT's optimisation profile gets.

    ``dims``: the network input as parsed, -1 where dynamic (N always is). ``shape`` is ``--shape``: for a
    file exported for one H×W it may only repeat that shape (a fixed-size file cannot be built for another one:
    re-export it); for dynamic H and W it is required, ``HxW`` (MIN = OPT = MAX) or
    ``MINHxMINW:OPTHxOPTW:MAXHxMAXW``, each side a multiple of ``size_multiple``.

        input_profile((-1, 256, 256, 1), (1, 8, 32))          # → ((1,256,256,1), (8,256,256,1), (32,256,256,1))
        input_profile((-1, -1, -1, 1), (1, 1, 4), "512x512:1024x1024:2048x2048", 4)
    """
    lo, opt, hi = check_profile(batch)
    dims = tuple(int(d) for d in dims)
    if len(dims) != 4 or dims[3] not in (1, -1):
        raise EdgesegError(f"{name} takes input shaped {dims}; edgeseg models take (N, H, W, 1)")
    h, w = dims[1], dims[2]
    given = parse_profile(shape) if shape is not None else None
    if h > 0 and w > 0:
        if given is not None and any(s != (h, w) for s in given):
            raise BadInput(f"--shape {shape}: {name} is exported for {h}x{w} images only; build it at --shape {h}x{w} "
                           f"(or without --shape), or re-export the model with edgeseg export --shape HxW")
        shapes = ((h, w),) * 3
    else:
        if given is None:
            raise BadInput(f"{name} takes images of any size: give --shape HxW, or a range "
                           "MINHxMINW:OPTHxOPTW:MAXHxMAXW (it runs at OPT)")
        for s in given:
            if (h > 0 and s[0] != h) or (w > 0 and s[1] != w):
                raise BadInput(f"--shape {shape}: {name} takes images of height {h if h > 0 else 'any'} and width "
                               f"{w if w > 0 else 'any'}")
            check_shape(s, size_multiple, "--shape", name)
        shapes = given
    return tuple((b, *s, 1) for b, s in zip((lo, opt, hi), shapes))  # type: ignore[return-value]


def profile_record(input_name: str, profile: Profile) -> dict:
    """The manifest's ``profile``: input name, MIN/OPT/MAX shapes, and the image shape the engine runs at."""
    lo, opt, hi = (list(p) for p in profile)
    return {"input": input_name, "min": lo, "opt": opt, "max": hi, "shape": opt[1:3]}


def engine_path_for(onnx_path: str | Path, out: str | Path = "engines") -> Path:
    """``runs/demo/model.int8.onnx`` + ``engines/`` → ``engines/model.int8.engine``; an ``out`` ending in
    ``.engine`` is used as is."""
    out = Path(out)
    if out.suffix in (".engine", ".plan"):
        return out
    name = Path(onnx_path).name
    return out / f"{name[:-5] if name.endswith('.onnx') else name}.engine"


def network_flags(trt) -> int:
    """Creation flags for a strongly typed network: the flag on TensorRT 10, the default on 11+."""
    major = int(trt.__version__.split(".")[0])
    if major >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def configure(trt, builder, input_name: str, item_shape: tuple[int, ...], batch: tuple[int, int, int], *,
              workspace_mb: int, version_compatible: bool, timing_cache: bytes | None,
              shapes: Profile | None = None):
    """The builder config: workspace, one profile (``shapes`` from :func:`input_profile`, else ``batch`` over
    the fixed ``item_shape``), TF32 off, detailed layer information (so the engine inspector can show each
    layer's precision), optional version compatibility and timing cache. Returns ``(config, cache)``; a timing
    cache TensorRT will not use (another device or version) is an error, not a silent rebuild from scratch."""
    lo, opt, hi = batch
    if shapes is None:
        shapes = ((lo, *item_shape), (opt, *item_shape), (hi, *item_shape))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *(tuple(s) for s in shapes))
    config.add_optimization_profile(profile)
    config.clear_flag(trt.BuilderFlag.TF32)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise EdgesegError("the timing cache was made on another GPU or TensorRT version and TensorRT will not "
                               "use it: delete it or pass another --timing-cache")
    return config, cache


def check_profile(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(b) for b in batch)
    if not 1 <= lo <= opt <= hi:
        raise EdgesegError(f"--batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {lo},{opt},{hi}")
    return lo, opt, hi


def check_engine_shape(onnx_path: str | Path, batch: tuple[int, int, int], shape: str | None = None) -> Profile:
    """:func:`input_profile` of an ONNX file, read without TensorRT (its manifest's ``size_multiple`` where it
    has one), so a ``--shape`` the file cannot take is refused before TensorRT is needed."""
    onnx_path = Path(onnx_path)
    multiple = int((source_manifest(onnx_path).get("config") or {}).get("size_multiple") or 1)
    return input_profile(onnx_input_dims(onnx_path), batch, shape, multiple, onnx_path.name)


def build_engine(onnx_path: str | Path, out: str | Path = "engines", *, batch: tuple[int, int, int] = DEFAULT_BATCH,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, timing_cache: str | Path | None = None,
                 version_compatible: bool = False, shape: str | None = None,
                 progress: Progress = silent) -> EngineResult:
    """Build ``onnx_path`` into an engine under ``out`` (see the module docstring); ``shape``: ``--shape``
    (:func:`input_profile`)."""
    from edgeseg.export.tensorrt_check import require_tensorrt_compatible
    from edgeseg.export.graph import onnx_precision
    from edgeseg.trt.manifest import current_device

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EdgesegError(f"ONNX file not found: {onnx_path}")
    lo, opt, hi = check_profile(batch)
    if workspace_mb <= 0:
        raise EdgesegError(f"--workspace must be a positive number of MB, got {workspace_mb}")
    src = source_manifest(onnx_path)
    if src.get("config", {}).get("symmetric") is False:
        raise EdgesegError(f"{onnx_path} was quantized for the CPU (asymmetric uint8 activations), which TensorRT "
                           "rejects: quantize the FP32 model with --target tensorrt")
    check_engine_shape(onnx_path, (lo, opt, hi), shape)  # before TensorRT: a --shape the file cannot take
    require_tensorrt_compatible(onnx_path)
    trt = require("tensorrt")
    device = current_device()
    precision = onnx_precision(onnx_path).value
    engine_path = engine_path_for(onnx_path, out)

    progress(0, 3, f"parsing {onnx_path.name}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no details"
        raise EdgesegError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    if network.num_inputs != 1:
        raise EdgesegError(f"{onnx_path} has {network.num_inputs} inputs; edgeseg models have one (image)")
    inp = network.get_input(0)
    multiple = int((src.get("config") or {}).get("size_multiple") or 1)
    shapes = input_profile(tuple(inp.shape), (lo, opt, hi), shape, multiple, onnx_path.name)

    cache_bytes = None
    if timing_cache is not None:
        timing_cache = Path(timing_cache)
        cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    config, cache = configure(trt, builder, inp.name, shapes[1][1:], (lo, opt, hi), workspace_mb=workspace_mb,
                              version_compatible=version_compatible, timing_cache=cache_bytes, shapes=shapes)

    progress(1, 3, f"building {precision} engine, batch {lo}..{hi} (opt {opt}), "
                   f"{' .. '.join(dict.fromkeys(format_shape(s[1:3]) for s in shapes))} images")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgesegError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    plan = bytes(memoryview(plan))
    progress(2, 3, "reading back layer precisions")
    layers = inspect_plan(trt, plan, logger)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(plan)
    if cache is not None:
        write_bytes(timing_cache, bytes(memoryview(cache.serialize())))

    write_manifest(
        engine_path, "engine",
        config={"batch": [lo, opt, hi], "shape": [list(s[1:3]) for s in shapes], "workspace_mb": workspace_mb,
                "version_compatible": version_compatible, "timing_cache": str(timing_cache) if timing_cache else None,
                "strongly_typed": True, "tf32": False},
        inputs={str(onnx_path): sha256_file(onnx_path)},
        precision=precision,
        profile=profile_record(inp.name, shapes),
        tensorrt={"version": trt.__version__, "gpu": device["gpu"], "compute_capability": device["compute_capability"],
                  "version_compatible": version_compatible},
        onnx={"path": str(onnx_path), "sha256": sha256_file(onnx_path)},
        calibration=src.get("calibration"),
        layers=precision_summary(layers),
        **inherited(src),
    )
    progress(3, 3, str(engine_path))
    return EngineResult(engine_path, precision, (lo, opt, hi), tuple(tuple(s[1:3]) for s in shapes))
