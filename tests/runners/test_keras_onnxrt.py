"""KerasRunner and OnnxRuntimeRunner on a tiny real model (TensorFlow, tf2onnx, ONNX Runtime; no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import BadInput, EdgesegError
from edgeseg.runners import load_runner
from edgeseg.types import Precision

from tiny_models import save_tiny_model

SIZE = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from edgeseg.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("runners")
    keras_path = save_tiny_model(d / "model.keras")
    export_onnx(keras_path, d / "model.onnx", image_size=SIZE, parity_count=2)
    return keras_path, d / "model.onnx"


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(90, 140, size=(3, SIZE, SIZE), dtype=np.uint8)


def test_keras_runner_returns_probabilities_per_pixel(models, images):
    with load_runner(models[0]) as runner:
        probs = runner.infer(images)
        assert runner.image_shape is None  # fully convolutional: any size
        assert runner.precision is Precision.fp32
        assert runner.infer(images[..., None]).shape == (3, SIZE, SIZE)
        assert runner.infer(images[0]).shape == (1, SIZE, SIZE)
    assert probs.shape == (3, SIZE, SIZE) and probs.dtype == np.float32
    assert 0.0 < probs.min() <= probs.max() < 1.0


def test_onnxruntime_runner_matches_keras(models, images):
    with load_runner(models[0]) as k, load_runner(models[1], intra_op_num_threads=1) as o:
        assert o.image_shape == (SIZE, SIZE)
        assert o.precision is Precision.fp32
        ref = k.infer(images)
        assert np.max(np.abs(o.infer(images) - ref)) <= 1e-4
        # Outputs of successive calls must not share the bound buffer.
        first = o.infer(images[:1])
        o.infer(np.full((1, SIZE, SIZE), 200, np.uint8))
        assert np.max(np.abs(first - ref[:1])) <= 1e-4


def test_onnxruntime_io_binding_and_plain_run_agree(models, images):
    with load_runner(models[1], io_binding=True) as a, load_runner(models[1], io_binding=False) as b:
        np.testing.assert_array_equal(a.infer(images), b.infer(images))
        assert a.infer(images[:2]).shape == (2, SIZE, SIZE)


def test_onnxruntime_workers_split_batches_without_changing_results(models):
    images = np.random.default_rng(1).integers(90, 140, size=(7, SIZE, SIZE), dtype=np.uint8)
    with load_runner(models[1], workers=1) as one, load_runner(models[1], workers=2, chunk=2) as split:
        assert one.config["workers"] == 1 and (split.config["workers"], split.config["chunk"]) == (2, 2)
        ref = one.infer(images)
        np.testing.assert_allclose(split.infer(images), ref, atol=1e-6)  # 4 chunks, the last of 1 image, in order
        np.testing.assert_allclose(split.infer(images[:2]), ref[:2], atol=1e-6)  # two parts of one image
        np.testing.assert_allclose(split.infer(images[:1]), ref[:1], atol=1e-6)  # one image: the main session
    with pytest.raises(EdgesegError, match="workers and chunk must be at least 1"):
        load_runner(models[1], workers=0)


def test_onnxruntime_precision_read_from_graph_without_manifest(models, tmp_path):
    from edgeseg.export.graph import onnx_precision

    bare = tmp_path / "bare.onnx"
    bare.write_bytes(models[1].read_bytes())
    assert onnx_precision(bare) is Precision.fp32


def test_wrong_image_size_is_one_line_bad_input(models):
    with load_runner(models[1]) as runner, pytest.raises(BadInput, match=f"takes {SIZE}x{SIZE} images, got 48x48"):
        runner.infer(np.zeros((1, 48, 48), np.uint8))


def test_keras_image_sides_must_suit_the_network(tmp_path):
    import edgeseg.models as models

    path = tmp_path / "unet.keras"
    models.build("unet", depth=2, base=4).save(path)  # two poolings: sides must be multiples of 4
    with load_runner(path) as runner:
        assert runner.size_multiple == 4
        assert runner.infer(np.zeros((1, 36, 40), np.uint8)).shape == (1, 36, 40)
        with pytest.raises(BadInput, match="multiples of 4, got 34x40"):
            runner.infer(np.zeros((1, 34, 40), np.uint8))


def test_a_stride_1_pooling_puts_no_constraint_on_image_sides(tmp_path):
    import keras

    image = keras.Input((None, None, 1), name="image")
    local_mean = keras.layers.AveragePooling2D(5, strides=1, padding="same")(image)  # a smoothing, not a resampling
    halved = keras.layers.MaxPooling2D(2)(local_mean)
    path = tmp_path / "pools.keras"
    keras.Model(image, keras.layers.UpSampling2D(2)(halved)).save(path)
    with load_runner(path) as runner:
        assert runner.size_multiple == 2
        assert runner.infer(np.zeros((1, 6, 10), np.uint8)).shape == (1, 6, 10)


@pytest.mark.parametrize("name, content, words", [
    ("broken.onnx", b"this is not a protobuf", "broken.onnx is not a usable ONNX model"),
    ("broken.keras", b"PK not really a zip", "broken.keras is not a Keras model"),
])
def test_file_that_is_not_a_model_is_refused_in_one_line(tmp_path, name, content, words):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(EdgesegError, match=words) as e:
        load_runner(bad).activate()
    assert "\n" not in str(e.value)


def test_unknown_runner_option_is_refused(models):
    with pytest.raises(EdgesegError, match="unknown option"):
        load_runner(models[1], threads=2)
