"""Tiling: images of any size through runners that take one size (or sides of one multiple), stitched without
seams; real Keras and ONNX Runtime runners beside fake ones whose exact answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.data.depth import to_levels
from edgeseg.errors import BadInput, EdgesegError
from edgeseg.runners import load_runner
from edgeseg.runners.base import Runner
from edgeseg.tiling import TiledRunner, any_size, check_tiling, fits, fitted, spans

from tiny_models import save_tiny_model


class Gain(Runner):
    """Probability = gray level / 255 (a constant gain): any tiling that loses, repeats or shifts a pixel shows."""

    backend = "gain"

    def __init__(self, shape=None, multiple=1, batch_range=None):
        super().__init__(None)
        self._shape, self._multiple, self.calls = shape, multiple, []
        if batch_range:
            self.batch_range = batch_range

    def _activate(self):
        self.image_shape, self.size_multiple = self._shape, self._multiple

    def _infer(self, batch):
        self.calls.append(batch.shape)
        lo, hi = getattr(self, "batch_range", (1, 10**9))
        assert lo <= len(batch) <= hi, f"batch of {len(batch)} outside {lo}..{hi}"
        return self.answer(batch[..., 0])

    def answer(self, x):
        return x / 255.0


class Blur(Gain):
    """A 5×5 mean (each output pixel sees ±2 px): tiles need a margin of 2 to agree with the whole image."""

    backend = "blur"

    def answer(self, x):
        return np.stack([cv2.blur(i, (5, 5), borderType=cv2.BORDER_REFLECT_101) for i in x]) / 255.0


def _levels(shape, seed=0, dtype=np.uint8):
    hi = 65535 if dtype == np.uint16 else 255
    return np.random.default_rng(seed).integers(0, hi + 1, size=shape, dtype=dtype)


@pytest.mark.parametrize("length,tile,margin,multiple", [
    (512, 256, 64, 4), (1024, 256, 64, 4), (300, 256, 64, 4), (256, 256, 64, 1), (97, 32, 8, 1), (1280, 256, 0, 16),
    (768, 512, 100, 16),
])
def test_spans_cover_every_pixel_once_with_a_margin_inside_the_tile(length, tile, margin, multiple):
    cuts = spans(length, tile, margin, multiple)
    kept = np.zeros(length, int)
    for start, a, b in cuts:
        assert start % multiple == 0 and 0 <= start <= length - tile
        assert start <= a < b <= start + tile
        kept[a:b] += 1
        if a > 0:
            assert a - start >= margin
        if b < length:
            assert start + tile - b >= margin
    assert (kept == 1).all()
    assert [c[1] for c in cuts] == sorted(c[1] for c in cuts)


def test_a_margin_that_leaves_nothing_is_refused():
    with pytest.raises(ValueError):
        spans(512, 256, 128)
    with pytest.raises(ValueError):
        spans(100, 256, 8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_stitching_is_seamless_a_constant_gain_comes_back_exactly(dtype):
    images = _levels((3, 80, 112), dtype=dtype)
    inner = Gain(shape=(32, 32))
    with any_size(inner, overlap=16) as runner:
        probs = runner.infer(images)
        assert runner.config["tiling"] == {"tile": [32, 32], "overlap": 16, "size_multiple": 1}
    np.testing.assert_array_equal(probs, to_levels(images) / np.float32(255))
    assert all(shape[1:3] == (32, 32) for shape in inner.calls)


def test_tiles_with_enough_margin_equal_the_whole_image_and_without_they_do_not():
    images = _levels((2, 96, 136), seed=1).astype(np.float32)
    whole = Blur().activate().infer(images)
    with any_size(Blur(shape=(32, 32)), overlap=4) as runner:  # a margin of 2: the blur's reach
        np.testing.assert_allclose(runner.infer(images), whole, rtol=0, atol=1e-6)
    with any_size(Blur(shape=(32, 32)), overlap=0) as runner:  # no margin: seams along the cuts
        assert np.max(np.abs(runner.infer(images) - whole)) > 0.01


def test_the_default_overlap_shrinks_to_half_a_small_tile():
    with any_size(Gain(shape=(32, 32))) as runner:
        images = _levels((1, 80, 48))
        np.testing.assert_array_equal(runner.infer(images), (images / 255.0).astype(np.float32))
        assert runner.config["tiling"]["overlap"] == 16
    with any_size(Gain(shape=(512, 512))) as runner:
        runner.infer(_levels((1, 600, 512)))
        assert runner.config["tiling"]["overlap"] == 128


def test_small_and_odd_sized_images_are_padded_by_reflection_and_cropped_back():
    images = _levels((2, 20, 27))
    with any_size(Gain(shape=(32, 32))) as runner:  # smaller than the tile
        np.testing.assert_array_equal(runner.infer(images), (images / 255.0).astype(np.float32))
    inner = Gain(multiple=4)  # any size, sides multiples of 4
    with any_size(inner) as runner:
        np.testing.assert_array_equal(runner.infer(images), (images / 255.0).astype(np.float32))
    assert inner.calls == [(2, 20, 28, 1)]


def test_images_the_runner_takes_go_through_unchanged():
    inner = Gain(shape=(32, 32))
    with any_size(inner) as runner:
        runner.infer(_levels((5, 32, 32)))
        assert runner.config is None  # nothing tiled: the report says nothing about tiling
    assert inner.calls == [(5, 32, 32, 1)]


def test_tiles_go_in_calls_an_engine_profile_takes():
    inner = Gain(shape=(32, 32), batch_range=(2, 3))
    with any_size(inner, overlap=16) as runner:
        images = _levels((1, 64, 64))  # 3 × 3 tiles: calls of 3, 3, 3
        np.testing.assert_array_equal(runner.infer(images), (images / 255.0).astype(np.float32))
        one = _levels((1, 32, 32))  # one image: filled up to the profile's minimum, the copy dropped
        np.testing.assert_array_equal(runner.infer(one), (one / 255.0).astype(np.float32))
    assert all(2 <= s[0] <= 3 for s in inner.calls)


def test_tile_options_are_checked_in_one_line():
    for tile, overlap, words in ((8, None, "--tile must be"), (256, -1, "--tile-overlap must be")):
        with pytest.raises(EdgesegError, match=words):
            check_tiling(tile, overlap)
    with pytest.raises(BadInput, match="multiples of 4"):
        TiledRunner(Gain(multiple=4), tile=30).activate()
    with pytest.raises(BadInput, match="leaves nothing of a 32x32 tile"):
        TiledRunner(Gain(), tile=32, overlap=32).activate()
    with pytest.raises(BadInput, match="takes 32x32 images only"):
        TiledRunner(Gain(shape=(32, 32)), tile=64).activate()


def test_fitted_wraps_only_where_the_runner_cannot_take_the_images():
    plain = Gain(shape=(32, 32))
    assert fitted(plain, (32, 32)) is plain and fits(plain, (32, 32)) and not fits(plain, (32, 40))
    assert isinstance(fitted(Gain(shape=(32, 32)), (64, 64)), TiledRunner)
    assert isinstance(fitted(Gain(), (32, 32), tile=16), TiledRunner)


# -- real networks: Keras at full size vs ONNX exported for 256² run in tiles ------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An any-size Keras model (3×3 convs, dilations 1 and 2: each output pixel sees ±4 px) and its ONNX export
    for 256²."""
    from edgeseg.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("tiling")
    keras_path = save_tiny_model(d / "model.keras", convs=((4, 1), (4, 2)))
    export_onnx(keras_path, d / "model.onnx", image_size=256, parity_count=1)
    return keras_path, d / "model.onnx"


