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

test: setup
	$(BIN)/python -m pytest -q

test-gpu: setup
	EDGESEG_REQUIRE_GPU=1 $(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf runs/ .pytest_cache
