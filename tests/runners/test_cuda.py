"""The CUDA transport (edgeseg.runners.cuda) with a small kernel of this test's own — never TensorRT.

The pure parts (buffer sizing, round-robin, batch and shape checks) run everywhere. The tests marked
``gpu`` need pycuda, nvcc and an NVIDIA GPU, and *not* TensorRT: they plug a sigmoid kernel compiled with
``pycuda.compiler.SourceModule`` into the transport and check its results against numpy, the output shape
for small batches, overlap between streams, the event timings and two transports in one process. They are
also marked ``transport``, so a host without TensorRT runs them (``tools/gpu_check.sh`` does). A pass here is
a transport check, not a TensorRT one. The context discipline (each operation pushes its own context and pops
it, leaving the stack as it found it) is also checked on the CPU against a recording stand-in for pycuda's
context stack.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.runners.cuda import RoundRobin, buffer_nbytes, check_batch_size, plan_buffers, resolve_shape

H = W = 64


# -- pure parts ----------------------------------------------------------------------------------------------
def test_buffers_are_sized_for_the_largest_batch_per_stream():
    plan = plan_buffers(32, (256, 256, 1), np.float32, (256, 256, 1), np.float16, streams=2)
    assert plan.in_nbytes == 32 * 256 * 256 * 4 and plan.out_nbytes == 32 * 256 * 256 * 2
    assert plan.device_nbytes == plan.pinned_nbytes == 2 * (plan.in_nbytes + plan.out_nbytes)
    assert buffer_nbytes((3, 5), np.uint8) == 15
    with pytest.raises(ValueError, match="dynamic"):
        buffer_nbytes((-1, 256, 256, 1), np.float32)
    for bad in (dict(max_batch=0), dict(streams=0)):
        args = dict(max_batch=4, in_shape=(8, 8, 1), in_dtype=np.float32, out_shape=(8, 8, 1),
                    out_dtype=np.float32, streams=2) | bad
        with pytest.raises(EdgesegError):
            plan_buffers(**args)


def test_round_robin_cycles_over_the_streams():
    rr = RoundRobin(3)
    assert [rr.next() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError):
        RoundRobin(0)


def test_batch_sizes_outside_the_profile_are_one_line():
    check_batch_size(1, 1, 32)
    check_batch_size(32, 1, 32)
    for b in (0, 33, 64):
        with pytest.raises(EdgesegError, match=r"outside the engine's optimization profile \(1\.\.32\)"):
            check_batch_size(b, 1, 32)


def test_the_real_output_shape_replaces_the_dynamic_batch():
    assert resolve_shape((-1, 256, 256, 1), 3) == (3, 256, 256, 1)
    assert resolve_shape((5, 16, 16, 1), 5) == (5, 16, 16, 1)
    with pytest.raises(RuntimeError, match="dynamic"):
        resolve_shape((-1, -1, 256, 1), 3)


# -- the context stack, on the CPU --------------------------------------------------------------------------
class _Stack:
    """pycuda's per-thread context stack, as far as the transport uses it (push, pop, make_context, detach)."""

    def __init__(self):
        self.stack: list[object] = []
        self.log: list[tuple[str, object]] = []


