"""``context``: a dilated-context network at half resolution, for comparison with ``inline``.

Average-pool 2× then a stack of dilated 3×3 convolutions (the "context module" of Yu & Koltun) and a
bilinear upsample. Wider and at higher resolution than ``inline`` (~0.4 GFLOP/image at 256²); it shows
what the extra resolution buys over ``inline``'s space-to-depth and what bilinear upsampling costs at the
boundaries.
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import Standardize


def build_context(width: int = 16, dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 16, 32), pool: int = 2,
                  estimate_noise: bool = True) -> keras.Model:
    image = keras.Input(shape=(None, None, 1), name="image")
    x = Standardize(estimate=estimate_noise, name="standardize")(image)
    x = keras.layers.AveragePooling2D(pool, name="pool")(x)
    for d in dilations:
        x = keras.layers.Conv2D(width, 3, padding="same", dilation_rate=d, activation="relu", name=f"ctx_d{d}")(x)
    x = keras.layers.Conv2D(1, 1, name="head")(x)
    x = keras.layers.UpSampling2D(pool, interpolation="bilinear", name="up")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(image, out, name="context")
