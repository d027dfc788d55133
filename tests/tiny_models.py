"""Tiny real Keras models the deployment tests export, quantize and run (no mocks: TensorFlow builds them)."""

from __future__ import annotations

# Raw gray levels → roughly unit scale: the seed's background (mean 112, std 7.2) or the 0..255 range.
NOISE_UNITS = (1 / 7.2, -112 / 7.2)
UNIT_RANGE = (1 / 255.0, -0.45)


def save_tiny_model(path, convs=((4, 1),), rescale=UNIT_RANGE, size: int | None = None,
                    head_name: str | None = None):
    """Rescaling → 3×3 ReLU convs ``(filters, dilation)`` → 3×3 sigmoid head, input ``image`` (N, size, size, 1)
    (``size=None``: any size). Saved to ``path``, which is returned."""
    import keras

    inp = keras.Input((size, size, 1), name="image")
    x = keras.layers.Rescaling(*rescale)(inp)
    for filters, dilation in convs:
        x = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, activation="relu")(x)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name=head_name)(x)
    keras.Model(inp, out).save(path)
    return path


def tiny_graph(size=32):
    """(N, size, size, 1) raw pixels → 5×5 mean → sigmoid((m − 112) / 2) → prob: a real ONNX model in a few KB
    (a ModelProto; :func:`tiny_onnx` saves it)."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["mean"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Sub", ["mean", "level"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p"]),
        helper.make_node("Transpose", ["p"], ["prob"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", size, size, 1])],
        [helper.make_tensor("level", TensorProto.FLOAT, [], [112.0]),
         helper.make_tensor("scale", TensorProto.FLOAT, [], [2.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_onnx(path, size=32):
    """:func:`tiny_graph` saved to ``path``, which is returned."""
    from onnx import save

    save(tiny_graph(size), str(path))
    return path