def test_tiled_onnx_at_256_equals_keras_on_the_whole_512x768_image(tiny):
    images = _levels((1, 512, 768), seed=2, dtype=np.uint16)
    with load_runner(tiny[0]) as keras_runner:
        whole = keras_runner.infer(images)
    with any_size(load_runner(tiny[1], intra_op_num_threads=1)) as onnx_runner:
        tiled = onnx_runner.infer(images)
        assert onnx_runner.config["tiling"]["tile"] == [256, 256]
    diff = float(np.max(np.abs(tiled - whole)))
    print(f"max |tiled ONNX 256² - whole Keras| on 512x768: {diff:.2e}")
    assert diff <= 1e-5
    with any_size(load_runner(tiny[1], intra_op_num_threads=1), overlap=0) as seams:
        assert float(np.max(np.abs(seams.infer(images) - whole))) > 1e-3  # the test can tell a seam


def test_keras_runs_a_line_sized_image_whole_and_equal_in_tiles(tiny):
    images = _levels((2, 200, 328), seed=3)
    with load_runner(tiny[0]) as plain:
        whole = plain.infer(images)
    with any_size(load_runner(tiny[0])) as runner:
        np.testing.assert_array_equal(runner.infer(images), whole)  # taken whole: bit for bit
    with any_size(load_runner(tiny[0]), tile=64, overlap=16) as runner:
        assert float(np.max(np.abs(runner.infer(images) - whole))) <= 1e-5
