# edgeseg — every target works on a CPU machine, a GPU host and (with `jetson-setup` first) a Jetson.
# `make demo` and `make test` each create the virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
STAMP  := $(VENV)/.installed-$(EXTRAS)
RUN    ?= runs/demo
CUDA_ROOT ?= /usr/local/cuda
DATA   ?= $(RUN)/data

.PHONY: setup demo demo-line bench-fullsize bench-serve test test-gpu gpu-check onnx calib engines bench bench-overhead bench-nets bench-stream jetson-setup clean help docs deploy-configs serve-env

help:
	@echo "make demo      generate → train → evaluate → export → FP16/INT8 → compare, on the CPU ($(RUN)/)"
	@echo "make test      the test suite (CPU; GPU tests skip with a reason)"
	@echo "make demo-line train and measure on real surfaces (scikit-image photographs) beside the demo's network ($(RUN)/line/)"
	@echo "make bench     single vs batched speed of the demo's models ($(RUN)/bench.json, bench.png)"
	@echo "make bench-overhead bench-nets bench-stream   harness cost; UNet vs inline; a 10,000-frame stream"
	@echo "make bench-fullsize   16-bit 1024² frames: exported at full size vs tiled through the 256² file"
	@echo "make bench-serve      8 cameras through a Triton server (edgeseg serve) vs the local stream, 10,000 frames"
	@echo "make onnx calib engines   deployment steps; engines need TensorRT (GPU host or Jetson)"
	@echo "make test-gpu  the GPU tests; fail instead of skipping where TensorRT/pycuda/GPU are missing"
	@echo "make gpu-check one report of what a GPU host runs: engines, GPU tests, ORT vs FP16 vs INT8 speed"
	@echo "make setup EXTRAS=dev,trt   a GPU host (TensorRT for CUDA 12, driver r535+; trt-cu13: CUDA 13, r580+)"
	@echo "make jetson-setup   venv over JetPack's TensorRT bindings, pycuda built against JetPack's CUDA"
	@echo "make deploy-configs serve-env   Triton/DeepStream configs of the demo; the environment edgeseg serve runs in"

setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# The main job, end to end on the CPU (ONNX Runtime). Held-out sets use seeds training never sees.
demo: setup
	$(BIN)/edgeseg generate --preset seed --count 200 --seed 1001 --out $(DATA)/seed
	$(BIN)/edgeseg generate --preset seed --count 200 --seed 1002 --good-fraction 1 --out $(DATA)/good
	$(BIN)/edgeseg generate --preset seed --count 200 --seed 1003 --noise gaussian --shape mixed --out $(DATA)/gauss
	$(BIN)/edgeseg generate --preset seed --count 200 --seed 1004 --noise mixed --shape mixed --level-shift=-30:30 --illumination 12 --noise-scale 0.9:1.1 --out $(DATA)/vary
	$(BIN)/edgeseg train --model inline --out $(RUN) --force   # make demo replaces its own earlier run
	$(BIN)/edgeseg eval --model $(RUN)/model.keras --model classical --data $(DATA)/seed --data $(DATA)/good --data $(DATA)/gauss --data $(DATA)/vary --json $(RUN)/metrics.json
	$(BIN)/edgeseg detectability --data $(DATA)/seed --good $(DATA)/good --json $(RUN)/detectability.json
	$(BIN)/edgeseg predict --model $(RUN)/model.keras --input $(DATA)/seed --out $(RUN)/predictions --triptych --limit 16
	$(BIN)/edgeseg export --model $(RUN)/model.keras --out $(RUN)/model.onnx
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --fp16
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --int8
	# INT8 for CPU deployment: uint8 activations, ReLUs folded into the convolutions (ONNX Runtime only).
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --int8 --target cpu --out $(RUN)/model.int8.cpu.onnx
	$(BIN)/edgeseg compare --data $(DATA)/seed --data $(DATA)/gauss --json $(RUN)/compare.json $(RUN)/model.keras $(RUN)/model.onnx $(RUN)/model.fp16.onnx $(RUN)/model.int8.onnx $(RUN)/model.int8.cpu.onnx
	# A line with Gaussian noise fits its own point on images of its own (other seeds than the held-out sets).
	$(BIN)/edgeseg generate --preset seed --count 1000 --seed 5001 --noise gaussian --shape mixed --out $(RUN)/gauss-line/defects
	$(BIN)/edgeseg generate --preset seed --count 1000 --seed 5002 --noise gaussian --shape mixed --good-fraction 1 --out $(RUN)/gauss-line/good
	$(BIN)/edgeseg operating-point --model $(RUN)/model.onnx --data $(RUN)/gauss-line/defects --good $(RUN)/gauss-line/good --fa-budget 0.0025 --out $(RUN)/gauss-line/model.onnx
	$(BIN)/edgeseg eval --model $(RUN)/gauss-line/model.onnx --model classical --data $(DATA)/gauss --json $(RUN)/gauss-line/metrics.json
	# A line with the seed's uniform noise that ranks escapes first but must size its defects (Dice >= 0.93).
	$(BIN)/edgeseg generate --preset seed --count 1000 --seed 5003 --out $(RUN)/seed-line/defects
	$(BIN)/edgeseg generate --preset seed --count 1000 --seed 5004 --good-fraction 1 --out $(RUN)/seed-line/good
	$(BIN)/edgeseg operating-point --model $(RUN)/model.onnx --data $(RUN)/seed-line/defects --good $(RUN)/seed-line/good --prefer recall --min-dice 0.93 --out $(RUN)/seed-line/model.onnx
	$(BIN)/edgeseg eval --model $(RUN)/seed-line/model.onnx --model classical --data $(DATA)/seed --data $(DATA)/good --json $(RUN)/seed-line/metrics.json

