"""Small registered layers the networks share: in-model normalisation and lossless resampling.

They are plain Keras layers (no Lambda), registered under the ``edgeseg`` package so
``keras.models.load_model(path, compile=False)`` works after ``import edgeseg.models``, and they lower to
standard ONNX ops under tf2onnx (ReduceMean, AveragePool, Sqrt, Conv, DepthToSpace).
"""

from __future__ import annotations

import functools

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
    low by about one cell std, a constant the next layer's bias absorbs. The map is edge-padded first: with
    windows cut at the border, the opening and the box mean pull the estimate under a ramp that rises towards
    the edge, and every such bias is a false defect there (on lit images most false blobs sat on the border;
    padding halves the border error's 1 % tail, docs/study.md). Lowers to AveragePool, MaxPool, Neg, Tile,
    Concat and Resize in ONNX, all on 1/8-resolution maps.
    """
    import tensorflow as tf

    means = ops.average_pool(x, cell, cell, padding="valid")
    p = window - 1  # the opening and the box mean each reach window // 2 cells
    padded = _pad_edge(means, p)
    eroded = -ops.max_pool(-padded, window, 1, padding="same")
    opened = ops.max_pool(eroded, window, 1, padding="same")
    smooth = ops.average_pool(opened, window, 1, padding="same")[:, p:-p, p:-p]
    size = tf.shape(x)[1:3] // block
    return tf.image.resize(smooth, size, method="bilinear")


def _pad_edge(m, p: int):
    """Pad a (N, h, w, C) map by ``p`` on each side, repeating the edge (ONNX Tile + Concat)."""
    import tensorflow as tf

    m = tf.concat([tf.tile(m[:, :1], [1, p, 1, 1]), m, tf.tile(m[:, -1:], [1, p, 1, 1])], axis=1)
    return tf.concat([tf.tile(m[:, :, :1], [1, 1, p, 1]), m, tf.tile(m[:, :, -1:], [1, 1, p, 1])], axis=2)


@functools.lru_cache(maxsize=None)
def _difference_kernel(block: int):
    """(block, block, 1, block²/2) kernel: output i is pixel 2i − pixel 2i+1 of the cell (row-major pairs)."""
    import numpy as np

    pairs = block * block // 2
    k = np.zeros((block, block, 1, pairs), np.float32)
    for i in range(pairs):
        r, c = divmod(2 * i, block)
        k[r, c, 0, i], k[r, c + 1, 0, i] = 1.0, -1.0
    k.setflags(write=False)
    return k


def noise_std(x, block: int = 4):
    """Per-image noise std of raw image ``x`` (N, H, W, 1) → (N, 1, 1, 1), from horizontal pixel differences.

    For white noise var(x[i] − x[i+1]) = 2σ², whatever the noise's distribution, while a smooth background or
    illumination and a defect's interior cancel in the difference (only defect edges add a little). The
    ``block``²/2 disjoint pairs of every ``block``×``block`` cell come out of one stride-``block`` convolution
    with a fixed ±1 kernel, so the estimate costs one read of the image. Clamped at 1 gray level.
    """
    d = ops.conv(x, ops.convert_to_tensor(_difference_kernel(block)), strides=block, padding="valid")
    var = ops.mean(d * d, axis=(1, 2, 3), keepdims=True) * 0.5
    return ops.sqrt(ops.maximum(var, 1.0))


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
    ``estimate_noise=True`` divides by the image's own noise std (:func:`noise_std`) instead of ``noise_std``.
    ``extremes=k`` appends 2k channels: each cell's max − background and background − min (and for k > 1
    their max over 2×2 … k×k cells), in the same noise units. A mean shift c moves both, so their difference
    is the cell's midrange shift — for uniform noise a far better location estimate than the mean (std ≈ 1.0
    vs 1.8 gray levels for a 4×4 cell of the seed's noise), for Gaussian noise a worse one. Relative to the
    local background and in noise units this is not the seed's "above 124 is a defect" shortcut: it holds
    at any level, gain and lighting. Image sides must be multiples of ``block``.
    """

    def __init__(self, filters: int, block: int = 4, noise_std: float = NOISE_STD, background: str = "global",
                 extremes: int = 0, estimate_noise: bool = False, gate_extremes: bool = False, **kwargs):
        super().__init__(**kwargs)
        if background not in ("global", "local"):
            raise ValueError(f"background must be 'global' or 'local', got {background!r}")
        self.filters, self.block, self.noise_std, self.background = filters, block, noise_std, background
        self.extremes, self.estimate_noise = int(extremes), bool(estimate_noise)
        self.gate_extremes = bool(gate_extremes)

    def build(self, input_shape):
        b = self.block
        self.kernel = self.add_weight(name="kernel", shape=(b, b, 1, self.filters), initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.filters + 2 * self.extremes,), initializer="zeros")
        if self.extremes and self.gate_extremes:
            # Mean 4×4-cell range in noise std: 3.06 for uniform noise, 3.53 for Gaussian; start open below 3.3.
            const = keras.initializers.Constant
            self.gate_center = self.add_weight(name="gate_center", shape=(), initializer=const(3.3))
            self.gate_slope = self.add_weight(name="gate_slope", shape=(), initializer=const(10.0))

    def call(self, x):
        if self.background == "local":
            level = local_background(x, self.block)
        else:
            level = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        y = ops.conv(x, self.kernel, strides=self.block, padding="valid")
        ksum = ops.sum(self.kernel, axis=(0, 1, 2))
        scale = 1.0 / (noise_std(x, self.block) if self.estimate_noise else self.noise_std)
        y = (y - level * ksum) * scale
        if self.extremes:
            b = self.block
            shape = ops.shape(x)
            cells = ops.reshape(x, (-1, shape[1] // b, b, shape[2] // b, b))
            hi = ops.expand_dims(ops.max(cells, axis=(2, 4)), -1)
            lo = ops.expand_dims(ops.min(cells, axis=(2, 4)), -1)
            ext = [hi - level, level - lo]
            for k in range(1, self.extremes):
                ext += [ops.max_pool(ext[0], k + 1, 1, padding="same"), ops.max_pool(ext[1], k + 1, 1, padding="same")]
            ext = ops.concatenate(ext[: 2 * self.extremes], axis=-1) * scale
            if self.gate_extremes:
                spread = ops.mean(hi - lo, axis=(1, 2, 3), keepdims=True) * scale
                ext = ext * ops.sigmoid(self.gate_slope * (self.gate_center - spread))
            y = ops.concatenate([y, ext], axis=-1)
        return y + self.bias

    def compute_output_shape(self, shape):
        n, h, w, _ = shape
        b = self.block
        return (n, None if h is None else h // b, None if w is None else w // b, self.filters + 2 * self.extremes)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "block": self.block, "noise_std": self.noise_std,
                "background": self.background, "extremes": self.extremes, "estimate_noise": self.estimate_noise,
                "gate_extremes": self.gate_extremes}
