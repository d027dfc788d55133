"""The bounded-noise shortcut, measured: what a detector gets from the seed's noise bounds, not from the mean shift.

The seed's noise is uniform in 100..124 and a defect's pixels in 103..127, so a pixel above 124 is a defect
pixel, and an 8×8 window of noise holds no pixel below 103 with probability (22/25)^64 ≈ 3e-4. The detector
here keeps the regions where every 8×8 window has no pixel below 103, when they hold at least two pixels above
124. It reads nothing but those two bounds: on the seed's own data it finds every defect, on noise with other
bounds (Gaussian noise has none) it fires everywhere. ``edgeseg detectability --shortcut`` scores it beside the
mean-shift reference, to show what a network trained on the seed's images alone can learn instead of the test.

    masks = shortcut_masks(images)            # (N, H, W) bool, 8-bit images of the seed's levels
    report = score(load_dataset("big/seed"), load_dataset("big/good"))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseg.data.dataset import CHUNK, Dataset
from edgeseg.errors import BadInput
from edgeseg.progress import Progress, silent

#: The seed's bounds: noise never leaves LOW..HIGH; a defect pixel reaches above HIGH.
LOW, HIGH = 103, 124
#: The window whose every pixel must be ≥ LOW, and the pixels above HIGH a region needs.
WINDOW, HOT_PIXELS = 8, 2


def shortcut_masks(images: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: the regions whose 8×8 windows hold no pixel below 103, where two pixels pass 124."""
    import cv2

    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise BadInput(f"the shortcut reads the seed's 8-bit gray levels; these images are {images.dtype}")
    kernel = np.ones((WINDOW, WINDOW), np.uint8)
    out = np.zeros(images.shape, bool)
    for i, x in enumerate(images):
        region = cv2.dilate((cv2.erode(x, kernel) >= LOW).astype(np.uint8), kernel)
        n, lab = cv2.connectedComponents(region, connectivity=8)
        hot = np.bincount(lab[x > HIGH], minlength=n) >= HOT_PIXELS
        hot[0] = False
        out[i] = hot[lab]
    return out


def _scored(ds: Dataset, progress: Progress, done: int, total: int) -> dict[str, Any]:
    from edgeseg.metrics import Counts, GroundTruth

    counts = Counts()
    for part in ds.chunks(CHUNK):
        counts.add(shortcut_masks(part.images), GroundTruth.from_masks(part.masks))
        done += len(part)
        progress(done, total, "shortcut")
    return counts.report(0.5)


def score(defects: Dataset, good: Dataset, progress: Progress = silent) -> dict[str, Any]:
    """The shortcut scored like any detector (:mod:`edgeseg.metrics`): defect recall, Dice and false blobs per
    image on ``defects``; false blobs per image and overkill on ``good``."""
    total = len(defects) + len(good)
    m = _scored(defects, progress, 0, total)
    g = _scored(good, progress, len(defects), total)
    return {"rule": f"every {WINDOW}x{WINDOW} window >= {LOW}, at least {HOT_PIXELS} pixels > {HIGH}",
            "defects": {k: m[k] for k in ("n_images", "n_defects", "defects_found", "defect_recall", "dice",
                                          "fp_blobs_per_image")},
            "good": {k: g[k] for k in ("n_images", "fp_blobs_per_image", "overkill_rate")}}