# A line's own images, on real surfaces (docs/study.md, "On a real surface"): scikit-image's brick (patterned),
# gravel (random texture) and moon (smooth, with pits), each cut into train / val / test regions. A network is
# trained on each surface's train region (defects placed on random crops), then it, the demo's network (synthetic
# noise only) and the classical detector are each fitted to LINE_BUDGET false blobs per image on val and measured
# on test, where natural structure that fires counts as a false alarm. About 20 minutes on 2 CPU cores.
LINE          ?= $(RUN)/line
LINE_SURFACES ?= brick gravel moon
LINE_BUDGET   ?= 0.01
LINE_TRAIN    ?= --contrast-sigma 0.25:3 --crop 192 --epochs 30 --steps-per-epoch 100 --fit-count 200
LINE_CURVE    ?= --contrast-sigma 0.25,0.5,0.75,1,1.5,2,3 --count 200 --fit-count 200
LINE_CALIB    ?= brick
demo-line: setup
	@test -f $(RUN)/model.keras || { echo "no $(RUN)/model.keras: run make demo first"; exit 1; }
	$(BIN)/edgeseg surfaces --out $(LINE)/surfaces $(foreach s,$(LINE_SURFACES),--name $(s)) --force
	for s in $(LINE_SURFACES); do \
	  $(BIN)/edgeseg train --backgrounds $(LINE)/surfaces/$$s/train --val-backgrounds $(LINE)/surfaces/$$s/val \
	    --fa-budget $(LINE_BUDGET) $(LINE_TRAIN) --out $(LINE)/$$s --force || exit 1; \
	  $(BIN)/edgeseg contrast-curve --model $(LINE)/$$s/model.keras --model $(RUN)/model.keras --model classical \
	    --test $(LINE)/surfaces/$$s/test --val $(LINE)/surfaces/$$s/val --fa-budget $(LINE_BUDGET) $(LINE_CURVE) \
	    --json $(LINE)/$$s/curve.json --plot $(LINE)/$$s/curve.png --title $$s --force || exit 1; \
	done
	# INT8 calibrated on generated images against calibrated on the line's own (LINE_CALIB's training region).
	$(BIN)/edgeseg generate --backgrounds $(LINE)/surfaces/$(LINE_CALIB)/test --contrast-sigma 0.5:2 --crop 192 --count 200 --seed 11 --out $(LINE)/$(LINE_CALIB)/test-set --force
	$(BIN)/edgeseg export --model $(LINE)/$(LINE_CALIB)/model.keras --shape 192x192 --out $(LINE)/$(LINE_CALIB)/model.onnx --force
	$(BIN)/edgeseg quantize --model $(LINE)/$(LINE_CALIB)/model.onnx --int8 --force
	$(BIN)/edgeseg quantize --model $(LINE)/$(LINE_CALIB)/model.onnx --int8 --calib-data $(LINE)/surfaces/$(LINE_CALIB)/train --out $(LINE)/$(LINE_CALIB)/model.int8.line.onnx --force
	$(BIN)/edgeseg compare --data $(LINE)/$(LINE_CALIB)/test-set --json $(LINE)/$(LINE_CALIB)/calib-compare.json $(LINE)/$(LINE_CALIB)/model.onnx $(LINE)/$(LINE_CALIB)/model.int8.onnx $(LINE)/$(LINE_CALIB)/model.int8.line.onnx

