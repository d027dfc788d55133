"""Inference backends behind one interface, :class:`edgeseg.runners.base.Runner`.

``load_runner(path)`` picks the backend from the artifact (:mod:`edgeseg.runners.registry`): ``.keras`` →
Keras, ``.onnx`` → ONNX Runtime (any precision), ``.engine`` → TensorRT, ``classical`` → the non-learned
baseline. A new backend is one Runner subclass and one registry entry.
"""

from edgeseg.runners.base import Runner
from edgeseg.runners.registry import load_runner

__all__ = ["Runner", "load_runner"]
