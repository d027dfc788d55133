"""``unet``: the classic encoder-decoder (Ronneberger et al.), depth and width configurable.

The reference network: full-resolution skip connections give sharp boundaries, and the bottleneck at
1/2^depth resolution gives context. A 4-level, base-16 UNet costs ~4.4 GFLOP per 256² image.
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import Standardize


def _block(x, filters: int, name: str, norm: bool):
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not norm,
                                activation=None if norm else "relu", name=f"{name}_conv{i}")(x)
        if norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def build_unet(depth: int = 4, base: int = 16, norm: bool = True, estimate_noise: bool = True) -> keras.Model:
    """UNet with ``depth`` poolings and ``base`` filters at full resolution (doubling per level), BatchNorm
    after every convolution unless ``norm=False``.

    Input sides must be divisible by 2**depth.
    """
    image = keras.Input(shape=(None, None, 1), name="image")
    x = Standardize(estimate=estimate_noise, name="standardize")(image)
    skips = []
    for level in range(depth):
        x = _block(x, base * 2**level, f"enc{level}", norm)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _block(x, base * 2**depth, "bottleneck", norm)
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D(2, name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"cat{level}")([x, skips[level]])
        x = _block(x, base * 2**level, f"dec{level}", norm)
    x = keras.layers.Conv2D(1, 1, name="head")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(image, out, name="unet")
