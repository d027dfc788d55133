"""ONNX Runtime runner: FP32, FP16 and INT8 ONNX on the CPU (or any execution provider given).

Threads are set explicitly: ONNX Runtime's default spins one thread per core, and in a benchmark that runs
beside other work (or in several processes) the spin-waiting threads fight each other; a fixed
``intra_op_num_threads`` with sequential execution gives repeatable timings. Graph optimisation is ALL so the
Q/DQ pairs of an INT8 model fuse into integer kernels.

Batches can be split over worker threads (``workers``, throughput mode): each core then streams its own
small chunk through the whole network, with that chunk's activations in its own cache, instead of every
core taking a slice of each layer of the whole batch (whose activations, ~8 MB per layer at batch 32 for
``inline``, no longer fit a core's cache) and waiting for the others at every layer. A batch of fewer images
than workers, a single image in particular, still runs on the multi-threaded session, so latency is unchanged.
Measured side by side on 2 cores (docs/benchmarks.md): level with one call per batch when the
machine is quiet, 1.4–1.9× its images/s at batch 8–32 when the cores are contended, never measurably slower.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgeseg.deps import require
from edgeseg.errors import BadInput, EdgesegError
from edgeseg.export.graph import onnx_precision
from edgeseg.runners.base import Runner
from edgeseg.types import Backend


#: Most images per worker call in throughput mode (docs/benchmarks.md: 2 to 8 measured alike).
CHUNK = 4


class OnnxRuntimeRunner(Runner):
    """Runs an ``.onnx`` model with ONNX Runtime.

    Options: ``intra_op_num_threads`` (default: all cores), ``providers`` (default CPUExecutionProvider),
    ``io_binding`` (bind reused input/output buffers per batch size; default off: on the CPU provider it
    measured *slower* than ``session.run`` — 0.97 vs 0.84 ms at batch 1, equal at batch 32 — so it is
    there for device providers, where it saves host↔device copies), ``workers`` and ``chunk`` (throughput
    mode, see the module docstring: a batch of at least ``workers`` images is cut into equal parts of at most
    ``chunk`` images that ``workers`` threads run at once, each on one intra-op thread of a second InferenceSession;
    default: as many workers as intra-op threads on the CPU provider, ``chunk`` = CHUNK; ``workers=1``
    turns it off).
    """

    backend = Backend.onnxruntime

    def __init__(self, path, intra_op_num_threads: int | None = None, providers: list[str] | None = None,
                 io_binding: bool | None = None, workers: int | None = None, chunk: int | None = None,
                 **options):
        if options:
            raise EdgesegError(f"unknown option(s) for the onnxruntime backend: {', '.join(sorted(options))}")
        super().__init__(path)
        self.intra_op_num_threads = int(intra_op_num_threads or os.cpu_count() or 1)
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.io_binding = io_binding
        cpu = self.providers == ["CPUExecutionProvider"]
        self.workers = int(workers if workers is not None else (self.intra_op_num_threads if cpu else 1))
        self.chunk = int(chunk or CHUNK)
        if self.workers < 1 or self.chunk < 1:
            raise EdgesegError(f"workers and chunk must be at least 1, got {self.workers} and {self.chunk}")
        self.session = self._chunk_session = self._pool = None
        self._input_name = self._output_name = ""
        self._bindings: dict[tuple[int, ...], tuple] = {}

    def _activate(self) -> None:
        self.session = self._session(self.intra_op_num_threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgesegError(f"{self.path} has {len(inputs)} input(s) ({', '.join(i.name for i in inputs)}) and "
                               f"{len(outputs)} output(s) ({', '.join(o.name for o in outputs)}); edgeseg models "
                               "take one image (N, H, W, 1) and give one probability map")
        inp, out = inputs[0], outputs[0]
        self._input_name, self._output_name = inp.name, out.name
        if inp.type != "tensor(float)":
            raise EdgesegError(f"{self.path} takes {inp.type} input; edgeseg models take float32 raw pixels")
        shape = list(inp.shape)
        if len(shape) != 4 or shape[3] not in (1, None) and not isinstance(shape[3], str):
            raise EdgesegError(f"{self.path} takes input shaped {shape}; edgeseg models take (N, H, W, 1)")
        if isinstance(shape[1], int) and isinstance(shape[2], int):
            self.image_shape = (shape[1], shape[2])
        self._static_batch = shape[0] if isinstance(shape[0], int) else None
        if self.workers > 1 and self._static_batch is None:
            self._chunk_session = self._session(max(1, self.intra_op_num_threads // self.workers))
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edgeseg-ort")
        self._output_rank = len(out.shape)
        self.precision = onnx_precision(self.path)
        if self.io_binding is None:
            self.io_binding = self.providers[0] != "CPUExecutionProvider"
        self.config = {"intra_op_num_threads": self.intra_op_num_threads, "inter_op_num_threads": 1,
                       "execution_mode": "sequential", "graph_optimization_level": "all",
                       "providers": self.providers, "io_binding": self.io_binding,
                       "workers": self.workers if self._pool else 1, "chunk": self.chunk if self._pool else None}

    def _session(self, threads: int):
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: the optimizer warns for every FP16 Q/DQ scale product it has no CPU kernel to fold
        # (the TensorRT-target INT8 file), which says nothing about the results.
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.path), sess_options=opts, providers=self.providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf classes
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{self.path} is not a usable ONNX model: {first}") from e

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._static_batch is not None and batch.shape[0] != self._static_batch:
            raise BadInput(f"{self.describe()} takes batches of {self._static_batch}, got {batch.shape[0]}")
        try:
            return self._run(batch)
        except Exception as e:
            if type(e).__name__ in ("InvalidArgument", "Fail") and "shape" in str(e).lower():
                raise BadInput(f"{self.describe()} cannot take images shaped {batch.shape[1:3]}: "
                               f"{str(e).strip().splitlines()[0]}") from e
            raise

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self._pool is not None and n >= self.workers:
            # Equal parts of at most `chunk` images, a multiple of `workers` of them, so no worker idles at the end.
            parts = self.workers * -(-n // (self.workers * self.chunk))
            run = self._chunk_session.run
            return np.concatenate(list(self._pool.map(lambda c: run([self._output_name], {self._input_name: c})[0],
                                                      np.array_split(batch, min(parts, n)))))
        if not self.io_binding:
            return self.session.run([self._output_name], {self._input_name: batch})[0]
        # One binding per batch shape, over input and output buffers allocated once: a call then only copies
        # the pixels in and the probabilities out, with no per-call ORT allocations or bindings.
        bound = self._bindings.get(batch.shape)
        if bound is None:
            bound = self._bindings[batch.shape] = self._bind(batch.shape)
        binding, inp, out = bound
        np.copyto(inp, batch)
        self.session.run_with_iobinding(binding)
        return out.copy()  # the buffer is reused by the next call

    def _bind(self, shape: tuple[int, ...]):
        ort = require("onnxruntime")
        inp = np.empty(shape, dtype=np.float32)
        out = np.empty(shape if self._output_rank == 4 else shape[:3], dtype=np.float32)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self._input_name, ort.OrtValue.ortvalue_from_numpy(inp))
        binding.bind_ortvalue_output(self._output_name, ort.OrtValue.ortvalue_from_numpy(out))
        return binding, inp, out

    def _deactivate(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.session = self._chunk_session = self._pool = None
        self._bindings.clear()
