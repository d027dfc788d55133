"""``inline``: a network for inline inspection — large receptive field at low resolution, few channels.

A defect is a mean shift of ~3 gray levels in noise of std ~7.2, visible only after averaging many
pixels, so the work belongs at low resolution:

* ``fold`` standardises and folds the image — a 4×4 stride-4 convolution of (image − local background) /
  noise std, i.e. space-to-depth + 1×1 mix, which keeps the within-block detail that boundaries need; the
  background is a defect-blind smooth estimate (lighting vanishes) and the noise std is measured per image
  (so a 5σ patch means the same on every camera); with ``extremes=1`` two of the ``stem`` channels are each
  cell's max and min: their midpoint locates a mean shift more precisely than the mean when the noise has
  hard bounds (uniform noise, clipped sensors), and the network learns when to trust it
  (:class:`~edgeseg.models.layers.FoldConv`, docs/study.md);
* a context stack of 3×3 convolutions (BatchNorm + ReLU) with dilations 1, 2, 4, 8, 16 at 1/4 resolution
  gives a receptive field of ~250 px: defects are up to 63 px and need background around them, and thin
  defects (8 px wide, up to 63 long) need aggregation *along* them at a resolution where they are still
  2 cells wide — at 1/8 resolution (``pool=2``) they fall between cells and most are missed (docs/study.md);
  it is 16 channels wide: ONNX Runtime's convolutions on AVX-512 work in blocks of 16 channels, so 8 are padded
  to 16 and save little time (16 cost 3–5 % at batch 1 and 9–17 % at batch 32 in FP32, and are deep enough for
  INT8, whose CPU version runs faster than FP32), while 16 add ~0.5 point of Dice and up to ~1 of recall
  (docs/study.md, "Which network for inline inspection?");
* a head over [detail, context] predicts the 4×4 pixels of each cell, unfolded to full resolution by
  depth-to-space (sub-pixel boundaries): a 1×1 layer of ``head_hidden`` ReLU units, then a 3×3 convolution.
  The hidden layer lets each cell combine "a defect is around here" (context) with "its edge runs through
  these pixels" (detail) non-linearly; a linear head could only add them. It raised pixel Dice by 1–2
  points at the same recall and is cheaper than a linear head, which would read all 24 channels with a 3×3
  kernel (docs/study.md, "Which network for inline inspection?").

~0.12 GFLOP per 256² image, ~60× below the UNet, and only the fold's few ops and the final depth-to-space
touch full resolution: at these FLOP counts memory traffic and per-op overhead, not arithmetic, set the speed.
"""

from __future__ import annotations

import keras

from edgeseg.models.layers import DepthToSpace, FoldConv


def _conv(x, filters: int, dilation: int, norm: bool, name: str, kernel: int = 3):
    """kernel×kernel conv + ReLU; with ``norm`` a BatchNorm in between (trains much faster here, and folds into
    the convolution when deployed)."""
    x = keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, use_bias=not norm,
                            activation=None if norm else "relu", name=name)(x)
    if norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def build_inline(width: int = 16, stem: int = 16, dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 16),
                 block: int = 4, pool: int = 1, norm: bool = True, head: int = 3,
                 background: str = "local", extremes: int = 1, estimate_noise: bool = True,
                 gate_extremes: bool = True, head_hidden: int = 16) -> keras.Model:
    """Build the inline network (see the module docstring).

    ``stem`` channels at 1/block resolution (``2·extremes`` of them cell max/min; keep ``stem`` a multiple of 8,
    the CPU kernels' channel block); ``width`` channels in the context stack, which runs at
    1/(block·pool) resolution (``pool=2`` halves its cost again, at the price of thin defects);
    ``head`` is the head's kernel size; ``background`` is what the fold subtracts: the image mean
    (``global``) or a defect-blind smooth local background (``local``, removes illumination);
    ``extremes`` is 0 (no cell max/min), 1 (4×4 cells) or more (also the max/min over k×k cells, k ≤ extremes);
    ``estimate_noise`` divides by a per-image noise std instead of the seed's 7.21; ``gate_extremes`` lets
    a learned gate on the image's mean cell range (lower for bounded noise than for Gaussian) scale the
    extremes channels, so they speak where they carry information.
    ``head_hidden`` is the width of the head's 1×1 hidden layer (0: a linear 3×3 head on the join).
    """
    if not (0 <= extremes and 2 * extremes < stem):
        raise ValueError(f"extremes must be >= 0 and 2·extremes below stem={stem}, got {extremes}")
    image = keras.Input(shape=(None, None, 1), name="image")
    detail = FoldConv(stem - 2 * extremes, block, background=background, extremes=extremes,
                      estimate_noise=estimate_noise, gate_extremes=gate_extremes, name="fold")(image)
    detail = keras.layers.ReLU(name="fold_relu")(detail)
    x = keras.layers.AveragePooling2D(pool, name="pool")(detail) if pool > 1 else detail
    for d in dilations:
        x = _conv(x, width, d, norm, f"ctx_d{d}")
    if pool > 1:
        x = keras.layers.UpSampling2D(pool, name="up")(x)
    x = keras.layers.Concatenate(name="join")([detail, x])
    if head_hidden:
        x = _conv(x, head_hidden, 1, norm, "head_hidden", kernel=1)
    x = keras.layers.Conv2D(block * block, head, padding="same", activation="sigmoid", name="head")(x)
    out = DepthToSpace(block, name="mask", dtype="float32")(x)
    return keras.Model(image, out, name="inline")
