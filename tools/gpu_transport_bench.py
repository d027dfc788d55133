"""The CUDA transport timed with a kernel of its own (never TensorRT): pinned vs pageable H2D/D2H bandwidth,
and 1 vs 2 streams with compute about as long as the copy. Prints JSON; ``--out FILE`` writes it too.

Run by ``tools/gpu_check.sh`` on any NVIDIA GPU host with pycuda and nvcc. A result here is a transport
result: it says nothing about TensorRT.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from edgeseg.runners.cuda import CudaTransport

H = W = 256
KERNEL = r"""
__global__ void sigmoid(float *out, const float *x, int n, int iters)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    for (int k = 0; k < iters; ++k) v = v * 0.5f + x[i] * 0.5f;  // busy work with v as a fixed point
    out[i] = 1.0f / (1.0f + expf(-(v - 112.0f) / 7.0f));
}
"""


def bandwidth(cuda, nbytes: int = 64 << 20, reps: int = 5) -> dict[str, float]:
    """Median GB/s of H2D and D2H, pinned vs pageable, timed with events on one stream."""
    stream, a, b = cuda.Stream(), cuda.Event(), cuda.Event()
    device = cuda.mem_alloc(nbytes)
    pinned, pageable = cuda.pagelocked_empty(nbytes // 4, np.float32), np.empty(nbytes // 4, np.float32)
    out = {}
    for kind, host in (("pinned", pinned), ("pageable", pageable)):
        for way in ("h2d", "d2h"):
            times = []
            for _ in range(reps):
                a.record(stream)
                if way == "h2d":
                    cuda.memcpy_htod_async(device, host, stream) if kind == "pinned" else cuda.memcpy_htod(device, host)
                else:
                    cuda.memcpy_dtoh_async(host, device, stream) if kind == "pinned" else cuda.memcpy_dtoh(host, device)
                b.record(stream)
                b.synchronize()
                times.append(a.time_till(b) / 1e3)
            out[f"{way}_{kind}"] = nbytes / statistics.median(times) / 1e9
    device.free()
    return out


def run_batches(t: CudaTransport, batches, depth: int) -> float:
    """Wall seconds for all batches with ``depth`` in flight (1 = no overlap)."""
    t0, inflight = time.perf_counter(), []
    for x in batches:
        if len(inflight) == depth:
            t.collect(inflight.pop(0))
        inflight.append(t.submit(x))
    for slot in inflight:
        t.collect(slot)
    return time.perf_counter() - t0


def overlap(streams: int, iters: int | None, batch: int = 32) -> tuple[dict, int]:
    """Images/s with ``streams`` streams; the kernel is calibrated (when ``iters`` is None) so its compute
    lasts about as long as the H2D copy, the case overlap helps most."""
    from pycuda.compiler import SourceModule

    holder: dict = {}

    def compute(stream, d_in, d_out, n):
        count = n * H * W
        holder["fn"](d_out, d_in, np.int32(count), np.int32(holder["iters"]), block=(256, 1, 1),
                     grid=((count + 255) // 256, 1), stream=stream)
        return (n, H, W, 1)

    t = CudaTransport(compute, streams=streams).open()
    try:
        with t.current():
            holder["module"] = SourceModule(KERNEL)
            holder["fn"] = holder["module"].get_function("sigmoid")
        t.allocate(batch, (H, W, 1), np.float32, (H, W, 1), np.float32)
        rng = np.random.default_rng(0)
        xs = [rng.integers(100, 125, (batch, H, W, 1)).astype(np.float32) for _ in range(4)]
        holder["iters"] = iters or 1
        while iters is None:
            t.run(xs[0])
            t.drain_split()
            for _ in range(3):
                t.run(xs[0])
            split = t.drain_split()
            if statistics.median(split["compute"]) >= statistics.median(split["h2d"]) or holder["iters"] >= 1 << 20:
                iters = holder["iters"]
            else:
                holder["iters"] *= 4
        reference = 1 / (1 + np.exp(-(xs[1].astype(np.float64) - 112) / 7))
        if not np.allclose(t.run(xs[1]), reference, atol=1e-4):
            raise SystemExit("the transport returned wrong results")
        run_batches(t, xs * 2, streams)
        t.drain_split()
        walls = [run_batches(t, xs * 5, streams) for _ in range(3)]
        split = t.drain_split()
        result = {"batch": batch, "batches": 20, "kernel_iters": iters,
                  "wall_ms_median": statistics.median(walls) * 1e3,
                  "images_per_s": 20 * batch / statistics.median(walls),
                  **{f"{k}_ms_p50": statistics.median(v) for k, v in split.items()}}
        with t.current():
            holder.clear()  # unload the module inside its context, before the context goes
        return result, iters
    finally:
        t.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    t = CudaTransport(lambda *a: (), streams=1).open()
    try:
        name, cc = t.device_info()
        import pycuda.driver as cuda

        with t.current():
            result = {"device": {"name": name, "compute_capability": cc}, "bandwidth_GBps": bandwidth(cuda)}
    finally:
        t.close()
    one, iters = overlap(1, None)
    two, _ = overlap(2, iters)
    result["overlap"] = {"streams_1": one, "streams_2": two,
                         "speedup_2_vs_1": one["wall_ms_median"] / two["wall_ms_median"]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
