"""TensorRT runner: a serialized engine run through the CUDA transport (named-tensor API, TensorRT 10 and 11).

Activation, in order: a CUDA context of the runner's own (:class:`~edgeseg.runners.cuda.CudaTransport`,
current only around each operation, so several engines share a process), the engine's manifest checked
against this TensorRT version and GPU (:func:`edgeseg.trt.manifest.check_engine` — TensorRT has no preflight
check, and a foreign engine otherwise fails deep inside deserialisation or, worse, runs), the engine
deserialised once (host code allowed for a version-compatible plan, which embeds its own runtime), one
execution context per CUDA stream (a context is not safe to share between batches in flight), and
pinned/device buffers for the profile's largest batch at its OPT image shape (the engine's ``image_shape``;
other image sizes are tiled to it by :mod:`edgeseg.tiling`).

Per batch: ``set_input_shape`` on that stream's context, the real output shape read back from the context
(the engine's own shape holds -1 for the batch, and sizing copies from the profile maximum hands back
max-batch results), ``set_tensor_address`` for both tensors, ``execute_async_v3`` on the stream. The
transport wraps this in async H2D/D2H copies and CUDA events. ``submit``/``collect`` let the benchmark keep
one batch per stream in flight, so the copy of the next batch overlaps the compute of the current one.

Written against NVIDIA's documented Python API; it runs only on a GPU host (tests marked ``gpu``).
CUDA-graph capture per batch size is not implemented (enqueue time is reported, so its benefit can be judged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import Runner
from edgeseg.runners.cuda import CudaTransport, check_batch_size, resolve_shape
from edgeseg.types import Backend, Precision


class TrtRunner(Runner):
    """Runs an ``.engine`` with TensorRT. Options: ``streams`` (CUDA streams = execution contexts, default
    2), ``device`` (CUDA device index, default 0)."""

    backend = Backend.tensorrt

    def __init__(self, path, streams: int = 2, device: int = 0, **options):
        if options:
            raise EdgesegError(f"unknown option(s) for the tensorrt backend: {', '.join(sorted(options))}")
        if int(streams) < 1:
            raise EdgesegError(f"streams must be >= 1, got {streams}")
        super().__init__(path)
        self.streams = int(streams)
        self.in_flight = self.streams  # one batch per stream (submit/collect)
        self.device = int(device)
        #: (min, max) batch of the engine's optimization profile; known after activate().
        self.batch_range: tuple[int, int] | None = None
        self.manifest: dict | None = None
        self._transport: CudaTransport | None = None
        self._runtime = self._engine = None
        self._contexts: list = []
        self._by_stream: dict[int, object] = {}
        self._input = self._output = ""
        self._item_shape: tuple[int, ...] = ()

    # -- lifecycle -------------------------------------------------------------------------------------
    def _activate(self) -> None:
        trt = require("tensorrt")
        transport = CudaTransport(self._enqueue, self.streams, self.device).open()
        self._transport = transport
        try:
            with transport.current():  # TensorRT allocates in whatever CUDA context is current
                self._load(trt, transport)
        except BaseException:
            self._deactivate()
            raise

    def _load(self, trt, transport: CudaTransport) -> None:
        from edgeseg.trt.manifest import check_engine, runtime_flags

        gpu, cc = transport.device_info()
        self.manifest = check_engine(self.path, trt.__version__, gpu, cc)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        for name, value in runtime_flags(self.manifest).items():
            setattr(self._runtime, name, value)  # a version-compatible plan runs its own lean runtime
        engine = self._runtime.deserialize_cuda_engine(Path(self.path).read_bytes())
        if engine is None:
            raise EdgesegError(f"TensorRT {trt.__version__} could not deserialise {self.path} on {gpu}: "
                               "rebuild it here with `edgeseg build-engine`")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgesegError(f"{self.path} has inputs {inputs} and outputs {outputs}; edgeseg engines "
                               "have one image input and one probability output")
        self._input, self._output = inputs[0], outputs[0]
        lo_shape, opt_shape, hi_shape = engine.get_tensor_profile_shape(self._input, 0)
        self.batch_range = (int(lo_shape[0]), int(hi_shape[0]))
        # An engine built for a range of image shapes runs at its OPT shape (kernels are tuned for it; the
        # buffers are sized for it): other sizes reach it through tiling (edgeseg.tiling).
        self._item_shape = tuple(int(d) for d in opt_shape[1:])
        if len(self._item_shape) != 3 or self._item_shape[2] != 1:
            raise EdgesegError(f"{self.path} takes input shaped {tuple(hi_shape)}; edgeseg engines take (N, H, W, 1)")
        self._contexts = [engine.create_execution_context() for _ in range(self.streams)]
        if any(c is None for c in self._contexts):
            raise EdgesegError(f"TensorRT could not create {self.streams} execution contexts for {self.path} "
                               "(out of GPU memory?): try --streams 1")
        # The output's per-image shape: ask a context, at the largest batch.
        probe = self._contexts[0]
        probe.set_input_shape(self._input, (self.batch_range[1], *self._item_shape))
        out_max = resolve_shape(probe.get_tensor_shape(self._output), self.batch_range[1])
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        transport.allocate(self.batch_range[1], self._item_shape, in_dtype, out_max[1:], out_dtype)
        self._by_stream = {slot.stream.handle: ctx for slot, ctx in zip(transport.slots, self._contexts)}
        self.image_shape = (self._item_shape[0], self._item_shape[1])
        try:
            self.precision = Precision((self.manifest or {}).get("precision", "fp32"))
        except ValueError:
            self.precision = Precision.fp32

    def _deactivate(self) -> None:
        # TensorRT objects go before the CUDA context they live in, and are destroyed inside it.
        transport, self._transport = self._transport, None
        if transport is None:
            return
        try:
            with transport.current():
                self._by_stream = {}
                self._contexts = []
                self._engine = None
                self._runtime = None
        finally:
            transport.close()

    # -- inference -------------------------------------------------------------------------------------
    def check_batch_size(self, batch: int) -> None:
        """One-line error for a batch size outside the engine's optimization profile."""
        if self.batch_range is None:
            raise RuntimeError("check_batch_size() before activate()")
        check_batch_size(batch, *self.batch_range)

    def _enqueue(self, stream, d_in, d_out, batch: int) -> tuple[int, ...]:
        """The compute step the transport calls: enqueue the engine on ``stream``'s own context."""
        ctx = self._by_stream[stream.handle]
        if not ctx.set_input_shape(self._input, (batch, *self._item_shape)):
            raise EdgesegError(f"{self.path} refused input shape {(batch, *self._item_shape)}")
        out_shape = resolve_shape(ctx.get_tensor_shape(self._output), batch)
        ctx.set_tensor_address(self._input, int(d_in))
        ctx.set_tensor_address(self._output, int(d_out))
        if not ctx.execute_async_v3(stream.handle):
            raise RuntimeError(f"execute_async_v3 failed for {self.path} at batch {batch}")
        return out_shape

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        self.check_batch_size(batch.shape[0])
        return self._transport.run(batch)

    def submit(self, images: np.ndarray):
        """Start a batch on the next stream; pair with :meth:`collect` (at most ``streams`` in flight)."""
        if not self.active:
            raise RuntimeError("TrtRunner.submit() called before activate()")
        batch = self.prepare(images)
        self.check_batch_size(batch.shape[0])
        return self._transport.submit(batch)

    def collect(self, token) -> np.ndarray:
        """(N, H, W) float32 probabilities of a submitted batch."""
        out = self._transport.collect(token)
        return np.asarray(out, dtype=np.float32).reshape(out.shape[:3])

    def drain_split(self) -> dict[str, list[float]]:
        """Per-batch H2D/compute/D2H (CUDA events) and enqueue times in ms since the last call."""
        return self._transport.drain_split() if self._transport else {}