def _recording_driver(stack: _Stack):
    import types

    class Context:
        def __init__(self, name):
            self.name, self.alive = name, True

        def push(self):
            stack.stack.append(self)

        @staticmethod
        def pop():
            stack.stack.pop()

        def detach(self):  # pycuda: push if not current, destroy, and the destroy pops it
            stack.stack.append(self)
            self.alive = False
            stack.stack.pop()

        def __repr__(self):
            return self.name

    class Device:
        made = 0

        def __init__(self, i):
            self.i = i

        @staticmethod
        def count():
            return 1

        def make_context(self):
            Device.made += 1
            ctx = Context(f"ctx{Device.made}")
            stack.stack.append(ctx)
            return ctx

    class Buffer:
        def free(self):
            stack.log.append(("free", stack.stack[-1]))

    class Stream:
        def synchronize(self):
            stack.log.append(("sync", stack.stack[-1]))

    class Event:
        def record(self, stream):
            pass

        def synchronize(self):
            pass

        def time_till(self, other):
            return 0.0

    def copy(kind):
        def run(dst, src, stream):
            stack.log.append((kind, stack.stack[-1]))
            if kind == "d2h":
                dst[...] = 0.5
        return run

    return types.SimpleNamespace(
        init=lambda: None, Device=Device, Context=Context, Stream=Stream, Event=Event, Error=RuntimeError,
        pagelocked_empty=lambda shape, dtype: np.empty(shape, dtype), mem_alloc=lambda n: Buffer(),
        memcpy_htod_async=copy("h2d"), memcpy_dtoh_async=copy("d2h"))


def test_two_transports_each_run_in_their_own_context_and_leave_the_stack_as_found(monkeypatch):
    import edgeseg.runners.cuda as cuda_module
    from edgeseg.runners.cuda import CudaTransport

    stack = _Stack()
    monkeypatch.setattr(cuda_module, "require", lambda name: _recording_driver(stack))
    seen = []

    def compute(stream, d_in, d_out, batch):
        seen.append(stack.stack[-1])
        return (batch, 4, 4, 1)

    a, b = CudaTransport(compute, streams=1).open(), CudaTransport(compute, streams=1).open()
    assert stack.stack == []  # make_context pushed each; open pops it again
    for t in (a, b):
        t.allocate(2, (4, 4, 1), np.float32, (4, 4, 1), np.float32)
    slot_a = a.submit(np.zeros((1, 4, 4, 1), np.float32))
    slot_b = b.submit(np.zeros((2, 4, 4, 1), np.float32))  # b enqueues while a's batch is in flight
    assert b.collect(slot_b).shape == (2, 4, 4, 1) and a.collect(slot_a).shape == (1, 4, 4, 1)
    assert [repr(c) for c in seen] == [repr(a._ctx), repr(b._ctx)]
    assert [repr(ctx) for kind, ctx in stack.log if kind == "h2d"] == [repr(a._ctx), repr(b._ctx)]
    ctx_a = a._ctx
    a.close()  # frees a's buffers in a's context, and must not pop b's
    assert not ctx_a.alive and stack.stack == []
    assert {repr(ctx) for kind, ctx in stack.log if kind in ("free", "sync")} == {repr(ctx_a)}
    b.run(np.zeros((1, 4, 4, 1), np.float32))
    assert repr(seen[-1]) == repr(b._ctx)
    with b.current():
        assert stack.stack == [b._ctx]
    b.close()
    assert stack.stack == []


# -- on the GPU ---------------------------------------------------------------------------------------------
KERNEL = r"""
__global__ void sigmoid(float *out, const float *x, int n, int iters)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    // Busy work that leaves v unchanged (a fixed point), so compute lasts long enough to see overlap.
    for (int k = 0; k < iters; ++k) v = v * 0.5f + x[i] * 0.5f;
    out[i] = 1.0f / (1.0f + expf(-(v - 112.0f) / 7.0f));
}
"""


def expected(batch: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(batch.astype(np.float64) - 112.0) / 7.0))


