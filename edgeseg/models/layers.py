"""Small registered layers the networks share: in-model normalisation and lossless resampling.

They are plain Keras layers (no Lambda), registered under the ``edgeseg`` package so
``keras.models.load_model(path, compile=False)`` works after ``import edgeseg.models``, and they lower to
standard ONNX ops under tf2onnx (ReduceMean, AveragePool, Sqrt, Conv, DepthToSpace).
"""

from __future__ import annotations

import keras
from keras import ops

# The seed's noise std (uniform 100..124); the fixed scale when the per-image estimate is switched off.
NOISE_STD = 7.21


@keras.saving.register_keras_serializable("edgeseg")
class Standardize(keras.layers.Layer):
    """Raw gray levels → signal-to-noise units: ``(x − image mean) / noise std``.

    The background level of a real line drifts and its noise level differs from camera to camera, while the
    defect is a mean shift of a few noise std; so the network should see the image in noise units with the
    level removed. The noise std is estimated per image from the variance *inside* 4×4 blocks (bias-corrected
    ×16/15), which a smooth illumination field or a defect's interior barely changes; ``estimate=False``
    divides by the seed's fixed 7.21 instead.
    """

    def __init__(self, estimate: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.estimate = estimate

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        centred = x - mean
        if not self.estimate:
            return centred * (1.0 / NOISE_STD)
        m1 = ops.average_pool(centred, 4, 4, padding="valid")
        m2 = ops.average_pool(centred * centred, 4, 4, padding="valid")
        var = ops.mean(m2 - m1 * m1, axis=(1, 2, 3), keepdims=True) * (16.0 / 15.0)
        return centred / ops.sqrt(ops.maximum(var, 1.0))

    def get_config(self):
        return {**super().get_config(), "estimate": self.estimate}


@keras.saving.register_keras_serializable("edgeseg")
class DepthToSpace(keras.layers.Layer):
    """(N, h, w, C·b²) → (N, h·b, w·b, C): sub-pixel upsampling, each low-res cell predicts its b×b pixels."""

    def __init__(self, block: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.block = block

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(x, self.block)

    def compute_output_shape(self, shape):
        n, h, w, c = shape
        b = self.block
        return (n, None if h is None else h * b, None if w is None else w * b, None if c is None else c // (b * b))

    def get_config(self):
        return {**super().get_config(), "block": self.block}


def local_background(x, block: int, cell: int = 8, window: int = 9):
    """A smooth background estimate of raw image ``x`` at 1/``block`` resolution, blind to defects.

    Means over ``cell``×``cell`` cells (noise std /8), then a grey-level *opening* (min then max over
    ``window``×``window`` cells, 72 px): a bright defect smaller than the window in either direction — the
    seed's are at most 63 px — is erased, while a ramp or a broad bump, which is locally flat at that scale,
    survives; a final box mean smooths the estimate. Defect-blind is the point: a plain local mean of the
    same size would absorb most of a large defect's contrast. Min/max of noisy cell means bias the estimate
    low by about one cell std, a constant the next layer's bias absorbs. Lowers to AveragePool, MaxPool, Neg
    and Resize in ONNX, all on 1/8-resolution maps.
    """
    import tensorflow as tf

    means = ops.average_pool(x, cell, cell, padding="valid")
    eroded = -ops.max_pool(-means, window, 1, padding="same")
    opened = ops.max_pool(eroded, window, 1, padding="same")
    smooth = ops.average_pool(opened, window, 1, padding="same")
    size = tf.shape(x)[1:3] // block
    return tf.image.resize(smooth, size, method="bilinear")


@keras.saving.register_keras_serializable("edgeseg")
class FoldConv(keras.layers.Layer):
    """Standardise and fold in one pass: a ``block``×``block`` stride-``block`` convolution of
    ``(x − image mean) / noise_std``.

    The convolution is linear, so it is computed on the raw image and the mean is removed afterwards at
    1/block² of the resolution: ``(conv(x) − mean·Σk) / noise_std + b``. Only two ops (ReduceMean, Conv)
    touch the full-resolution image, which matters because at these FLOP counts full-resolution memory
    traffic, not arithmetic, sets the speed. Equivalent to Standardize(estimate=False) → SpaceToDepth →
    1×1 conv, without materialising either intermediate.

    ``background="local"`` removes a smooth *local* background instead of the image mean, so illumination
    ramps and bumps vanish before the network sees the image (see :func:`local_background`).
    """

    def __init__(self, filters: int, block: int = 4, noise_std: float = NOISE_STD, background: str = "global",
                 **kwargs):
        super().__init__(**kwargs)
        if background not in ("global", "local"):
            raise ValueError(f"background must be 'global' or 'local', got {background!r}")
        self.filters, self.block, self.noise_std, self.background = filters, block, noise_std, background

    def build(self, input_shape):
        b = self.block
        self.kernel = self.add_weight(name="kernel", shape=(b, b, 1, self.filters), initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        if self.background == "local":
            level = local_background(x, self.block)
        else:
            level = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        y = ops.conv(x, self.kernel, strides=self.block, padding="valid")
        ksum = ops.sum(self.kernel, axis=(0, 1, 2))
        return (y - level * ksum) * (1.0 / self.noise_std) + self.bias

    def compute_output_shape(self, shape):
        n, h, w, _ = shape
        b = self.block
        return (n, None if h is None else h // b, None if w is None else w // b, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "block": self.block, "noise_std": self.noise_std,
                "background": self.background}
