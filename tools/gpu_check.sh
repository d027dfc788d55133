#!/usr/bin/env bash
# One prepared check for a GPU host or a Jetson: runs what this host can run and writes one JSON report of
# what ran, what passed and what could not run, and why ($OUT/gpu_check.json).
#
#   With TensorRT:    the demo's ONNX files checked against TensorRT's importer rules, its FP16 and INT8
#                     engines built, every GPU test (make test-gpu's tests), and ONNX Runtime vs the FP16 and
#                     INT8 engines timed side by side with `edgeseg bench` (images/s and the INT8/FP16 ratio).
#   Without TensorRT: the CUDA transport tests (pycuda with a kernel of their own, two contexts in one
#                     process) and a transport benchmark: a transport result, never a TensorRT one. The
#                     TensorRT tests still run, and fail naming what is missing (EDGESEG_REQUIRE_GPU=1).
#
# Installs what is missing from local wheels in .carry/ when that folder exists (a host without network:
# a pycuda wheel built for the host's Python, and its pure-Python dependencies), else from the trt extra.
# Needs the demo's ONNX files in $RUN (make demo, or copies of runs/demo/model*.onnx and their manifests).
#   tools/gpu_check.sh      # RUN=runs/demo OUT=runs/gpu-check STEP_TIMEOUT=600 (s per step) NVIDIA_SMI=nvidia-smi
# Exit status: 0 all that ran passed, 1 a step failed, 2 no NVIDIA GPU visible.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/demo}
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
STEPS="$OUT/steps.tsv"
: >"$LOG"
: >"$STEPS"
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PATH="${CUDA_ROOT:-/usr/local/cuda}/bin:$PATH"    # nvcc, for pycuda's SourceModule
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"        # the project, where it is not installed
export PYTHONDONTWRITEBYTECODE=1

say() { echo "== $*" | tee -a "$LOG"; }
have() { "$PY" -c "import $1" >/dev/null 2>&1; }
# step NAME CMD...: run with a timeout, log its output, record "NAME<TAB>rc<TAB>seconds".
step() {
  local name=$1 t0=$SECONDS rc
  shift
  say "$name: $*"
  timeout "${STEP_TIMEOUT:-600}" "$@" >>"$LOG" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$STEPS"
  return "$rc"
}
skip() { printf '%s\tskipped\t0\t%s\n' "$1" "$2" >>"$STEPS"; say "$1 not run: $2"; }

say "python: $("$PY" --version 2>&1); nvcc: $(command -v nvcc || echo missing)"
"${NVIDIA_SMI:-nvidia-smi}" --query-gpu=name,compute_cap,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>>"$LOG" || : >"$OUT/gpu.txt"

pipi() { timeout 300 "$PY" -m pip install -q --disable-pip-version-check "$@" >>"$LOG" 2>&1; }
if [ -s "$OUT/gpu.txt" ] && { ! have pycuda || ! have tensorrt || ! have pytest; }; then
  if [ -d .carry ]; then
    PKGS="pytest pycuda"
    ls .carry/tensorrt* >/dev/null 2>&1 && PKGS="$PKGS tensorrt"
    have numpy || PKGS="$PKGS numpy"
    # An externally managed Python (PEP 668) refuses a plain install: install beside the project instead.
    pipi --no-index --find-links .carry $PKGS ||
      { pipi --no-index --find-links .carry --target "$PWD/.gpu_site" $PKGS && export PYTHONPATH="$PWD/.gpu_site:$PYTHONPATH"; }
  else
    pipi -e ".[dev,trt]" || pipi -e ".[trt]"
  fi
fi

if [ ! -s "$OUT/gpu.txt" ]; then
  skip transport-tests "no NVIDIA GPU visible (nvidia-smi found none)"
elif ! have pycuda; then
  skip transport-tests "pycuda is not installed (pip install 'edgeseg[trt]', or wheels in .carry/)"
else
  step transport-tests env EDGESEG_REQUIRE_GPU=1 "$PY" -m pytest -q -p no:cacheprovider -m transport \
    tests/runners/test_cuda.py --junitxml="$OUT/transport-tests.xml"
  step transport-bench "$PY" tools/gpu_transport_bench.py --out "$OUT/transport.json"
fi

EDGESEG="$PY -m edgeseg.cli.app"
if have onnx && have typer; then  # the static importer check needs no GPU and no TensorRT
  step check $EDGESEG check --target tensorrt "$RUN/model.fp16.onnx" "$RUN/model.int8.onnx"
else
  skip check "onnx or typer is not installed (pip install -e '.[deploy]')"
fi

GPU_TESTS="tests/trt/test_build_manifest_inspect.py tests/runners/test_trt.py tests/trt/test_demo_engines.py"
if [ -s "$OUT/gpu.txt" ] && have tensorrt && have pycuda; then
  for precision in fp16 int8; do
    step "engine-$precision" $EDGESEG build-engine --model "$RUN/model.$precision.onnx" --batch 1,8,32 \
      --timing-cache "$OUT/timing.cache" --out "$OUT/engines/" -q
  done
  step gpu-tests env EDGESEG_REQUIRE_GPU=1 EDGESEG_DEMO_RUN="$RUN" "$PY" -m pytest -q -p no:cacheprovider -m gpu \
    $GPU_TESTS tests/runners/test_cuda.py --junitxml="$OUT/gpu-tests.xml"
  step bench $EDGESEG bench --model "$RUN/model.onnx" --model "$OUT/engines/model.fp16.engine" \
    --model "$OUT/engines/model.int8.engine" --batch-sizes 1,8,32 --warmup-s 1 --duration-s 3 --repeats 3 \
    --json "$OUT/bench.json"
else
  why="TensorRT is not installed here (pip install 'edgeseg[trt]'; JetPack: make jetson-setup)"
  [ -s "$OUT/gpu.txt" ] || why="no NVIDIA GPU visible"
  for name in engine-fp16 engine-int8 bench; do skip "$name" "$why"; done
  if [ -s "$OUT/gpu.txt" ] && have pytest; then
    # Run anyway: each TensorRT test must fail in its own body, naming what is missing (never skip).
    step gpu-tests-without-tensorrt env EDGESEG_REQUIRE_GPU=1 "$PY" -m pytest -q -p no:cacheprovider -m "gpu and not transport" \
      $GPU_TESTS --junitxml="$OUT/gpu-tests.xml"
  fi
fi

"$PY" tools/gpu_report.py "$OUT" | tee -a "$LOG"
