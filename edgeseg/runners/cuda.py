"""The CUDA transport: context, pinned and device buffers, streams, async copies, events. The ONLY pycuda user.

Whatever runs on the GPU (a TensorRT engine, a test's own kernel) plugs in as a *compute* callable
``compute(stream, d_in, d_out, batch) -> output_shape`` that enqueues its work on ``stream``, reading the
``batch`` images at ``d_in`` and writing at ``d_out``; it returns the real output shape so only that much is
copied back. The transport does the rest, per batch:

    pinned host in --H2D--> device in --compute--> device out --D2H--> pinned host out
    (events:      start      h2d_done      compute_done       d2h_done)

Buffers are allocated once, for the largest batch, in ``streams`` slots; each slot has its own stream, so
with two or more slots the H2D copy of the next batch overlaps the compute of the current one
(``submit``/``collect``). Events give the device-side split (H2D, compute, D2H) and the host clock gives the
enqueue time. The context is explicit (``cuda.init()``, ``Device(i).make_context()``), never
``pycuda.autoinit``, and it is current only while the transport works: ``make_context`` pushes it, so it is
popped at once, and every operation pushes it and pops it again (:meth:`CudaTransport.current`). pycuda's
contexts are a per-thread stack and ``Context.pop()`` pops whatever is on top, so two transports in one
process (``compare`` of two engines) would otherwise run one's copies in the other's context and pop the
other's context on close. Keeping every pycuda call here lets the transport move to cuda-python later
without touching the runners.

The pure parts (buffer sizing, round-robin, batch and shape checks) need no GPU and are tested anywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.deps import require
from edgeseg.errors import EdgesegError

#: compute(stream, d_in, d_out, batch) -> output shape (batch first)
Compute = Callable[[Any, Any, Any, int], Sequence[int]]


# -- pure helpers (no CUDA) ---------------------------------------------------------------------------------
def buffer_nbytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of a dense buffer of ``shape`` and ``dtype``."""
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"cannot size a buffer with dynamic dimensions: {tuple(shape)}")
    return int(np.prod([int(d) for d in shape], dtype=np.int64)) * np.dtype(dtype).itemsize


@dataclass(frozen=True)
class BufferPlan:
    """What :meth:`CudaTransport.allocate` will allocate: per slot one pinned and one device buffer for
    input and output, sized for ``max_batch``."""

    max_batch: int
    in_shape: tuple[int, ...]     # per image
    in_dtype: np.dtype
    out_shape: tuple[int, ...]    # per image
    out_dtype: np.dtype
    streams: int

    @property
    def in_nbytes(self) -> int:
        return buffer_nbytes((self.max_batch, *self.in_shape), self.in_dtype)

    @property
    def out_nbytes(self) -> int:
        return buffer_nbytes((self.max_batch, *self.out_shape), self.out_dtype)

    @property
    def device_nbytes(self) -> int:
        return self.streams * (self.in_nbytes + self.out_nbytes)

    @property
    def pinned_nbytes(self) -> int:
        return self.device_nbytes


def plan_buffers(max_batch: int, in_shape: Sequence[int], in_dtype: Any, out_shape: Sequence[int],
                 out_dtype: Any, streams: int) -> BufferPlan:
    """Check and size the buffers (one line of error for a bad request)."""
    if max_batch < 1:
        raise EdgesegError(f"max batch must be >= 1, got {max_batch}")
    if streams < 1:
        raise EdgesegError(f"streams must be >= 1, got {streams}")
    plan = BufferPlan(int(max_batch), tuple(int(d) for d in in_shape), np.dtype(in_dtype),
                      tuple(int(d) for d in out_shape), np.dtype(out_dtype), int(streams))
    if plan.in_nbytes == 0 or plan.out_nbytes == 0:  # sizing also raises on dynamic (-1) dimensions
        raise EdgesegError(f"empty buffers requested: in {plan.in_shape}, out {plan.out_shape}")
    return plan


def check_batch_size(batch: int, lo: int, hi: int, what: str = "engine") -> None:
    """A batch size outside the optimization profile [lo, hi] is a user error, said in one line."""
    if not lo <= int(batch) <= hi:
        raise EdgesegError(
            f"batch size {batch} is outside the {what}'s optimization profile ({lo}..{hi}): use sizes in "
            f"that range or rebuild the engine with `edgeseg build-engine --batch MIN,OPT,MAX` covering it"
        )


