#!/usr/bin/env bash
# The CUDA transport (edgeseg/runners/cuda.py) on a GPU machine WITHOUT TensorRT: its tests with a kernel of
# the test's own, plus a small transport benchmark (pinned vs pageable H2D/D2H bandwidth, 1 vs 2 streams).
# This checks pycuda + our transport, never TensorRT (the TensorRT tests must skip here, with their reason).
#
# Needs, carried in .carry/ (git-ignored; this machine has no network):
#   /work/shared/tools/pycuda-wheel.sh .carry        # pycuda for Python 3.12 + its pure-Python deps
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .carry pytest numpy
# Run from the repository root:  tools/gpu_transport_check.sh   (writes $OUT/transport.json when OUT is set)
# Budget: < 3 minutes (each step has its own timeout).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-}
LOG=${OUT:-/tmp}/gpu_transport_check.log
export PATH="${CUDA_ROOT:-/usr/local/cuda}/bin:$PATH"          # nvcc, for pycuda.compiler.SourceModule
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"            # the project, without installing its deps
export PYTHONDONTWRITEBYTECODE=1
status=0
say() { echo "== $*" | tee -a "$LOG"; }

say "python $($PY --version 2>&1); nvcc: $(command -v nvcc || echo missing)"
nvidia-smi -L 2>&1 | tee -a "$LOG" || true

say "install pycuda and pytest from .carry"
pipi() { timeout 90 "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links .carry "$@"; }
PKGS="pycuda pytest"
"$PY" -c "import numpy" 2>/dev/null || PKGS="$PKGS numpy"   # pycuda's wheel does not declare it
if ! pipi $PKGS 2>>"$LOG"; then
  # An externally managed Python (PEP 668) refuses; install beside the project instead.
  SITE="$PWD/.gpu_site"
  pipi --target "$SITE" $PKGS 2>>"$LOG" || { say "FAILED: could not install pycuda/pytest from .carry"; exit 1; }
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
"$PY" -c "import pycuda.driver as d; d.init(); print('pycuda', __import__('pycuda').VERSION_TEXT, 'devices', d.Device.count(), d.Device(0).name(), d.Device(0).compute_capability())" 2>&1 | tee -a "$LOG"

say "transport tests (pycuda + GPU; EDGESEG_REQUIRE_GPU=1 so the missing TensorRT does not skip them)"
EDGESEG_REQUIRE_GPU=1 timeout 120 "$PY" -m pytest -q -p no:cacheprovider -rA tests/test_cuda_transport.py 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

say "TensorRT runner tests (must skip here: no TensorRT)"
timeout 60 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_trt_runner.py 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

say "transport benchmark"
timeout 90 "$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, statistics, time
import numpy as np
import pycuda.driver as cuda
from edgeseg.runners.cuda import CudaTransport

H = W = 256
KERNEL = r"""
__global__ void sigmoid(float *out, const float *x, int n, int iters)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    for (int k = 0; k < iters; ++k) v = v * 0.5f + x[i] * 0.5f;
    out[i] = 1.0f / (1.0f + expf(-(v - 112.0f) / 7.0f));
}
"""
result = {"device": None, "bandwidth_GBps": {}, "overlap": {}}
holder = {}

def compute(stream, d_in, d_out, batch):
    n = batch * H * W
    holder["fn"](d_out, d_in, np.int32(n), np.int32(holder["iters"]), block=(256, 1, 1),
                 grid=((n + 255) // 256, 1), stream=stream)
    return (batch, H, W, 1)

def bandwidth(nbytes=64 << 20, reps=5):
    """Median GB/s of H2D and D2H, pinned vs pageable, timed with events on one stream."""
    s = cuda.Stream(); a, b = cuda.Event(), cuda.Event()
    d = cuda.mem_alloc(nbytes)
    pinned = cuda.pagelocked_empty(nbytes // 4, np.float32); pageable = np.empty(nbytes // 4, np.float32)
    out = {}
    for kind, host in (("pinned", pinned), ("pageable", pageable)):
        for way in ("h2d", "d2h"):
            ts = []
            for _ in range(reps):
                a.record(s)
                if way == "h2d":
                    (cuda.memcpy_htod_async(d, host, s) if kind == "pinned" else cuda.memcpy_htod(d, host))
                else:
                    (cuda.memcpy_dtoh_async(host, d, s) if kind == "pinned" else cuda.memcpy_dtoh(host, d))
                b.record(s); b.synchronize()
                ts.append(a.time_till(b) / 1e3)
            out[f"{way}_{kind}"] = nbytes / statistics.median(ts) / 1e9
    d.free()
    return out

def run_batches(t, batches, depth):
    """Wall seconds for all batches with `depth` in flight (1 = no overlap)."""
    t0 = time.perf_counter(); inflight = []
    for x in batches:
        if len(inflight) == depth:
            t.collect(inflight.pop(0))
        inflight.append(t.submit(x))
    for s in inflight:
        t.collect(s)
    return time.perf_counter() - t0

transports = []
try:
    for streams in (1, 2):
        t = CudaTransport(compute, streams=streams).open()
        transports.append(t)
        if streams == 1:
            name, cc = t.device_info()
            result["device"] = {"name": name, "compute_capability": cc}
            result["bandwidth_GBps"] = bandwidth()
            from pycuda.compiler import SourceModule
        holder["module"] = SourceModule(KERNEL); holder["fn"] = holder["module"].get_function("sigmoid")
        batch = 32
        t.allocate(batch, (H, W, 1), np.float32, (H, W, 1), np.float32)
        rng = np.random.default_rng(0)
        xs = [rng.integers(100, 125, (batch, H, W, 1)).astype(np.float32) for _ in range(4)]
        # Calibrate the kernel so compute lasts about as long as the H2D copy: the case overlap helps most.
        holder["iters"] = holder.get("calibrated", 1)
        while "calibrated" not in holder:
            t.run(xs[0]); t.drain_split()
            for _ in range(3):
                t.run(xs[0])
            sp = t.drain_split()
            if statistics.median(sp["compute"]) >= statistics.median(sp["h2d"]) or holder["iters"] >= 1 << 20:
                holder["calibrated"] = holder["iters"]
            else:
                holder["iters"] *= 4
        ref = 1 / (1 + np.exp(-(xs[1].astype(np.float64) - 112) / 7))
        assert np.allclose(t.run(xs[1]), ref, atol=1e-4), "wrong results"
        run_batches(t, xs * 2, streams); t.drain_split()
        walls = [run_batches(t, xs * 5, streams) for _ in range(3)]
        sp = t.drain_split()
        result["overlap"][f"streams_{streams}"] = {
            "batch": batch, "batches": 20, "kernel_iters": holder["iters"],
            "wall_ms_median": statistics.median(walls) * 1e3,
            "images_per_s": 20 * batch / statistics.median(walls),
            **{f"{k}_ms_p50": statistics.median(v) for k, v in sp.items()},
        }
        holder.pop("module"); holder.pop("fn")  # unload before the context goes
        t.close(); transports.remove(t)
    o = result["overlap"]
    result["overlap"]["speedup_2_vs_1"] = o["streams_1"]["wall_ms_median"] / o["streams_2"]["wall_ms_median"]
finally:
    holder.pop("module", None); holder.pop("fn", None)
    for t in transports:
        t.close()
print(json.dumps(result, indent=2))
if os.environ.get("OUT"):
    with open(os.path.join(os.environ["OUT"], "transport.json"), "w") as f:
        json.dump(result, f, indent=2)
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

say "done: status $status (log: $LOG)"
exit $status