# Full-size frames (docs/benchmarks.md): 16-bit 1024² images through the demo network exported for 1024², beside
# its 256² file, which runs them in overlapping tiles.
FULL ?= $(RUN)/full
bench-fullsize: setup
	@test -f $(RUN)/model.keras -a -f $(RUN)/model.onnx || { echo "no $(RUN)/model.keras or model.onnx: run make demo first"; exit 1; }
	$(BIN)/edgeseg generate --preset test --image-size 1024 --count 16 --bits 16 --seed 7001 --out $(FULL)/data --force
	$(BIN)/edgeseg export --model $(RUN)/model.keras --shape 1024x1024 --out $(FULL)/model.1024.onnx --force
	$(BIN)/edgeseg bench --model $(FULL)/model.1024.onnx --model $(RUN)/model.onnx --data $(FULL)/data \
	  --batch-sizes 1,4 --duration-s $(BENCH_S) --json $(FULL)/bench.json

# Serving (docs/benchmarks.md): the demo's ONNX model behind edgeseg serve (a Triton server, from .venv-serve), 8
# camera clients at SERVE_RATE frames/s each for SERVE_FRAMES frames in all, then the same model in the local
# stream at the same total rate. The server is stopped however the run ends.
SERVE_FRAMES ?= 10000
SERVE_RATE   ?= 25
SERVE_PORT   ?= 8000
bench-serve: setup serve-env
	@test -f $(RUN)/model.onnx || { echo "no $(RUN)/model.onnx: run make demo first"; exit 1; }
	$(SERVE_VENV)/bin/edgeseg serve --model $(RUN)/model.onnx --port $(SERVE_PORT) --max-batch 32 --max-queue-delay-us 2000 & \
	  pid=$$!; trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	  $(BIN)/python -c "from edgeseg.serving.client import wait_ready; wait_ready('http://127.0.0.1:$(SERVE_PORT)', timeout_s=180)" && \
	  $(BIN)/edgeseg bench --url http://127.0.0.1:$(SERVE_PORT) -m $(RUN)/model.onnx --cameras 8 --rate $(SERVE_RATE) \
	    --frames $(SERVE_FRAMES) --json $(RUN)/serve-bench.json --force
	$(BIN)/edgeseg bench -m $(RUN)/model.onnx --rate $$((8 * $(SERVE_RATE))) --frames $(SERVE_FRAMES) --batch-sizes 8 \
	  --json $(RUN)/stream-bench.json --force

