# edgeseg — every target works on a CPU machine, a GPU host and (with `jetson-setup` first) a Jetson.
# `make demo` and `make test` each create the virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
STAMP  := $(VENV)/.installed-$(EXTRAS)
RUN    ?= runs/demo
DATA   ?= $(RUN)/data

.PHONY: setup demo test test-gpu lint onnx calib engines bench jetson-setup clean help

help:
	@echo "make demo      generate → train → evaluate → export → FP16/INT8 → compare, on the CPU ($(RUN)/)"
	@echo "make test      the test suite (CPU; GPU tests skip with a reason)"
	@echo "make bench     single vs batched speed of the demo's models ($(RUN)/bench.json, bench.png)"
	@echo "make onnx calib engines   deployment steps; engines need TensorRT (GPU host or Jetson)"
	@echo "make test-gpu  the GPU tests; fail instead of skipping where TensorRT/pycuda/GPU are missing"
	@echo "make jetson-setup   venv over JetPack's TensorRT bindings, pycuda built against JetPack's CUDA"

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
	$(BIN)/edgeseg train --model inline --out $(RUN)
	$(BIN)/edgeseg eval --model $(RUN)/model.keras --model classical --data $(DATA)/seed --data $(DATA)/good --data $(DATA)/gauss --json $(RUN)/metrics.json
	$(BIN)/edgeseg predict --model $(RUN)/model.keras --input $(DATA)/seed --out $(RUN)/predictions --triptych --limit 16
	$(BIN)/edgeseg export --model $(RUN)/model.keras --out $(RUN)/model.onnx
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --fp16
	$(BIN)/edgeseg quantize --model $(RUN)/model.onnx --int8
	$(BIN)/edgeseg compare --data $(DATA)/seed --data $(DATA)/gauss --json $(RUN)/compare.json $(RUN)/model.keras $(RUN)/model.onnx $(RUN)/model.fp16.onnx $(RUN)/model.int8.onnx

test: setup
	$(BIN)/python -m pytest -q

test-gpu: setup
	EDGESEG_REQUIRE_GPU=1 $(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf runs/ .pytest_cache
