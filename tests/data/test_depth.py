"""The bit-depth rule: 8- and 16-bit pixels become float32 gray levels on the 8-bit scale, in one place."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import depth
from edgeseg.errors import BadInput


def test_16_bit_is_divided_by_257_and_8_bit_kept():
    np.testing.assert_array_equal(depth.to_levels(np.array([0, 257, 65535], np.uint16)), [0.0, 1.0, 255.0])
    levels = depth.to_levels(np.array([[0, 1, 255]], np.uint8))
    assert levels.dtype == np.float32 and levels.tolist() == [[0.0, 1.0, 255.0]]
    # The finer steps of a 16-bit camera survive as fractions of a level.
    assert 0 < depth.to_levels(np.array([1], np.uint16))[0] < 0.004


def test_float_is_taken_as_levels_and_other_types_refused():
    x = np.array([1.5, 300.0], np.float64)
    assert depth.to_levels(x).dtype == np.float32 and depth.to_levels(x).tolist() == [1.5, 300.0]
    for bad in (np.array([1], np.int32), np.array([True])):
        with pytest.raises(BadInput, match="8- or 16-bit grayscale"):
            depth.to_levels(bad)


def test_bits_full_scale_and_description():
    assert depth.bits(np.uint8) == 8 and depth.bits(np.uint16) == 16
    assert depth.full_scale(np.uint16) == 65535
    with pytest.raises(BadInput):
        depth.bits(np.float32)
    assert depth.describe()["uint16"].startswith("1/257")


def test_runners_take_16_bit_images_as_their_levels():
    from edgeseg.runners.classical import ClassicalRunner

    img8 = np.random.default_rng(0).integers(90, 140, (1, 48, 48), dtype=np.uint8)
    img16 = img8.astype(np.uint16) * 257  # the same levels, stored in 16 bits
    with ClassicalRunner() as runner:
        np.testing.assert_array_equal(runner.prepare(img16), runner.prepare(img8))
        np.testing.assert_array_equal(runner.infer(img16), runner.infer(img8))
