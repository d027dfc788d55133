"""INT8 on the CPU: which Q/DQ placement is faster than FP32 in ONNX Runtime (docs/benchmarks.md).

    .venv/bin/python tools/int8_speed.py runs/demo/model.onnx --out runs/demo/int8-variants --threads 1,2

Writes the FP16 model and one INT8 model per placement next to each other (same calibration set), then times
them *interleaved* (one call of each in turn, so a noisy shared machine slows all alike) through the
project's OnnxRuntimeRunner, and prints median ms/image and the speed-up over FP32 as a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def variants(src: Path, out: Path, calib_count: int) -> dict[str, Path]:
    from edgeseg.export.calibration import calibration_set
    from edgeseg.export.precision import CalibMethod, _quantize_ort, shallow_convs, to_fp16, to_int8

    import onnx
    import onnxruntime.quantization as q

    out.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": src, "fp16": to_fp16(src, out / "model.fp16.onnx").path}
    model = onnx.load(str(src))
    size = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    calib = calibration_set(size, calib_count, "mixed", 7, out / "calib")
    shallow64, shallow128 = shallow_convs(model, 64), shallow_convs(model, 128)
    u8 = {"activation_type": q.QuantType.QUInt8, "extra_options": {"ActivationSymmetric": False}}
    plans = {
        # ONNX Runtime's defaults with TensorRT's symmetry: Q/DQ around every quantizable op.
        "int8 all ops (plain Q/DQ)": ({}, []),
        "int8 convs only": ({"op_types_to_quantize": ["Conv"]}, []),
        "int8 convs, depth>=64": ({"op_types_to_quantize": ["Conv"]}, shallow64),
        "int8 convs, depth>=128 (default)": None,
        "int8 u8 asym, depth>=128 (CPU only)": ({"op_types_to_quantize": ["Conv", "Relu"], **u8}, shallow128),
    }
    for name, plan in plans.items():
        path = out / f"model.{name.split(' (')[0].replace(' ', '_').replace('>=', 'ge').replace(',', '')}.onnx"
        if plan is None:
            path = to_int8(src, path, calib_count=calib_count, calib_root=out / "calib").path
        else:
            _quantize_ort(src, path, calib, CalibMethod.max, plan[1], **plan[0])
        paths[name] = path
    return paths


def timing(paths: dict[str, Path], threads: int, batches: list[int], seconds: float) -> dict:
    from edgeseg.runners.onnxrt import OnnxRuntimeRunner

    runners = {k: OnnxRuntimeRunner(p, intra_op_num_threads=threads).activate() for k, p in paths.items()}
    size = next(iter(runners.values())).image_shape[0]
    images = np.random.default_rng(0).integers(100, 125, size=(max(batches), size, size), dtype=np.uint8)
    ref = runners["fp32"].infer(images[:8])
    result = {"max_dprob": {k: float(np.abs(r.infer(images[:8]) - ref).max()) for k, r in runners.items()}}
    for b in batches:
        x = images[:b]
        for r in runners.values():
            r.infer(x)
        times: dict[str, list[float]] = {k: [] for k in runners}
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times["fp32"]) < 5:
            for k, r in runners.items():
                t0 = time.perf_counter()
                r.infer(x)
                times[k].append((time.perf_counter() - t0) * 1e3 / b)
        result[b] = {k: (float(np.median(v)), len(v)) for k, v in times.items()}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per (threads, batch) point")
    ap.add_argument("--calib-count", type=int, default=256)
    args = ap.parse_args()
    paths = variants(args.onnx, args.out, args.calib_count)
    batches = [int(b) for b in args.batches.split(",")]
    for threads in (int(t) for t in args.threads.split(",")):
        res = timing(paths, threads, batches, args.seconds)
        print(f"\nthreads={threads}\n")
        print("| model | " + " | ".join(f"batch {b}: ms/img (×FP32)" for b in batches) + " | max abs Δprob vs FP32 |")
        print("|---|" + "---|" * (len(batches) + 1))
        for k in paths:
            cells = [f"{res[b][k][0]:.3f} (×{res[b]['fp32'][0] / res[b][k][0]:.2f})" for b in batches]
            print(f"| {k} | " + " | ".join(cells) + f" | {res['max_dprob'][k]:.1e} |")
        print(f"\n(calls per model: " + ", ".join(f"batch {b}: {res[b]['fp32'][1]}" for b in batches) + ")")


if __name__ == "__main__":
    main()