# Benchmarks (docs/benchmarks.md). BENCH_S seconds per point keeps a 2-core machine's sweep to minutes.
BENCH_S       ?= 3
BENCH_BATCHES ?= 1,2,4,8,16,32
BENCH_MODELS  ?= $(wildcard $(RUN)/model.keras $(RUN)/model.onnx $(RUN)/model.fp16.onnx $(RUN)/model.int8.onnx $(RUN)/model.int8.cpu.onnx)
BENCH_ENGINES  = $(shell $(BIN)/python -c "import tensorrt" 2>/dev/null && ls engines/*.engine 2>/dev/null)
BENCH_RATE    ?= 100
bench: setup
	@test -n "$(BENCH_MODELS)" || { echo "no models in $(RUN): run make demo first"; exit 1; }
	$(BIN)/edgeseg bench $(addprefix --model ,$(BENCH_MODELS) $(BENCH_ENGINES)) --batch-sizes $(BENCH_BATCHES) --warmup-s 1 --duration-s $(BENCH_S) --repeats 3 $(if $(wildcard $(RUN)/compare.json),--accuracy $(RUN)/compare.json) --json $(RUN)/bench.json --plot $(RUN)/bench.png

bench-overhead: setup
	$(BIN)/edgeseg bench --baseline --model $(RUN)/model.onnx --batch-sizes 1,16 --warmup-s 1 --duration-s 5 --repeats 5 --json $(RUN)/bench-overhead.json

bench-nets: setup
	$(BIN)/python -m edgeseg.bench.nets unet inline --out runs/bench
	$(BIN)/edgeseg bench --model runs/bench/unet/model.onnx --model runs/bench/inline/model.onnx --batch-sizes $(BENCH_BATCHES) --warmup-s 1 --duration-s $(BENCH_S) --repeats 3 --json runs/bench/nets.json --plot runs/bench/nets.png

bench-stream: setup
	$(BIN)/edgeseg bench --model $(RUN)/model.onnx --rate $(BENCH_RATE) --frames 10000 --batch-sizes 8 --max-wait-ms 20 --json $(RUN)/bench-stream.json

# Deployment (docs/guide.md). `onnx`: FP32 + FP16 + INT8 ONNX of the demo model (CPU is enough);
# `calib`: the INT8 calibration study (every method × image mix, compared on the demo's held-out sets);
# `engines`: FP16 and INT8 TensorRT engines from those ONNX files (GPU host or Jetson, after `make setup`
# or `make jetson-setup`; engines are built where they run and never committed).
CALIB_COUNT ?= 512
onnx: setup
	$(BIN)/edgeseg export --model $(RUN)/model.keras --out $(RUN)/model.onnx
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --fp16
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --int8 --calib-count $(CALIB_COUNT)

calib: setup
	@test -f $(RUN)/model.onnx || { echo "no $(RUN)/model.onnx: run make onnx first"; exit 1; }
	for method in max entropy percentile; do for mix in mixed defect background; do \
	  $(BIN)/edgeseg quantize --model $(RUN)/model.onnx --int8 --calib-count $(CALIB_COUNT) --calib-method $$method \
	    --calib-mix $$mix --out $(RUN)/calib/model.int8.$$method-$$mix.onnx -q || exit 1; done; done
	$(BIN)/edgeseg compare --data $(DATA)/seed --data $(DATA)/gauss --json $(RUN)/calib/compare.json -q \
	  $(RUN)/model.onnx $(RUN)/model.fp16.onnx $(RUN)/calib/model.int8.*.onnx

engines:
	@test -x $(BIN)/edgeseg || { echo "run make setup (GPU host) or make jetson-setup (Jetson) first"; exit 1; }
	$(BIN)/edgeseg build-engine --model $(RUN)/model.fp16.onnx --batch 1,8,32 --timing-cache engines/timing.cache --out engines/
	$(BIN)/edgeseg build-engine --model $(RUN)/model.int8.onnx --batch 1,8,32 --timing-cache engines/timing.cache --out engines/

# Jetson: JetPack ships TensorRT's Python bindings as a system package (python3-libnvinfer), so the venv sees
# system site-packages; no TensorFlow (train elsewhere, copy the .onnx files); pycuda builds against JetPack's
# CUDA (Python headers from python3-dev). JetPack 6.x: TensorRT 10.3, CUDA 12.6; JetPack 7.2.2+: TensorRT 11
# (SBSA build), CUDA 13, which needs pycuda >= 2025.1.2. Both build the same strongly typed ONNX files.
jetson-setup:
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { echo "python3-venv is missing: sudo apt install python3-venv"; exit 1; }
	test -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" || { echo "Python headers are missing (pycuda builds against them): sudo apt install python3-dev"; exit 1; }
	test -f $(CUDA_ROOT)/include/cuda.h || { echo "no CUDA toolkit under $(CUDA_ROOT): install JetPack's cuda-toolkit (sudo apt install nvidia-jetpack) or set CUDA_ROOT"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import tensorrt" || { echo "TensorRT's Python bindings are not visible: sudo apt install python3-libnvinfer (JetPack), and create $(VENV) with --system-site-packages (rm -rf $(VENV) first)"; exit 1; }
	@$(BIN)/python -c "import tensorrt as t; m = int(t.__version__.split('.')[0]); print('TensorRT', t.__version__, '(JetPack 6.x)' if m == 10 else '(JetPack 7.2.2+)' if m >= 11 else '(too old: edgeseg needs TensorRT >= 10, JetPack 6+)'); raise SystemExit(m < 10)"
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[deploy]"
	CUDA_ROOT=$(CUDA_ROOT) PATH=$(CUDA_ROOT)/bin:$$PATH $(BIN)/python -m pip install -q "pycuda>=2025.1.2"
	touch $(VENV)/.installed-deploy

test: setup
	$(BIN)/python -m pytest -q

# Every GPU test; each fails (never skips) naming what is missing. The demo's engines are built from $(RUN)'s
# ONNX files. nvcc must be on PATH for pycuda's SourceModule (the transport tests compile a kernel).
test-gpu:
	@test -x $(BIN)/python || { echo "run make setup EXTRAS=dev,trt (GPU host) or make jetson-setup (Jetson) first"; exit 1; }
	PATH="$(CUDA_ROOT)/bin:$$PATH" EDGESEG_REQUIRE_GPU=1 EDGESEG_DEMO_RUN=$(RUN) $(BIN)/python -m pytest -q -m gpu

# One prepared check of a GPU host (runs/gpu-check/gpu_check.json): engines, GPU tests, ORT vs FP16 vs INT8 speed.
gpu-check:
	RUN=$(RUN) tools/gpu_check.sh

clean:
	rm -rf runs/ .pytest_cache

# The result tables of README.md and docs/*.md, rendered from $(RUN)'s JSON (tables whose JSON is missing stay as they are).
docs:
	$(BIN)/python -m edgeseg.docs_tables --run $(RUN) README.md docs/*.md

# Serving configs (edgeseg.serving) under $(DEPLOY): a Triton model repository with the demo's FP32 and INT8 ONNX
# files (the fitted threshold built in as a uint8 mask output) and every engine in engines/ (a plan keyed by its
# compute capability), and DeepStream nvinfer configs. Preferred batch: $(RUN)/bench.json's saturation when
# `make bench` wrote it, an engine's profile OPT, else 8.
DEPLOY       ?= $(RUN)/deploy
DEPLOY_BENCH  = $(if $(wildcard $(RUN)/bench.json),--bench $(RUN)/bench.json)
# With the serving environment (make serve-env), each Triton entry is also read by a real tritonserver (--check).
TRITON_CHECK = $(if $(wildcard $(SERVE_VENV)/bin/python),--check)
deploy-configs: setup
	@test -f $(RUN)/model.onnx -a -f $(RUN)/model.int8.onnx || { echo "no $(RUN)/model.onnx or model.int8.onnx: run make demo (or make onnx) first"; exit 1; }
	$(BIN)/edgeseg export-triton --model $(RUN)/model.onnx --repo $(DEPLOY)/triton --mask-output --force $(TRITON_CHECK) $(DEPLOY_BENCH)
	$(BIN)/edgeseg export-triton --model $(RUN)/model.int8.onnx --repo $(DEPLOY)/triton --mask-output --force $(TRITON_CHECK) $(DEPLOY_BENCH)
	$(BIN)/edgeseg export-deepstream --model $(RUN)/model.onnx --out $(DEPLOY)/deepstream --force
	for engine in $(wildcard engines/*.engine); do name=$$(basename $$engine .engine); \
	  $(BIN)/edgeseg export-triton --model $$engine --repo $(DEPLOY)/triton --force $(TRITON_CHECK) || exit 1; \
	  $(BIN)/edgeseg export-deepstream --model $$engine --out $(DEPLOY)/deepstream-$$name --force || exit 1; done

# `edgeseg serve` runs a Triton server from its own environment: PyTriton (which ships tritonserver) pins
# numpy < 2, while the main environment's OpenCV needs numpy 2. pip picks an OpenCV built against numpy 1 here.
SERVE_VENV ?= .venv-serve
serve-env: $(SERVE_VENV)/.installed
$(SERVE_VENV)/.installed: pyproject.toml
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve]"
	touch $@
