"""Average the probabilities of several exported networks in one ONNX file (a study tool, docs/study.md).

    python tools/study/ensemble_onnx.py OUT.onnx A.onnx B.onnx [...]

The ensemble is an ordinary model file: every command reads it (`edgeseg operating-point` fits its own point,
`eval`, `bench`), so what averaging two training seeds buys — less run-to-run variance in the faint defects — is
measured with the same tools as a single network, at its cost (the FLOPs of all members).
"""
import sys

import onnx
from onnx import compose, helper

from edgeseg.artifacts import atomic_path, sha256_file, write_manifest

out, paths = sys.argv[1], sys.argv[2:]
if len(paths) < 2:
    sys.exit("usage: ensemble_onnx.py OUT.onnx A.onnx B.onnx [...]")
members = [onnx.load(p) for p in paths]
first = members[0].graph
image, mask = first.input[0].name, first.output[0].name
nodes, inits, outputs = [], [], []
for k, m in enumerate(members):
    m = compose.add_prefix(m, f"m{k}_")
    g = m.graph
    for node in g.node:  # every member reads the one shared input
        node.input[:] = [image if name == g.input[0].name else name for name in node.input]
    nodes += list(g.node)
    inits += list(g.initializer)
    outputs.append(g.output[0].name)
nodes.append(helper.make_node("Mean", outputs, [mask], name="ensemble_mean"))
graph = helper.make_graph(nodes, "ensemble", [first.input[0]], [first.output[0]], inits)
model = helper.make_model(graph, opset_imports=members[0].opset_import, ir_version=members[0].ir_version)
onnx.checker.check_model(model)
with atomic_path(out) as tmp:
    onnx.save(model, str(tmp))
write_manifest(out, "onnx", config={"ensemble": paths}, inputs={p: sha256_file(p) for p in paths}, precision="fp32")
print(f"wrote {out}: the mean of {len(paths)} networks")
