"""Fitting the operating point: the threshold and mask rule with the best recall + Dice within a false-alarm
budget, on hand-made probability maps whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.operating import CANDIDATE_RULES, THRESHOLDS, choose, fit, fitting_set, sweep
from edgeseg.postprocess import MaskRule


def _maps():
    """4 defect images, each with a clear defect (p 0.82) and a faint one (p 0.52); 4 defect-free images,
    two of which hold a noise blob at p 0.62. So: t ≤ 0.5 finds everything with 2 false blobs in 8 images,
    0.55–0.6 finds the clear defects with the same false blobs, 0.65–0.8 finds them with none."""
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 8:24, 8:24] = 1
    masks[:, 40:56, 40:56] = 1
    defect = np.full((4, 64, 64), 0.02, np.float32)
    defect[:, 8:24, 8:24] = 0.82
    defect[:, 40:56, 40:56] = 0.52
    good = np.full((4, 64, 64), 0.02, np.float32)
    good[:2, 20:30, 20:30] = 0.62
    return defect, masks, good


def test_a_strict_budget_gives_up_the_faint_defects_and_a_loose_one_buys_them():
    defect, truth, good = _maps()
    by_height = (MaskRule(None, 32), MaskRule(0.2, 32))  # blobs of 100 and 256 px both pass 32 px: height decides
    points = sweep(defect, truth, good, rules=by_height)
    assert len(points) == len(by_height) * len(THRESHOLDS)

    strict, within = choose(points, budget=0.0)
    assert within and strict.threshold == 0.8 and strict.fp_blobs_per_image == 0
    assert strict.defect_recall == 0.5

    loose, within = choose(points, budget=0.25)
    assert within and loose.threshold == 0.5 and loose.defect_recall == 1.0 and loose.dice == 1.0
    assert loose.fp_blobs_per_image == pytest.approx(2 / 8)  # counted over defect and defect-free images


def test_size_keeps_the_faint_defects_that_height_alone_gives_up():
    # The noise blobs (100 px at 0.62) are higher than the faint defects (256 px at 0.52) but smaller: the
    # default candidates keep blobs of ≥ 128 px at 0.5 and find every defect with no false blob.
    defect, truth, good = _maps()
    points = sweep(defect, truth, good)
    assert len(points) == len(CANDIDATE_RULES) * len(THRESHOLDS)
    best, within = choose(points, budget=0.0)
    assert within and best.rule.min_area == 128 and best.threshold == 0.5
    assert best.defect_recall == 1.0 and best.dice == 1.0 and best.fp_blobs_per_image == 0


def test_a_recall_first_line_takes_the_point_that_finds_more_and_measures_less():
    from edgeseg.operating import Point

    finds = Point(0.3, MaskRule(None, 32), dice=0.92, defect_recall=0.99, fp_blobs_per_image=0.004)
    measures = Point(0.8, MaskRule(None, 32), dice=0.95, defect_recall=0.98, fp_blobs_per_image=0.0)
    noisy = Point(0.2, MaskRule(None, 32), dice=0.90, defect_recall=1.0, fp_blobs_per_image=0.02)
    points = [finds, measures, noisy]
    assert choose(points, 0.005) == (measures, True)  # recall + Dice: 1.93 against 1.91
    assert choose(points, 0.005, prefer="recall") == (finds, True)  # and never past the budget
    with pytest.raises(EdgesegError, match="unknown preference 'escapes': choose one of balanced, recall"):
        choose(points, 0.005, prefer="escapes")


def test_a_dice_floor_takes_the_most_defects_the_line_can_still_size():
    from edgeseg.operating import Point

    finds = Point(0.3, MaskRule(None, 32), dice=0.92, defect_recall=0.995, fp_blobs_per_image=0.004)
    sizes = Point(0.5, MaskRule(None, 32), dice=0.935, defect_recall=0.99, fp_blobs_per_image=0.002)
    measures = Point(0.8, MaskRule(None, 32), dice=0.95, defect_recall=0.98, fp_blobs_per_image=0.0)
    noisy = Point(0.2, MaskRule(None, 32), dice=0.96, defect_recall=1.0, fp_blobs_per_image=0.02)
    points = [finds, sizes, measures, noisy]
    assert choose(points, 0.005, prefer="recall") == (finds, True)
    assert choose(points, 0.005, prefer="recall", min_dice=0.93) == (sizes, True)
    assert choose(points, 0.005, prefer="recall", min_dice=0.94) == (measures, True)  # never past the budget
    # No point within the budget reaches the floor: it is dropped, not the budget.
    assert choose(points, 0.005, prefer="recall", min_dice=0.955) == (finds, True)
    with pytest.raises(EdgesegError, match=r"the Dice floor must be in \[0, 1\), got 1.5"):
        choose(points, 0.005, min_dice=1.5)


def test_the_tally_counts_what_score_counts_on_the_rules_masks():
    # Smoothed noise makes blobs of every size, touching defects, merging, and specks under MIN_BLOB; each
    # point must equal edgeseg.metrics.score on MaskRule.apply's masks (the slow way, one pass per rule).
    import cv2

    from edgeseg.metrics import GroundTruth, score

    rng = np.random.default_rng(3)

    def maps(n):
        smooth = np.stack([cv2.GaussianBlur(r, (0, 0), 2) for r in rng.normal(size=(n, 96, 96)).astype(np.float32)])
        return 1 / (1 + np.exp(-smooth * 10))

    masks = np.zeros((12, 96, 96), np.uint8)
    for i in range(12):  # defects from 5×5 to 30×30 px, some faint enough to be cut up or dropped
        for _ in range(3):
            w, h = rng.integers(5, 31, 2)
            x, y = rng.integers(0, 96 - w), rng.integers(0, 96 - h)
            masks[i, y:y + h, x:x + w] = 1
    defect = np.clip(maps(12) + rng.uniform(0.05, 0.3) * masks, 0, 1)
    good = maps(6)
    good[:2] *= 0.25  # quiet images, below every level: the sweep skips them, the counts must not change
    rules = (MaskRule(None, 0), MaskRule(None, 32), MaskRule(0.3, 32), MaskRule(0.5, 64), MaskRule(0.2, 100))
    thresholds = (0.3, 0.5, 0.6, 0.75)
    points = {(p.rule, p.threshold): p for p in sweep(defect, masks, good, rules=rules, thresholds=thresholds)}
    gt, gt_good = GroundTruth.from_masks(masks), GroundTruth.from_masks(np.zeros_like(good))
    for rule in rules:
        for t in thresholds:
            d, g = score(rule.apply(defect, t), gt, t), score(rule.apply(good, t), gt_good, t)
            p = points[(rule, t)]
            assert p.dice == pytest.approx(d["dice"]) and p.defect_recall == pytest.approx(d["defect_recall"])
            assert p.fp_blobs_per_image == pytest.approx((d["fp_blobs"] + g["fp_blobs"]) / 18)
    # The maps do exercise the counts: recall and false blobs vary over the rules.
    assert len({p.fp_blobs_per_image for p in points.values()}) > 5
    assert len({p.defect_recall for p in points.values()}) > 3


def test_hysteresis_is_chosen_where_it_finds_more_for_the_same_false_alarms():
    defect, truth, good = _maps()
    defect[:, 40:56, 40:56] = 0.3  # the faint defect's rim...
    defect[:, 46:50, 46:50] = 0.9  # ...around a core of 16 px: found only by growing from the core
    good[:2, 20:30, 20:30] = 0.35  # noise that a threshold low enough for the rim would report
    best, within = choose(sweep(defect, truth, good, rules=(MaskRule(None, 8), MaskRule(0.2, 8))), budget=0.0)
    assert within and best.rule == MaskRule(0.2, 8) and best.defect_recall == 1.0


def test_without_any_point_in_budget_the_fewest_false_blobs_win_and_it_says_so():
    defect, truth, good = _maps()
    good[:, 40:60, 0:20] = 0.99  # a blob no threshold removes
    best, within = choose(sweep(defect, truth, good), budget=0.01)
    assert not within
    # Every defect-free image keeps its blob at any threshold and rule: 4 false blobs in 8 images at least, and
    # between the points at that floor the one that also finds and sizes every defect (>= 128 px drops the noise).
    assert best.fp_blobs_per_image == 0.5
    assert best.defect_recall == 1.0 and best.dice == 1.0 and best.rule.min_area == 128


def test_bad_fitting_sets_are_one_line_errors():
    defect, truth, good = _maps()
    with pytest.raises(EdgesegError, match="needs images with defects"):
        sweep(good, np.zeros(good.shape, np.uint8), good)
    with pytest.raises(EdgesegError, match="defect-free images"):
        sweep(defect, truth, good[:0])
    with pytest.raises(EdgesegError, match="budget must be >= 0"):
        choose(sweep(defect, truth, good), budget=-1)


def test_the_fitting_set_is_seeded_apart_from_validation_and_split_by_defects_and_noise():
    from edgeseg.data.synth import generate_batch, validation_config

    fs = fitting_set(seed=7, count=6)
    again = fitting_set(seed=7, count=6)
    assert all(np.array_equal(getattr(fs, k), getattr(again, k)) for k in ("defect", "masks", "good"))
    assert fs.defect.shape == fs.good.shape == fs.masks.shape == (6, 256, 256) and fs.defect.dtype == np.uint8
    assert all(m.any() for m in fs.masks)  # every image "with defects" has one...
    validation, _ = generate_batch(np.random.default_rng(7), validation_config(), 6)  # what training validates on
    assert not np.array_equal(fs.defect, validation)  # ...and is not validation's
    # The defect-free images are drawn without defects: the same draw again gives them and empty masks.
    rng, cfg = np.random.default_rng([7, 1]), validation_config()
    for noise, part in (("uniform", slice(0, 3)), ("gaussian", slice(3, 6))):
        generate_batch(rng, cfg.replace(noise=noise, good_fraction=0.0), 3)
        good, good_masks = generate_batch(rng, cfg.replace(noise=noise, good_fraction=1.0), 3)
        assert np.array_equal(good, fs.good[part]) and not good_masks.any()
    assert fs.defect_groups == fs.good_groups == ["uniform"] * 3 + ["gaussian"] * 3
    # The groups are what they say: uniform noise stays within the seed's 100..124, Gaussian noise does not.
    assert fs.good[:3].min() >= 100 and fs.good[:3].max() <= 124
    assert fs.good[3:].min() < 100 and fs.good[3:].max() > 124


def test_the_budget_holds_in_each_group_not_on_average():
    defect, masks, good = _maps()
    good[:] = 0.02
    good[2, 20:30, 20:30] = 0.62  # one noise blob, in group "b": 1 in 4 images there, 1 in 8 pooled
    groups = ["a", "a", "b", "b"]
    pooled = {p.threshold: p for p in sweep(defect, masks, good) if p.rule == CANDIDATE_RULES[0]}
    split = {p.threshold: p for p in sweep(defect, masks, good, groups, groups) if p.rule == CANDIDATE_RULES[0]}
    assert pooled[0.5].fp_blobs_per_image == pytest.approx(1 / 8)
    assert split[0.5].fp_blobs_per_image == pytest.approx(1 / 4)
    assert split[0.5].to_dict()["fp_by_group"] == {"a": 0.0, "b": 0.25}
    assert split[0.5].defect_recall == pooled[0.5].defect_recall == 1.0 and split[0.5].dice == pooled[0.5].dice
    # Within 0.2 pooled, the faint defects are worth the blob; in group "b" alone the blob is over budget.
    assert choose(list(pooled.values()), budget=0.2)[0].threshold == 0.5
    best, within = choose(list(split.values()), budget=0.2)
    assert within and best.threshold > 0.6 and best.defect_recall == 0.5


def test_fit_records_the_choice_beside_the_whole_sweep():
    def predict(images):  # a 9x9 mean: a real, weak mean-shift detector
        import cv2

        means = np.stack([cv2.blur(im.astype(np.float32), (9, 9)) for im in images])
        return 1 / (1 + np.exp(-(means - 114.0) * 1.5))

    point = fit(predict, budget=0.05, count=8, seed=3)
    assert point["fitting_set"]["seed"] == [3, 1] and point["fitting_set"]["defect_images"] == 8
    assert set(point["chosen"]["fp_by_group"]) == {"uniform", "gaussian"}
    assert len(point["sweep"]) == len(CANDIDATE_RULES) * len(THRESHOLDS)
    # The weak detector still has points within 0.05 false blobs per image on both noise kinds: the choice is
    # the best of those by recall + Dice, not the fallback of the fewest false blobs.
    within = [p for p in point["sweep"] if p["fp_blobs_per_image"] <= 0.05]
    assert within and point["within_budget"] is True
    assert point["chosen"] in within and point["chosen"]["defect_recall"] > 0.5
    assert point["chosen"]["defect_recall"] + point["chosen"]["dice"] == \
        max(p["defect_recall"] + p["dice"] for p in within)


def test_a_fit_in_chunks_counts_what_one_pass_counts():
    """The fitting set is predicted and counted a chunk at a time (its probabilities need not fit in memory):
    chunk boundaries, including ones through a group, change nothing."""
    from edgeseg.operating import fit_on

    defect, masks, good = _maps()
    groups = ["a", "b", "a", "b"]
    whole = sweep(defect, masks, good, groups, groups)
    done = []
    for chunk in (1, 3, 100):
        point = fit_on(lambda x: x, defect, masks, good, 0.2, groups, groups, chunk=chunk,
                       progress=lambda d, total, _m: done.append((d, total)))
        assert point["sweep"] == [p.to_dict() for p in whole]
    assert done[-1] == (8, 8)  # progress counts images, over both halves


def test_training_fits_with_the_library_defaults():
    from edgeseg.operating import DEFAULT_BUDGET, DEFAULT_COUNT, DEFAULT_SEED
    from edgeseg.train import TrainConfig

    cfg = TrainConfig()
    assert (cfg.fa_budget, cfg.fit_count, cfg.val_seed) == (DEFAULT_BUDGET, DEFAULT_COUNT, DEFAULT_SEED)