@pytest.fixture
def transport_factory():
    """transport_factory(streams, iters, max_batch) → an open, allocated transport running the kernel."""
    from edgeseg.runners.cuda import CudaTransport

    made = []

    def make(streams=2, iters=0, max_batch=8):
        holder = {}

        def compute(stream, d_in, d_out, batch):
            n = batch * H * W
            holder["fn"](d_out, d_in, np.int32(n), np.int32(iters), block=(256, 1, 1),
                         grid=((n + 255) // 256, 1), stream=stream)
            return (batch, H, W, 1)

        t = CudaTransport(compute, streams=streams).open()
        made.append(t)
        from pycuda.compiler import SourceModule

        with t.current():  # the module loads into the transport's own context
            holder["module"] = SourceModule(KERNEL)
            holder["fn"] = holder["module"].get_function("sigmoid")
        t.allocate(max_batch, (H, W, 1), np.float32, (H, W, 1), np.float32)
        t._kernel = holder  # keep the module alive as long as the transport
        return t

    yield make
    for t in made:
        t._kernel.clear()  # unload the module while its context still exists
        t.close()


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(100, 125, (n, H, W, 1)).astype(np.float32)


@pytest.mark.gpu
@pytest.mark.transport
def test_results_match_numpy_and_only_the_batch_comes_back(transport_factory):
    t = transport_factory(streams=2, max_batch=8)
    for n in (1, 3, 8):
        x = images(n, seed=n)
        out = t.run(x)
        assert out.shape == (n, H, W, 1)
        np.testing.assert_allclose(out, expected(x), atol=1e-5)
    name, cc = t.device_info()
    assert name and cc.count(".") == 1


@pytest.mark.gpu
@pytest.mark.transport
def test_pipelined_batches_come_back_in_order_and_streams_overlap(transport_factory):
    t = transport_factory(streams=2, iters=100_000, max_batch=8)  # ~0.5 ms of compute per batch
    xs = [images(8, seed=s) for s in range(6)]
    outs = []
    inflight = []
    for x in xs:
        if len(inflight) == 2:
            outs.append(t.collect(inflight.pop(0)))
        inflight.append(t.submit(x))
    outs += [t.collect(s) for s in inflight]
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out, expected(x), atol=1e-4)
    # Overlap, read from the events of two batches in flight at once: the second stream starts its copy
    # before the first stream's batch has finished.
    a, b = t.submit(xs[0]), t.submit(xs[1])
    start_a, _, _, done_a = a.events
    start_b = b.events[0]
    t.collect(a), t.collect(b)
    assert start_a.time_till(start_b) < start_a.time_till(done_a)


@pytest.mark.gpu
@pytest.mark.transport
def test_events_time_the_split_sensibly(transport_factory):
    t = transport_factory(streams=1, iters=500, max_batch=8)
    t.drain_split()
    for _ in range(5):
        t.run(images(8))
    split = t.drain_split()
    assert set(split) == {"h2d", "compute", "d2h", "enqueue"}
    for key, values in split.items():
        assert len(values) == 5 and all(np.isfinite(v) and v >= 0 for v in values), (key, values)
    assert all(v > 0 for v in split["compute"])
    assert t.drain_split()["h2d"] == []


@pytest.mark.gpu
@pytest.mark.transport
def test_misuse_is_refused(transport_factory):
    t = transport_factory(streams=1, max_batch=4)
    with pytest.raises(EdgesegError, match="does not fit"):
        t.submit(images(5))
    slot = t.submit(images(2))
    with pytest.raises(RuntimeError, match="in flight"):
        t.submit(images(2))
    t.collect(slot)
    with pytest.raises(RuntimeError, match="nothing in flight"):
        t.collect(slot)


@pytest.mark.gpu
@pytest.mark.transport
def test_two_transports_in_one_process_keep_their_own_contexts(transport_factory):
    import pycuda.driver as cuda

    before = cuda.Context.get_current()
    a, b = transport_factory(streams=1, max_batch=4), transport_factory(streams=2, max_batch=4)
    x = images(3, seed=9)
    slot = a.submit(x)
    np.testing.assert_allclose(b.run(x), expected(x), atol=1e-5)  # b works while a's batch is in flight
    np.testing.assert_allclose(a.collect(slot), expected(x), atol=1e-5)
    a._kernel.clear()
    a.close()  # must leave b's context alone
    np.testing.assert_allclose(b.run(x), expected(x), atol=1e-5)
    assert cuda.Context.get_current() == before
