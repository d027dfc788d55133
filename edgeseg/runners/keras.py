"""Keras runner: the FP32 reference every deployed artifact is compared against.

The model is called directly (``model(batch, training=False)``) rather than through ``predict()``, whose
per-call set-up (a tf.data pipeline, callbacks) costs milliseconds and would make batch 1 look slower than
the network is.
"""

from __future__ import annotations

import zipfile

import numpy as np

from edgeseg.deps import require
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import Runner
from edgeseg.types import Backend, Precision


class KerasRunner(Runner):
    """Runs a ``.keras`` model saved by ``edgeseg train`` (custom layers registered by ``edgeseg.models``)."""

    backend = Backend.keras

    def __init__(self, path, **options):
        if options:
            raise EdgesegError(f"unknown option(s) for the keras backend: {', '.join(sorted(options))}")
        super().__init__(path)
        self.model = None

    def _activate(self) -> None:
        if not zipfile.is_zipfile(self.path):  # Keras says "File not found" for a file that is there
            raise EdgesegError(f"{self.path} is not a Keras model: a .keras file is a zip archive (as Keras "
                               "saves it), and this one is not")
        keras = require("keras")
        import edgeseg.models  # noqa: F401  (registers the custom layers load_model needs)

        try:
            self.model = keras.models.load_model(self.path, compile=False)
        except Exception as e:  # Keras raises ValueError/OSError/zipfile errors for a bad file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{self.path} is not a Keras model: {first}") from e
        shape = tuple(self.model.inputs[0].shape) if self.model.inputs else ()
        if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
            self.image_shape = (int(shape[1]), int(shape[2]))
        self.precision = Precision.fp32
        self.size_multiple = size_multiple(self.model)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(batch, training=False)
        return np.asarray(out)

    def _deactivate(self) -> None:
        self.model = None


def size_multiple(model) -> int:
    """What image sides must be divisible by: the product of the model's pooling strides (a stride-1 pooling,
    a local mean, adds nothing), and at least the fold / depth-to-space block (a UNet of depth 4 needs 16,
    ``inline`` 4)."""
    import math

    import keras

    from edgeseg.models.layers import DepthToSpace, FoldConv

    pools, blocks = 1, 1
    for layer in model.layers:
        if isinstance(layer, (FoldConv, DepthToSpace)):
            blocks = math.lcm(blocks, layer.block)
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            pools *= math.lcm(*(int(s) for s in layer.strides))
    return math.lcm(pools, blocks)
