"""``inline``: a network for inline inspection — large receptive field at low resolution, few channels.

A defect is a mean shift of ~3 gray levels in noise of std ~7.2, visible only after averaging many
pixels, so the work belongs at low resolution. The image is standardised and folded in one op (a 4×4
stride-4 convolution, i.e. space-to-depth + 1×1 mix, keeping the within-block detail that boundaries need);
a context branch pools once more to 1/8 resolution and runs 3×3 convolutions with dilations 1, 2, 4, 8
(receptive field ~250 px: defects are up to 63 px and need background around them); the context is
upsampled, joined with the 1/4-resolution detail, and a 16-channel head is unfolded back to full
resolution by depth-to-space (sub-pixel boundaries). ~0.02 GFLOP/image at 256², two orders of magnitude
below the UNet, and few ONNX ops so batch-1 latency stays low; only the first and last op touch full
resolution, because at these FLOP counts memory traffic, not arithmetic, sets the speed.
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import DepthToSpace, FoldConv


def build_inline(width: int = 8, stem: int = 16, dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8),
                 block: int = 4, pool: int = 2) -> keras.Model:
    """Build the inline network (see the module docstring).

    ``stem`` channels at 1/block resolution, ``width`` channels in the context stack at 1/(block·pool).
    """
    image = keras.Input(shape=(None, None, 1), name="image")
    detail = FoldConv(stem, block, name="fold")(image)
    detail = keras.layers.ReLU(name="fold_relu")(detail)
    x = keras.layers.AveragePooling2D(pool, name="pool")(detail)
    for d in dilations:
        x = keras.layers.Conv2D(width, 3, padding="same", dilation_rate=d, activation="relu", name=f"ctx_d{d}")(x)
    x = keras.layers.UpSampling2D(pool, name="up")(x)
    x = keras.layers.Concatenate(name="join")([detail, x])
    x = keras.layers.Conv2D(block * block, 3, padding="same", activation="sigmoid", name="head")(x)
    out = DepthToSpace(block, name="mask", dtype="float32")(x)
    return keras.Model(image, out, name="inline")
