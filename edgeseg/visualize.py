"""Pictures a person can read: a defect 3 gray levels above noise of std 7 is invisible in the raw image,
so images are shown smoothed and contrast-stretched, beside the raw stretch, the ground truth and the
prediction (OpenCV only).

    panel = triptych(image, pred_mask, gt_mask)      # (H', W', 3) uint8 BGR
    cv2.imwrite("out.png", panel)
"""

from __future__ import annotations

import cv2
import numpy as np

GT_COLOR = (0, 220, 0)  # BGR green
PRED_COLOR = (0, 0, 255)  # BGR red
_GAP = 4
_TITLE_H = 18


def stretch(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Map the [low_pct, high_pct] percentile range of ``image`` onto 0..255 (uint8)."""
    a = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(a, [low_pct, high_pct])
    if hi <= lo:
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def smooth_stretch(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur (σ px) then stretch: averaging ~(2√π·σ)² pixels lowers the noise about 7× at σ = 2, so
    a 3-level defect stands ~3 noise std above its background and becomes visible."""
    blurred = cv2.GaussianBlur(np.asarray(image, dtype=np.float32), (0, 0), sigma)
    return stretch(blurred, 0.5, 99.5)


def outline(gray_or_bgr: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    """``gray_or_bgr`` as BGR with the outlines of ``mask``'s regions drawn in ``color``."""
    img = gray_or_bgr if gray_or_bgr.ndim == 3 else cv2.cvtColor(gray_or_bgr, cv2.COLOR_GRAY2BGR)
    img = np.ascontiguousarray(img).copy()
    contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, color, thickness)
    return img


def tint(gray: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.35) -> np.ndarray:
    """``gray`` as BGR with ``mask`` filled translucently in ``color``."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32)
    m = np.asarray(mask) > 0
    img[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, dtype=np.float32)
    return img.astype(np.uint8)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    """A panel with a black title bar above it (titles shrink to fit small images)."""
    h, w = panel.shape[:2]
    bar = np.zeros((_TITLE_H, w, 3), dtype=np.uint8)
    scale = min(0.45, 0.9 * w / max(1, 9 * len(title)))
    cv2.putText(bar, title, (3, _TITLE_H - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def triptych(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None, sigma: float = 2.0) -> np.ndarray:
    """Original (raw stretch | smoothed stretch) | ground truth | prediction, side by side, BGR uint8.

    Ground truth is a green tint with outline on the smoothed image (omitted when ``gt`` is None); the
    prediction is a red outline on the smoothed image, with the GT outline in green for reference.
    """
    raw = cv2.cvtColor(stretch(image), cv2.COLOR_GRAY2BGR)
    smooth = smooth_stretch(image, sigma)
    panels = [_titled(raw, "raw"), _titled(cv2.cvtColor(smooth, cv2.COLOR_GRAY2BGR), f"blur s={sigma:g}")]
    pred_view = cv2.cvtColor(smooth, cv2.COLOR_GRAY2BGR)
    if gt is not None:
        panels.append(_titled(outline(tint(smooth, gt, GT_COLOR), gt, GT_COLOR), "truth"))
        pred_view = outline(pred_view, gt, GT_COLOR)
    panels.append(_titled(outline(pred_view, pred, PRED_COLOR), "prediction"))
    h = panels[0].shape[0]
    gap = np.full((h, _GAP, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for p in panels:
        row += [p, gap]
    return np.hstack(row[:-1])
