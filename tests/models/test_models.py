"""Model registry: builders follow the I/O convention, save/load round-trips, FLOPs counts, errors."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import edgeseg.models as models  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_builders_follow_the_io_convention(name):
    model = models.build(name)
    assert model.inputs[0].name == "image"
    assert tuple(model.inputs[0].shape) == (None, None, None, 1)
    x = np.random.default_rng(0).integers(80, 160, size=(2, 64, 64, 1)).astype(np.float32)
    y = np.asarray(model(x))
    assert y.shape == (2, 64, 64, 1) and y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))


def test_inline_is_at_least_ten_times_cheaper_than_unet():
    inline, unet = models.flops_per_image(models.build("inline")), models.flops_per_image(models.build("unet"))
    assert unet >= 10 * inline
    assert 10e6 < inline < 150e6  # the design budget: ~0.1 GFLOP per 256² image (0.117 at width 16)


def test_flops_match_a_hand_count():
    # 64² input: conv 3×3 1→4 'same' = 64·64·9·1·4 MACs; then a 1×1 4→2 at stride 2 = 32·32·4·2 MACs.
    inp = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.Conv2D(2, 1, strides=2)(x)
    model = keras.Model(inp, x)
    assert models.flops_per_image(model, 64) == 2 * (64 * 64 * 9 * 4 + 32 * 32 * 4 * 2)


def test_fold_conv_ignores_the_background_level():
    model = models.build("inline")
    x = np.random.default_rng(1).integers(90, 130, size=(1, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(x + 40.0)), atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = models.build("inline", width=4, stem=8)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    x = np.random.default_rng(2).integers(90, 130, size=(1, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"extremes": 2}, {"extremes": 0, "estimate_noise": False, "head_hidden": 0}])
def test_inline_converts_to_onnx_and_matches_keras(kwargs):
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    model = models.build("inline", **kwargs)
    spec = (tf.TensorSpec((None, 64, 64, 1), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).integers(90, 130, size=(3, 64, 64, 1)).astype(np.float32)
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-4)


def test_unknown_model_lists_the_allowed_names():
    with pytest.raises(EdgesegError, match="unet.*inline.*context"):
        models.build("resnet")


def test_unknown_model_argument_is_a_user_error():
    with pytest.raises(EdgesegError, match="no argument colour"):
        models.build("inline", colour=3)


def test_describe_records_params_and_flops():
    d = models.describe(models.build("context"), "context")
    assert d["name"] == "context" and d["params"] > 0 and d["flops_per_image"] > 0 and d["image_size"] == 256


def test_local_background_removes_a_ramp_but_keeps_a_large_defect():
    from edgeseg.models.layers import local_background

    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    ramp = 100.0 + 20.0 * xx / 255.0  # 20 gray levels of illumination across the image
    image = ramp.copy()
    image[100:160, 100:160] += 3.0  # a 60-px defect of contrast 3
    bg = np.asarray(local_background(image[None, :, :, None], block=4))[0, :, :, 0]  # (64, 64)
    truth = 100.0 + 20.0 * (xx[::4, ::4] + 1.5) / 255.0  # the ramp at each 4×4 cell's centre
    # Away from the image border (where the opening's window is cut) the ramp is followed closely ...
    assert np.abs(bg - truth)[12:-12, 12:-12].max() < 0.3
    # ... and under the defect the estimate does not rise with it: its contrast survives detrending.
    assert np.abs(bg - truth)[25:40, 25:40].max() < 0.1
    # At the border, where the ramp rises towards the edge, the estimate may not sag by more than a level
    # (each gray level of sag there is a false defect in waiting; without edge padding it sagged 2.7).
    assert np.abs(bg - truth).max() < 1.0


@pytest.mark.parametrize("kind, sigma", [("gaussian", 5.0), ("uniform", 9.0)])
def test_noise_std_is_estimated_through_lighting_and_defects(kind, sigma):
    from edgeseg.models.layers import noise_std

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    noise = rng.normal(0, sigma, (256, 256)) if kind == "gaussian" else rng.uniform(-1, 1, (256, 256)) * sigma * 3**0.5
    image = 110.0 + 30.0 * xx / 255.0 + noise  # 30 levels of lighting across the image
    image[60:120, 60:120] += 4.0
    got = float(np.asarray(noise_std(image[None, :, :, None].astype(np.float32)))[0, 0, 0, 0])
    assert got == pytest.approx(sigma, rel=0.03)


def test_inline_with_noise_estimate_ignores_camera_gain_and_offset():
    # In noise units with the local background removed, a brighter or higher-gain camera sees the same image.
    model = models.build("inline")  # per-image noise std and cell extremes are the default
    x = np.random.default_rng(5).integers(100, 125, size=(1, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(1.5 * x - 30.0)), atol=1e-4)

