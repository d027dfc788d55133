"""The network registry: ``build(name, **kwargs)`` returns a Keras model following edgeseg's conventions.

Every model takes the input ``image`` of shape (None, None, None, 1) float32 holding raw gray levels 0..255
(normalisation happens inside the model) and returns (N, H, W, 1) float32 sigmoid probabilities. Importing
this package registers the custom layers, so ``keras.models.load_model(path, compile=False)`` works.
Add a family by adding one file with a ``build_<name>`` function and one entry in :data:`REGISTRY`.

    model = build("inline")
    flops_per_image(model)        # analytic conv MACs × 2 at 256²
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras

from edgeseg.errors import EdgesegError
from edgeseg.models.context import build_context
from edgeseg.models.inline import build_inline
from edgeseg.models.layers import DepthToSpace, FoldConv, Standardize
from edgeseg.models.unet import build_unet

REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "unet": build_unet,
    "inline": build_inline,
    "context": build_context,
}

__all__ = ["REGISTRY", "build", "flops_per_image", "count_params", "describe", "names",
           "Standardize", "FoldConv", "DepthToSpace"]


def names() -> list[str]:
    return list(REGISTRY)


def build(name: str, **kwargs: Any) -> keras.Model:
    """Build network ``name`` with builder keyword arguments ``kwargs``.

    Unknown names and unknown or invalid arguments raise :class:`EdgesegError` listing what is allowed.
    """
    try:
        builder = REGISTRY[name]
    except KeyError:
        raise EdgesegError(f"unknown model {name!r}: choose one of {', '.join(REGISTRY)}") from None
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise EdgesegError(
            f"model {name!r} has no argument {', '.join(unknown)}: allowed are {', '.join(params)}"
        )
    try:
        return builder(**kwargs)
    except (TypeError, ValueError) as e:
        raise EdgesegError(f"model {name!r}: bad arguments {kwargs}: {e}") from None


def count_params(model: keras.Model) -> int:
    """Trainable plus non-trainable parameters."""
    return int(model.count_params())


def _fixed_shape_copy(model: keras.Model, image_size: int) -> keras.Model:
    """The same graph rebuilt with a static (1, size, size, 1) input, so every layer has static shapes."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [1, image_size, image_size, 1]
    return keras.Model.from_config(config)


def flops_per_image(model: keras.Model, image_size: int = 256) -> int:
    """Convolution and dense multiply-accumulates × 2 for one ``image_size``² image, from layer shapes.

    Counts Conv2D (incl. dilated/strided), DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Dense;
    pooling, activations and resampling are memory-bound and left out (as is usual for FLOP counts).
    """
    fixed = _fixed_shape_copy(model, image_size)
    macs = 0
    for layer in fixed.layers:
        if isinstance(layer, keras.layers.Dense):
            macs += int(_numel(layer.output.shape[1:-1])) * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            out = layer.output.shape
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            macs += out[1] * out[2] * (kh * kw * cin * mult + cin * mult * out[3])
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            kh, kw, cin, mult = layer.kernel.shape
            macs += out[1] * out[2] * kh * kw * cin * mult
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            inp = layer.input.shape
            kh, kw, cout, cin = layer.kernel.shape
            macs += inp[1] * inp[2] * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw, cin_g, cout = layer.kernel.shape
            macs += out[1] * out[2] * kh * kw * cin_g * cout
    return int(2 * macs)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def describe(model: keras.Model, name: str, image_size: int = 256) -> dict[str, Any]:
    """The ``model`` block of a manifest: name, params, FLOPs per image, image size."""
    return {"name": name, "params": count_params(model), "flops_per_image": flops_per_image(model, image_size),
            "image_size": image_size}
