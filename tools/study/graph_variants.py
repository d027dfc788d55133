"""Two rewrites of the exported `inline` graph that compute the same thing, timed against the original.

    python tools/study/graph_variants.py runs/demo/model.onnx [ROUNDS]

The ONNX Runtime profile of the demo network (batch 32, 2 threads) puts ~10 % of the time in the final
DepthToSpace and ~6 % in the fold's cell max/min (ReduceMax/ReduceMin over a (N, 64, 4, 64, 4) view of the
image). This edits the ONNX graph, no retraining and no change in output:

* `pool`: cell max as MaxPool 4×4 / 4 over the (N, 1, 256, 256) image, cell min as −MaxPool(−image);
* `d2s`: DepthToSpace + Reshape as Reshape → Transpose(0, 3, 1, 4, 2) → Reshape;
* `both`.

It checks that every variant's output equals the original's, then times them interleaved (rounds alternate
between the variants, so a busy host slows all alike): 2 threads at batch 1 and 32, 1 thread at batch 4 (what
each of `OnnxRuntimeRunner`'s two workers runs), medians over the rounds. The node names it looks for are
tf2onnx 1.17's for `edgeseg.models.inline` (docs/benchmarks.md has the result).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edgeseg.data.synth import PRESETS, generate_batch
from timing import images_per_s  # tools/study/timing.py

SRC = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
CASES = [(2, 1), (1, 4), (2, 32)]  # (threads, batch)


def consumers(g, name):
    return [n for n in g.node if name in n.input]


def by_output(g, name):
    return next(n for n in g.node if name in n.output)


def cells_by_pool(m):
    """ReduceMax/ReduceMin over the cell view → MaxPool on the NCHW image (same values, same consumers)."""
    g = m.graph
    reduce = {n.op_type: n for n in g.node if n.op_type in ("ReduceMax", "ReduceMin")}
    view = by_output(g, reduce["ReduceMax"].input[0])            # Reshape image → (N, 64, 4, 64, 4)
    nchw = next(n for n in consumers(g, view.input[0]) if n.name != view.name and n.op_type == "Reshape")
    drop, new = {view.name}, []
    for op, neg in (("ReduceMax", False), ("ReduceMin", True)):
        r = reduce[op]
        unsq = consumers(g, r.output[0])[0]                       # → (N, 64, 64, 1)
        to_nchw = next(n for n in consumers(g, unsq.output[0]) if n.op_type == "Reshape")  # → (N, 1, 64, 64)
        others = [n for n in consumers(g, unsq.output[0]) if n.name != to_nchw.name]
        drop |= {r.name, unsq.name, to_nchw.name}
        src, tag = nchw.output[0], op.lower()
        if neg:
            new.append(helper.make_node("Neg", [src], [f"{tag}_neg_in"], name=f"{tag}_neg_in"))
            src = f"{tag}_neg_in"
        pooled = to_nchw.output[0] if not neg else f"{tag}_pooled"
        new.append(helper.make_node("MaxPool", [src], [pooled], kernel_shape=[4, 4], strides=[4, 4], name=f"{tag}_pool"))
        if neg:
            new.append(helper.make_node("Neg", [pooled], [to_nchw.output[0]], name=f"{tag}_neg_out"))
        for n in others:  # the mean cell range averages over every axis: layout does not matter
            n.input[:] = [to_nchw.output[0] if i == unsq.output[0] else i for i in n.input]
    keep = [n for n in g.node if n.name not in drop]
    at = [n.name for n in keep].index(nchw.name) + 1
    del g.node[:]
    g.node.extend(keep[:at] + new + keep[at:])
    return m


def d2s_by_transpose(m):
    g = m.graph
    d2s = next(n for n in g.node if n.op_type == "DepthToSpace")
    tail = consumers(g, d2s.output[0])[0]                         # Reshape → (N, 256, 256, 1)
    g.initializer.extend([numpy_helper.from_array(np.array([-1, 4, 4, 64, 64], np.int64), "d2s_s1"),
                          numpy_helper.from_array(np.array([-1, 256, 256, 1], np.int64), "d2s_s2")])
    new = [helper.make_node("Reshape", [d2s.input[0], "d2s_s1"], ["d2s_a"], name="d2s_r1"),
           helper.make_node("Transpose", ["d2s_a"], ["d2s_b"], perm=[0, 3, 1, 4, 2], name="d2s_t"),
           helper.make_node("Reshape", ["d2s_b", "d2s_s2"], [tail.output[0]], name="d2s_r2")]
    keep = [n for n in g.node if n.name not in (d2s.name, tail.name)]
    del g.node[:]
    g.node.extend(keep + new)
    return m


variants = {"orig": onnx.load(SRC), "pool": cells_by_pool(onnx.load(SRC)), "d2s": d2s_by_transpose(onnx.load(SRC)),
            "both": d2s_by_transpose(cells_by_pool(onnx.load(SRC)))}
images, _ = generate_batch(np.random.default_rng(0), PRESETS["seed"], 32)
x = images[..., None].astype(np.float32)
sessions = {}
for name, m in variants.items():
    onnx.checker.check_model(m)
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        sessions[name, threads] = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
ref = sessions["orig", 2].run(None, {"image": x})[0]
for name in variants:
    diff = float(np.abs(sessions[name, 2].run(None, {"image": x})[0] - ref).max())
    print(f"{name}: max |Δ| against the original {diff:g}")
    assert diff < 1e-6, name
rates = {(name, c): [] for name in variants for c in CASES}
for _ in range(ROUNDS):
    for name in variants:
        for threads, b in CASES:
            s, feed = sessions[name, threads], {"image": x[:b]}
            rates[name, (threads, b)].append(images_per_s(lambda: s.run(None, feed), b, max(10, 160 // b)))
print("images/s, medians of", ROUNDS, "interleaved rounds")
for name in variants:
    print(name, {f"{t} thread(s), batch {b}": round(float(np.median(rates[name, (t, b)]))) for t, b in CASES})
