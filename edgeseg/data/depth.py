"""Bit depth: how 8- and 16-bit images become the gray levels every network and runtime takes.

edgeseg's networks take float32 *gray levels on the 8-bit scale* (0..255): an 8-bit image as it is, a 16-bit
image divided by 257, so that 65535 maps to 255 and the 256 finer steps between two 8-bit levels survive as
fractions (no rounding, no clipping). One rule, applied in one place (:func:`to_levels`, called by
:meth:`edgeseg.runners.base.Runner.prepare` and by training), so training, ``eval``, ``predict``, ONNX Runtime
and TensorRT see the same numbers; a model's manifest records it (:func:`describe`). The networks measure the
noise per image, so a 12-bit camera (0..4095 in a 16-bit file) works as well: its levels are small, not wrong.
Keeping the 16-bit range off the graph also keeps FP16 inputs finite (FP16 stops at 65504).

    to_levels(np.array([0, 257, 65535], np.uint16))  # → [0., 1., 255.] float32
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.errors import BadInput

#: What one unit of each stored depth is worth in 8-bit gray levels.
SCALE = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 1.0 / 257.0}
#: The integer depths a dataset folder may hold.
DEPTHS = tuple(SCALE)


def bits(dtype: np.dtype | type) -> int:
    """8 or 16; BadInput for any other pixel type."""
    d = np.dtype(dtype)
    if d not in SCALE:
        raise BadInput(f"{d} pixels: edgeseg reads 8- or 16-bit grayscale images")
    return d.itemsize * 8


def to_levels(images: np.ndarray) -> np.ndarray:
    """uint8 or uint16 images → float32 gray levels on the 8-bit scale; float images pass unchanged (they are
    taken to be gray levels already, as :meth:`Runner.infer` documents)."""
    a = np.asarray(images)
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    scale = SCALE.get(a.dtype)
    if scale is None:
        raise BadInput(f"{a.dtype} pixels: edgeseg reads 8- or 16-bit grayscale images")
    out = a.astype(np.float32)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


def full_scale(dtype: np.dtype | type) -> int:
    """The largest value a pixel of this depth holds (255 or 65535)."""
    bits(dtype)
    return int(np.iinfo(np.dtype(dtype)).max)


def describe() -> dict[str, Any]:
    """The rule, for a model's manifest (``input_scaling``)."""
    return {"unit": "8-bit gray levels, float32", "uint8": 1.0, "uint16": "1/257 (65535 -> 255)"}
