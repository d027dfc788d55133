"""Metrics on hand-made masks whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.metrics import Counts, GroundTruth, compute, f1_best_threshold, pixel_f1_curve, wilson_interval


def blank(n: int = 1, size: int = 8) -> np.ndarray:
    return np.zeros((n, size, size), dtype=np.uint8)


def test_dice_iou_precision_recall_known_values():
    gt = blank()
    gt[0, 2:4, 2:4] = 1  # 4 px
    pred = blank().astype(np.float32)
    pred[0, 2:4, 2:5] = 1  # 6 px, covers the 4
    m = compute(pred, gt, 0.5)
    assert m["dice"] == pytest.approx(2 * 4 / (6 + 4))
    assert m["iou"] == pytest.approx(4 / 6)
    assert m["pixel_precision"] == pytest.approx(4 / 6)
    assert m["pixel_recall"] == pytest.approx(1.0)
    assert m["dice_mean"] == pytest.approx(0.8)


def test_3x3_iou_from_segmentation_models_style_example():
    gt = np.array([[[1, 1, 0], [1, 1, 0], [0, 0, 0]]], dtype=np.uint8)
    pred = np.array([[[1, 0, 0], [1, 1, 1], [0, 0, 0]]], dtype=np.float32)
    m = compute(pred, gt, 0.5)
    # TP 3, FP 1, FN 1
    assert m["iou"] == pytest.approx(3 / 5)
    assert m["dice"] == pytest.approx(6 / 8)


def test_empty_image_counts_as_perfect_per_image_but_not_in_micro():
    gt = blank(2)
    gt[0, 1:5, 1:5] = 1
    pred = gt.astype(np.float32).copy()  # image 0 perfect, image 1 empty and predicted empty
    m = compute(pred, gt, 0.5)
    assert m["dice_mean"] == 1.0 and m["iou_mean"] == 1.0 and m["dice"] == 1.0
    pred[1, 0, 0] = 1  # a false pixel on the empty image: that image scores 0
    m = compute(pred, gt, 0.5)
    assert m["dice_mean"] == pytest.approx(0.5)
    assert m["dice"] == pytest.approx(32 / 33)


def test_threshold_is_inclusive():
    gt = blank()
    gt[0, :4, :4] = 1
    probs = gt * np.float32(0.5)
    assert compute(probs, gt, 0.5)["dice"] == 1.0
    assert compute(probs, gt, 0.51)["dice"] == 0.0


@pytest.mark.parametrize("predicted, found", [(29, False), (30, True), (31, True)])
def test_defect_found_at_30_percent_of_its_pixels(predicted, found):
    gt = blank(size=32)
    gt[0, 5:15, 5:15] = 1  # 100 px
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0].reshape(-1)[np.flatnonzero(gt[0].reshape(-1))[:predicted]] = 1
    m = compute(pred, gt, 0.5)
    assert m["n_defects"] == 1
    assert m["defects_found"] == int(found)
    assert m["defect_recall"] == float(found)


@pytest.mark.parametrize("area, blobs", [(15, 0), (16, 1)])
def test_blobs_under_16_px_are_ignored(area, blobs):
    gt = blank(size=16)  # a defect-free image
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0].reshape(-1)[:area] = 1  # one 8-connected blob (rows of 16 px)
    m = compute(pred, gt, 0.5)
    assert m["fp_blobs"] == blobs
    assert m["overkills"] == blobs and m["overkill_rate"] == float(blobs)
    assert m["escape_rate"] is None and m["defect_recall"] is None


@pytest.mark.parametrize("overlap, false_positive", [(1, True), (2, False)])
def test_false_blob_overlaps_no_defect_by_10_percent(overlap, false_positive):
    gt = blank(size=32)
    gt[0, 0:10, 0:10] = 1
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0, 9, 10 - overlap : 30 - overlap] = 1  # a 20 px line, ``overlap`` px inside the defect
    m = compute(pred, gt, 0.5)
    assert m["fp_blobs"] == int(false_positive)
    assert m["escapes"] == 0  # any blob counts against an escape


def test_false_blob_needs_10_percent_of_a_single_defect():
    gt = blank(size=40)
    gt[0, 0:5, 0:5] = 1
    gt[0, 0:5, 30:35] = 1
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0, 4, 4:31] = 1  # 27 px: 1 px in each defect (4 % each, 7 % together)
    assert compute(pred, gt, 0.5)["fp_blobs"] == 1


@pytest.mark.parametrize("area, escaped", [(15, True), (16, False)])
def test_escape_is_a_defective_image_without_a_blob(area, escaped):
    gt = blank(size=32)
    gt[0, 20:30, 20:30] = 1
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0].reshape(-1)[:area] = 1  # far from the defect
    m = compute(pred, gt, 0.5)
    assert m["escapes"] == int(escaped)
    assert m["escape_rate"] == float(escaped)
    assert m["defects_found"] == 0


def test_touching_defects_merge_8_connected_and_take_the_lowest_contrast():
    gt = blank(size=32)
    gt[0, 0:4, 0:4] = 1
    gt[0, 4:8, 4:8] = 1  # diagonal neighbour: one 8-connected component
    gt[0, 20:30, 20:30] = 1
    defects = [[
        {"x": 0, "y": 0, "w": 4, "h": 4, "shape": "rect", "contrast": 4.0, "angle": 0.0},
        {"x": 4, "y": 4, "w": 4, "h": 4, "shape": "rect", "contrast": 3.0, "angle": 0.0},
        {"x": 20, "y": 20, "w": 10, "h": 10, "shape": "rect", "contrast": 5.5, "angle": 0.0},
    ]]
    pred = np.zeros_like(gt, dtype=np.float32)
    pred[0, 20:30, 20:30] = 1
    m = compute(pred, GroundTruth.from_masks(gt, defects), 0.5)
    assert m["n_defects"] == 2
    assert m["recall_by_contrast"] == {"3": {"n": 1, "found": 0, "recall": 0.0},
                                       "5": {"n": 1, "found": 1, "recall": 1.0}}
    # sqrt(32) ≈ 5.7 → "0-8"; sqrt(100) = 10 → "8-16"
    assert m["recall_by_size"] == {"0-8": {"n": 1, "found": 0, "recall": 0.0},
                                   "8-16": {"n": 1, "found": 1, "recall": 1.0}}
    assert compute(pred, gt, 0.5)["recall_by_contrast"] is None  # no manifest, no contrast breakdown


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        compute(np.zeros((1, 8, 8)), blank(size=9), 0.5)


def test_f1_best_threshold_known_answer():
    # positives 0.6, 0.8; negatives 0.5, 0.7 → F1 is best (0.8) for 0.5 < t <= 0.6
    probs = np.array([[[0.6, 0.8, 0.5, 0.7]]], dtype=np.float32)
    masks = np.array([[[1, 1, 0, 0]]], dtype=np.uint8)
    t = f1_best_threshold(probs, masks)
    assert 0.5 < t <= 0.6
    assert compute(probs, masks, t)["dice"] == pytest.approx(0.8)


def test_f1_curve_matches_direct_counts():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 16, 16)) < 0.2).astype(np.uint8)
    probs = np.clip(masks * 0.3 + rng.random((3, 16, 16)) * 0.7, 0, 1).astype(np.float32)
    thresholds, f1 = pixel_f1_curve(probs, masks, resolution=100)
    for k in (10, 35, 50, 72, 99):
        assert f1[k - 1] == pytest.approx(compute(probs, masks, thresholds[k - 1])["dice"])
    best = f1_best_threshold(probs, masks, resolution=100)
    assert compute(probs, masks, best)["dice"] == pytest.approx(f1[:-1].max())


def test_f1_curve_summed_over_parts_is_the_curve_of_the_whole():
    from edgeseg.metrics import F1Curve

    rng = np.random.default_rng(1)
    masks = (rng.random((7, 16, 16)) < 0.2).astype(np.uint8)
    probs = np.clip(masks * 0.3 + rng.random((7, 16, 16)) * 0.7, 0, 1).astype(np.float32)
    curve = F1Curve()
    for a, b in ((0, 1), (1, 5), (5, 7)):
        curve.add(probs[a:b], masks[a:b])
    thresholds, f1 = pixel_f1_curve(probs, masks)
    assert np.array_equal(curve.curve()[1], f1) and curve.defect_pixels == int(masks.sum())
    assert curve.best_threshold() == f1_best_threshold(probs, masks)


def test_recall_comes_with_its_wilson_interval():
    # Published values: 0 of 10 → [0, 0.2775]; 10 of 10 → [0.7225, 1]; and the demo's 381 of 386 (0.987) is
    # compatible with a true recall of 0.99 — a 200-image set cannot decide a 0.99 target.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72246, 1.0), abs=1e-5)
    lo, hi = wilson_interval(381, 386)
    assert lo == pytest.approx(0.9700, abs=1e-4) and hi == pytest.approx(0.9945, abs=1e-4) and lo < 0.99 < hi
    gt = blank(2, 16)
    gt[0, 2:6, 2:6] = 1
    gt[1, 8:12, 8:12] = 1
    pred = gt.astype(np.float32)
    pred[1] = 0  # one of two defects found
    m = compute(pred, gt, 0.5)
    assert m["defects_found"] == 1 and m["n_defects"] == 2
    assert m["defect_recall_ci95"] == pytest.approx(list(wilson_interval(1, 2)))
    assert compute(blank(1, 16).astype(np.float32), blank(1, 16), 0.5)["defect_recall_ci95"] is None


def test_recall_by_contrast_in_sigma_where_the_defects_record_it():
    masks = np.zeros((1, 40, 40), np.uint8)
    masks[0, 2:10, 2:10] = 1
    masks[0, 20:30, 20:30] = 1
    defects = [[{"x": 2, "y": 2, "w": 8, "h": 8, "shape": "rect", "contrast": 30.0, "contrast_sigma": 1.2},
                {"x": 20, "y": 20, "w": 10, "h": 10, "shape": "rect", "contrast": 9.0, "contrast_sigma": 0.7}]]
    truth = GroundTruth.from_masks(masks, defects)
    assert truth.contrast_unit == "local noise sigma" and truth.contrasts == [[1.2, 0.7]]
    pred = np.zeros((1, 40, 40), bool)
    pred[0, 2:10, 2:10] = True  # the 1.2 sigma defect found, the 0.7 sigma one missed
    counts = Counts()
    counts.add(pred, truth)
    report = counts.report(0.5)
    assert report["contrast_unit"] == "local noise sigma"
    assert report["recall_by_contrast"] == {"0.5": {"n": 1, "found": 0, "recall": 0.0},
                                            "1": {"n": 1, "found": 1, "recall": 1.0}}
    # Without contrast_sigma the same defects are binned by gray levels.
    plain = [[{k: v for k, v in d.items() if k != "contrast_sigma"} for d in defects[0]]]
    counts = Counts()
    counts.add(pred, GroundTruth.from_masks(masks, plain))
    assert counts.report(0.5)["contrast_unit"] == "gray levels"
    assert set(counts.report(0.5)["recall_by_contrast"]) == {"9", "30"}
