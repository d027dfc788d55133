"""Inference backends behind one interface, :class:`edgeseg.runners.base.Runner`.

``load_runner(path)`` picks the backend from the artifact: ``.keras`` → Keras, ``.onnx`` → ONNX Runtime
(any precision), ``.engine`` → TensorRT, ``classical`` → the non-learned baseline.
"""

from edgeseg.runners.base import Runner, load_runner

__all__ = ["Runner", "load_runner"]