def resolve_shape(shape: Sequence[int], batch: int) -> tuple[int, ...]:
    """A concrete shape: a dynamic (-1) batch dimension becomes ``batch``; any other -1 is an error,
    because sizing a copy from it would copy garbage (or the profile's maximum) back."""
    dims = [int(d) for d in shape]
    if dims and dims[0] < 0:
        dims[0] = int(batch)
    if any(d < 0 for d in dims):
        raise RuntimeError(f"shape {tuple(shape)} still has dynamic dimensions after setting the input shape")
    return tuple(dims)


class RoundRobin:
    """Slot indices 0, 1, …, n−1, 0, 1, … (the next batch goes to the next stream)."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError("round robin over zero slots")
        self.n = n
        self._i = 0

    def next(self) -> int:
        i = self._i
        self._i = (i + 1) % self.n
        return i


# -- the transport -------------------------------------------------------------------------------------------
@dataclass
class Slot:
    """One stream with its own pinned and device buffers and timing events."""

    index: int
    stream: Any
    h_in: np.ndarray
    h_out: np.ndarray
    d_in: Any
    d_out: Any
    events: tuple[Any, Any, Any, Any]
    busy: bool = False
    batch: int = 0
    out_shape: tuple[int, ...] = ()
    enqueue_s: float = 0.0


@dataclass
class Split:
    """Per-batch timings collected since the last drain (milliseconds)."""

    h2d: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    d2h: list[float] = field(default_factory=list)
    enqueue: list[float] = field(default_factory=list)


class CudaTransport:
    """Pinned/device buffers, ``streams`` CUDA streams and events around a compute callable.

        t = CudaTransport(compute, streams=2)
        t.open()                                        # context on device 0
        t.allocate(32, (256, 256, 1), np.float32, (256, 256, 1), np.float32)
        out = t.run(batch)                              # or: slot = t.submit(b); out = t.collect(slot)
        t.close()
    """

    def __init__(self, compute: Compute, streams: int = 2, device: int = 0):
        if streams < 1:
            raise EdgesegError(f"streams must be >= 1, got {streams}")
        self.compute = compute
        self.streams = int(streams)
        self.device = int(device)
        self.plan: BufferPlan | None = None
        self.slots: list[Slot] = []
        self._rr = RoundRobin(self.streams)
        self._split = Split()
        self._cuda = None
        self._ctx = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def open(self) -> "CudaTransport":
        """Create (and make current) a CUDA context on ``device``."""
        cuda = require("pycuda.driver")
        try:
            cuda.init()
            count = cuda.Device.count()
        except cuda.Error as e:
            raise EdgesegError(f"CUDA driver not usable: {e}") from None
        if not 0 <= self.device < count:
            raise EdgesegError(f"CUDA device {self.device} does not exist ({count} visible)")
        self._cuda = cuda
        self._ctx = cuda.Device(self.device).make_context()
        self._ctx.pop()  # make_context pushed it; it is pushed again around each operation
        return self

    def device_info(self) -> tuple[str, str]:
        """(GPU name, compute capability as "major.minor") of the transport's device."""
        cuda = self._cuda or require("pycuda.driver")
        dev = cuda.Device(self.device)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"

    def allocate(self, max_batch: int, in_shape: Sequence[int], in_dtype: Any, out_shape: Sequence[int],
                 out_dtype: Any) -> BufferPlan:
        """Allocate every slot's buffers, stream and events once, for ``max_batch`` images."""
        if self._ctx is None:
            raise RuntimeError("CudaTransport.allocate() before open()")
        plan = plan_buffers(max_batch, in_shape, in_dtype, out_shape, out_dtype, self.streams)
        cuda = self._cuda
        with self.current():
            for i in range(self.streams):
                h_in = cuda.pagelocked_empty((plan.max_batch, *plan.in_shape), plan.in_dtype)
                h_out = cuda.pagelocked_empty((plan.max_batch, *plan.out_shape), plan.out_dtype)
                d_in, d_out = cuda.mem_alloc(plan.in_nbytes), cuda.mem_alloc(plan.out_nbytes)
                events = (cuda.Event(), cuda.Event(), cuda.Event(), cuda.Event())
                self.slots.append(Slot(i, cuda.Stream(), h_in, h_out, d_in, d_out, events))
        self.plan = plan
        return plan

    def close(self) -> None:
        """Wait for in-flight work, free every buffer, destroy the context (leaving the stack as it was)."""
        if self._ctx is None:
            return
        try:
            with self.current():
                for slot in self.slots:
                    slot.stream.synchronize()
                    slot.d_in.free()
                    slot.d_out.free()
                    # Pinned memory belongs to the context too: free it now, not whenever the arrays are collected.
                    for host in (slot.h_in, slot.h_out):
                        free = getattr(host.base, "free", None)
                        if free is not None:
                            free()
                self.slots.clear()  # events go with the slots, before the context
        finally:
            self._ctx.detach()  # not current: pycuda pushes it, destroys it, and the destroy pops it
            self._ctx = None
            self.plan = None

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """This transport's context made current for the block, then popped: whatever another transport
        (or thread) left current is current again afterwards. TensorRT calls that touch device memory
        (deserialising, creating execution contexts, destroying them) belong inside it too."""
        if self._ctx is None:
            raise RuntimeError("CudaTransport.current() before open()")
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    # -- work ----------------------------------------------------------------------------------------------
    def submit(self, batch: np.ndarray) -> Slot:
        """Enqueue H2D → compute → D2H for ``batch`` on the next stream; returns without waiting."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("CudaTransport.submit() before allocate()")
        n = int(batch.shape[0])
        if not 1 <= n <= plan.max_batch or tuple(batch.shape[1:]) != plan.in_shape:
            raise EdgesegError(f"batch shaped {batch.shape} does not fit buffers for "
                               f"(1..{plan.max_batch}, {', '.join(map(str, plan.in_shape))})")
        slot = self.slots[self._rr.next()]
        if slot.busy:
            raise RuntimeError(f"stream {slot.index} still has a batch in flight: collect() it first")
        cuda = self._cuda
        start, h2d, comp, d2h = slot.events
        with self.current():
            np.copyto(slot.h_in[:n], batch, casting="unsafe")
            start.record(slot.stream)
            cuda.memcpy_htod_async(slot.d_in, slot.h_in[:n], slot.stream)
            h2d.record(slot.stream)
            t0 = time.perf_counter()
            out_shape = resolve_shape(self.compute(slot.stream, slot.d_in, slot.d_out, n), n)
            slot.enqueue_s = time.perf_counter() - t0
            comp.record(slot.stream)
            count = int(np.prod(out_shape))
            if count > slot.h_out.size:
                raise RuntimeError(f"output shape {out_shape} is larger than the buffer for {plan.max_batch} images")
            cuda.memcpy_dtoh_async(slot.h_out.reshape(-1)[:count], slot.d_out, slot.stream)
            d2h.record(slot.stream)
        slot.busy, slot.batch, slot.out_shape = True, n, out_shape
        return slot

    def collect(self, slot: Slot) -> np.ndarray:
        """Wait for ``slot``'s batch and return its output (a copy: the pinned buffer is reused)."""
        if not slot.busy:
            raise RuntimeError(f"stream {slot.index} has nothing in flight")
        start, h2d, comp, d2h = slot.events
        with self.current():
            d2h.synchronize()
            count = int(np.prod(slot.out_shape))
            out = slot.h_out.reshape(-1)[:count].reshape(slot.out_shape).copy()
            self._split.h2d.append(start.time_till(h2d))
            self._split.compute.append(h2d.time_till(comp))
            self._split.d2h.append(comp.time_till(d2h))
            self._split.enqueue.append(slot.enqueue_s * 1e3)
        slot.busy = False
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Submit and collect one batch (no overlap)."""
        return self.collect(self.submit(batch))

    def drain_split(self) -> dict[str, list[float]]:
        """The H2D/compute/D2H (CUDA events) and enqueue (host clock) times in ms since the last drain."""
        s, self._split = self._split, Split()
        return {"h2d": s.h2d, "compute": s.compute, "d2h": s.d2h, "enqueue": s.enqueue}
