"""The non-learned baseline: detrend, multi-scale matched filter, hysteresis, cleanup (``--model classical``).

A defect here is a patch a few gray levels brighter than its surroundings under noise about twice as strong
(per-pixel SNR ≈ 0.4), so it is only visible through averaging. The optimal detector for a flat patch of
unknown size in white noise is a bank of box means — a matched filter per size — each scaled to unit noise
(the sum of n i.i.d. pixels has std σ·√n), taking the best z over the bank. Around that:

1. **noise** — σ from neighbour differences (var(x[i] − x[i+1]) = 2σ² for white noise; smooth illumination
   and defect edges barely move it), so uniform, Gaussian, weak or strong noise all map to unit z;
2. **background** — a local weighted quadratic regression over ``background``-px windows (it follows a
   lighting ramp or bump without the curvature bias of a box mean), re-estimated once with the first
   pass's significant blobs left out, so a 63 px defect does not lift its own background;
3. **matched filter** — rectangular box sums of the normalised residual for every pair of ``scales`` (defects
   are often long and thin: a 9×25 box sees 1.7× the z of a 9×9 one on an 8×63 defect), divided by the
   square root of the number of in-image pixels so borders keep unit noise;
4. **detection** — hysteresis: components of max-z ≥ ``t_low`` that reach ``t_high`` somewhere. The bank
   makes ~10⁵ correlated tests per image, so on defect-free images the per-image max z has a median of
   ≈ 4.5 and a 99.9th percentile of ≈ 5.7; ``t_high`` = 6 also absorbs the residual background error
   under strong lighting (tuned to ≤ 0.01 false blobs per image on every tuning set);
5. **extent** — the component's best box gives its contrast and size; a pixel belongs to the defect when
   its residual, averaged over a box ``extent_scale`` times that size, reaches half the (de-biased)
   contrast — the split between two equal-variance Gaussians, which keeps straight edges in place;
6. **cleanup** — open/close, fill holes, drop components under ``min_area`` and extent pieces that hold
   no seed of their own (noise that happened to sit beside a defect).

The output is a score in [0, 1] whose 0.5 level is exactly the tuned mask: a logistic of a z-unit margin
(inside a detected component, the weaker of its peak's z − ``t_high`` and the extent test's margin;
elsewhere z − ``t_high``), pinned above 0.5 inside the cleaned-up mask and below it outside, so a lower
threshold in ``edgeseg eval`` trades false positives for recall roughly the way the z-score does.

    with load_runner("classical") as runner:
        probs = runner.infer(images)   # (N, H, W) float32, > 0.5 on defects
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runners.base import Runner
from edgeseg.types import Backend


@dataclass(frozen=True)
class ClassicalParams:
    """Detector settings; the defaults are the values tuned by ``edgeseg.classical_tune``."""

    #: Box side lengths (px); every (width, height) pair with aspect ≤ ``max_aspect`` is a matched filter.
    scales: tuple[int, ...] = (5, 9, 15, 25)
    max_aspect: float = 8.0
    #: Hysteresis on the max z over the bank: seed level and grow level.
    t_high: float = 6.0
    t_low: float = 3.5
    #: Background: window side (px) and polynomial degree of the local regression; pass-1 blobs (z ≥
    #: ``t_mask`` reaching ``t_mask_seed``) are left out of the second estimate.
    background: int = 201
    background_degree: int = 2
    t_mask: float = 3.0
    t_mask_seed: float = 4.5
    #: Extent: residual averaged over a box of the best box's shape (at most ``extent_scale`` of its sides,
    #: less when ``extent_snr`` is reached sooner) must reach ``extent_fraction`` of the best box's
    #: contrast, after removing ``contrast_bias`` (z units) of best-of-many optimism.
    extent_scale: float = 0.5
    extent_snr: float = 4.0
    extent_fraction: float = 0.5
    contrast_bias: float = 2.5
    #: Smallest defect kept (px) and the side of the open/close structuring element.
    min_area: int = 16
    morph: int = 3

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) < 1:
            raise EdgesegError(f"scales must be positive box sizes, got {self.scales}")
        if self.t_low > self.t_high:
            raise EdgesegError(f"t_low ({self.t_low}) must not exceed t_high ({self.t_high})")
        if self.background < 3 or self.background_degree not in (0, 1, 2, 3):
            raise EdgesegError(
                f"background must be >= 3 px and background_degree one of 0, 1, 2, 3, "
                f"got {self.background} and {self.background_degree}"
            )
        if not 0 < self.extent_scale <= 1 or self.extent_snr <= 0:
            raise EdgesegError(
                f"extent_scale must be in (0, 1] and extent_snr > 0, got {self.extent_scale}, {self.extent_snr}"
            )
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))

    def boxes(self) -> list[tuple[int, int]]:
        """The (width, height) matched filters."""
        return [
            (w, h) for w in self.scales for h in self.scales if max(w, h) / min(w, h) <= self.max_aspect
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scales"] = list(self.scales)
        return d


def noise_sigma(x: np.ndarray) -> float:
    """White-noise std from neighbour differences, robust to smooth lighting and to the few defect edges."""
    dx = np.diff(x, axis=1)
    dy = np.diff(x, axis=0)
    var = (float(np.mean(dx * dx)) + float(np.mean(dy * dy))) / 4.0
    return math.sqrt(var) if var > 1e-6 else 1.0


def background(x: np.ndarray, weight: np.ndarray, size: int, degree: int = 2, cell: int = 16) -> np.ndarray:
    """Local weighted quadratic regression of ``x`` in size×size windows; ``weight`` 0 leaves pixels out.

    A box mean of the background is biased by the lighting's curvature (≈ k²/24 · f'' per axis, easily a
    gray level for a 100 px window), and large matched filters turn a fraction of a gray level into a
    detection; a local quadratic follows a lighting bump without that bias. It is solved on a coarse grid
    of cell×cell means (the background is smooth, so nothing is lost) and resized back: 6×6 normal
    equations per cell from box-filtered moments.
    """
    h, w = x.shape
    gh, gw = max(2, round(h / cell)), max(2, round(w / cell))
    k = max(3, int(round(size * gh / h)) | 1)
    powers, basis, moment_basis, pairs = _regression_basis(gh, gw, k, degree)
    wx = cv2.resize(x * weight, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float64)
    ws = cv2.resize(weight, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float64)
    box = lambda a: cv2.boxFilter(a, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
    moments = np.stack([box(ws * b) for b in moment_basis], axis=-1)
    m = len(powers)
    lhs = moments[..., pairs]  # (gh, gw, m, m)
    rhs = np.stack([box(wx * basis[..., i]) for i in range(m)], axis=-1)
    # A small ridge keeps cells whose window is almost all left out solvable (they fall back to a mean).
    ridge = 1e-6 * np.maximum(lhs[..., 0, 0], 1e-3)
    lhs[..., np.arange(m), np.arange(m)] += ridge[..., None]
    lhs[..., 0, 0] += 1e-3
    beta = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    coarse = np.sum(beta * basis, axis=-1).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


@functools.lru_cache(maxsize=16)
def _regression_basis(gh: int, gw: int, k: int, degree: int):
    """Monomials of the coarse-grid coordinates: the fit's basis and the moments its normal equations need."""
    v, u = np.mgrid[0:gh, 0:gw].astype(np.float64)
    half = k / 2
    v, u = (v - gh / 2) / half, (u - gw / 2) / half  # ~unit scale inside a window keeps the system well posed
    powers = [(a, b) for a in range(degree + 1) for b in range(degree + 1 - a)]
    mpow = [(a, b) for a in range(2 * degree + 1) for b in range(2 * degree + 1 - a)]
    basis = np.stack([u**a * v**b for a, b in powers], axis=-1)
    moment_basis = [u**a * v**b for a, b in mpow]
    pairs = np.array([[mpow.index((a1 + a2, b1 + b2)) for a2, b2 in powers] for a1, b1 in powers])
    return powers, basis, moment_basis, pairs


class MatchedFilterBank:
    """Box-sum z-scores at every (w, h) in ``boxes``, exact at the borders (sum / √(in-image count))."""

    def __init__(self, boxes: list[tuple[int, int]], shape: tuple[int, int]):
        self.boxes = boxes
        ones = np.ones(shape, dtype=np.float32)
        self._inv_sqrt_n = [
            1.0 / np.sqrt(cv2.boxFilter(ones, -1, b, normalize=False, borderType=cv2.BORDER_CONSTANT))
            for b in boxes
        ]

    def zmax(self, r: np.ndarray, squares_only: bool = False) -> np.ndarray:
        """Max z over the bank (or over its square boxes only, a cheaper first look), per pixel."""
        best = np.full(r.shape, -np.inf, dtype=np.float32)
        for b, inv in zip(self.boxes, self._inv_sqrt_n):
            if squares_only and b[0] != b[1]:
                continue
            z = cv2.boxFilter(r, -1, b, normalize=False, borderType=cv2.BORDER_CONSTANT)
            z *= inv
            np.maximum(best, z, out=best)
        return best

    def best_box(self, r: np.ndarray, y: int, x: int) -> tuple[int, float]:
        """Which box gives the max z at (y, x), and that z. Only needed at a few peaks, so it is
        recomputed there instead of tracking an argmax over every pixel."""
        h, w = r.shape
        best, best_z = 0, -np.inf
        for i, (bw, bh) in enumerate(self.boxes):
            y0, x0 = max(0, y - bh // 2), max(0, x - bw // 2)
            y1, x1 = min(h, y - bh // 2 + bh), min(w, x - bw // 2 + bw)
            patch = r[y0:y1, x0:x1]
            z = float(patch.sum(dtype=np.float64)) / math.sqrt(patch.size)
            if z > best_z:
                best, best_z = i, z
        return best, best_z


def zmaps(image: np.ndarray, params: ClassicalParams, bank: MatchedFilterBank) -> tuple[np.ndarray, ...]:
    """Normalised residual r (unit noise) and the bank's max z, for one image."""
    x = np.asarray(image, dtype=np.float32)
    sigma = noise_sigma(x)
    # Pass 1: background from everything; pass 2: without what pass 1 finds.
    weight = np.ones_like(x)
    bg = background(x, weight, params.background, params.background_degree)
    # Square boxes are enough to find what must be left out of the background, at a quarter of the cost.
    z = bank.zmax((x - bg) / sigma, squares_only=True)
    # Leave out only significant blobs: excluding every chance excursion above t_mask would bias the
    # background low, and big boxes turn a 0.3-gray-level bias into a false detection.
    labels, keep, _ = _hysteresis(z, params.t_mask, params.t_mask_seed)
    excl = keep[labels].astype(np.uint8)
    weight = 1.0 - cv2.dilate(excl, np.ones((5, 5), np.uint8)).astype(np.float32)
    bg = background(x, weight, params.background, params.background_degree)
    r = (x - bg) / sigma
    return r, bank.zmax(r)


def segment(r: np.ndarray, z: np.ndarray, params: ClassicalParams, bank: MatchedFilterBank) -> np.ndarray:
    """Score map in [0, 1] from :func:`zmaps`' output: hysteresis, extent, cleanup; > 0.5 = defect."""
    labels, keep, stats = _hysteresis(z, params.t_low, params.t_high)
    # Per kept component: its best box gives the defect's contrast (in σ units) and rough size. A pixel
    # belongs to the defect when its residual, averaged over a box a fraction of that size (thin defects
    # get thin boxes, big ones more averaging), passes a fraction of that contrast (half would split two
    # equal-variance Gaussians, but the best box's contrast is biased up by being the best of many).
    mask = np.zeros(r.shape, dtype=bool)
    margin = z - params.t_high
    for i in np.flatnonzero(keep):
        x0, y0, bw, bh = stats[i, :4]
        win = (slice(y0, y0 + bh), slice(x0, x0 + bw))
        own = labels[win] == i
        zi = np.where(own, z[win], -np.inf)
        j = np.unravel_index(int(np.argmax(zi)), zi.shape)
        k, raw = bank.best_box(r, y0 + int(j[0]), x0 + int(j[1]))
        w, h = bank.boxes[k]
        # The best of many boxes overstates its contrast by about ``contrast_bias`` in z; for a strong
        # defect that is negligible and the level tends to exactly half the contrast.
        level = max(raw - params.contrast_bias, 0.0) / math.sqrt(w * h) * params.extent_fraction
        # Average just enough for the smoothed residual to clear its noise by ``extent_snr`` at the level
        # (a strong defect keeps sharp corners), at most ``extent_scale`` of the box; odd sides keep the
        # box centred, so edges do not shift by half a pixel.
        want = (params.extent_snr / level) ** 2 if level > 0 else math.inf
        f = min(params.extent_scale, math.sqrt(want / (w * h)))
        kx, ky = (max(1, int(round(side * f)) | 1) for side in (w, h))
        smooth = cv2.blur(r, (kx, ky), borderType=cv2.BORDER_REFLECT)[win] if kx * ky > 1 else r[win]
        mask[win] |= own & (smooth >= level)
        # Margin in z units: the weaker of "detected" and "inside the extent" (the smoothed residual's
        # distance from the level, over its own noise 1/√(kx·ky)).
        inside = np.minimum(zi[j] - params.t_high, (smooth - level) * math.sqrt(kx * ky))
        margin[win] = np.where(own, inside, margin[win])
    mask = _cleanup(mask, params)
    # A grow-level component can reach well beyond its defect; pieces of the extent that hold no seed of
    # their own are noise that happened to sit next to a defect.
    lab, seeded, _ = _hysteresis(np.where(mask, z, -np.inf), -1e30, params.t_high)
    mask = seeded[lab]

    # Score: logistic of the margin, pinned to the right side of 0.5 by the cleaned-up mask.
    score = 1.0 / (1.0 + np.exp(-np.clip(margin, -60.0, 60.0)))  # saturates at 0 and 1 without overflow
    eps = 1e-3
    score = np.where(mask, np.maximum(score, 0.5 + eps), np.minimum(score, 0.5 - eps))
    return score.astype(np.float32)


def detect(image: np.ndarray, params: ClassicalParams, bank: MatchedFilterBank | None = None) -> np.ndarray:
    """Score map in [0, 1] for one (H, W) image of raw gray levels; > 0.5 marks defect pixels."""
    bank = bank or MatchedFilterBank(params.boxes(), np.shape(image))
    return segment(*zmaps(image, params, bank), params, bank)


def _hysteresis(z: np.ndarray, low: float, high: float):
    """Components of z ≥ low (labels, stats) and ``keep[label]``: True where the component reaches ``high``."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((z >= low).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[labels[z >= high]] = True
    keep[0] = False
    return labels, keep, stats


def _cleanup(mask: np.ndarray, params: ClassicalParams) -> np.ndarray:
    """Open/close, fill holes, drop components under ``min_area``."""
    m = mask.astype(np.uint8)
    if params.morph > 1:
        k = cv2.getStructuringElement(cv2.MORPH_RECT, (params.morph, params.morph))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    # Fill holes: background components not connected to the border become foreground.
    inv = (1 - m).astype(np.uint8)
    n, lab = cv2.connectedComponents(inv, connectivity=4)
    if n > 2:
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        hole = ~np.isin(lab, border)
        m[hole] = 1
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] < params.min_area
    small[0] = True
    return ~small[lab]


class ClassicalRunner(Runner):
    """The baseline as a :class:`Runner`: any image size, no artifact, options = :class:`ClassicalParams`."""

    backend = Backend.classical

    def __init__(self, **options: Any):
        super().__init__(None)
        known = set(ClassicalParams.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise EdgesegError(
                f"unknown classical option(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
            )
        if "scales" in options:
            options["scales"] = tuple(options["scales"])
        self.params = ClassicalParams(**options)
        self._banks: dict[tuple[int, int], MatchedFilterBank] = {}

    @property
    def config(self) -> dict[str, Any]:
        """The settings, for eval reports and manifests."""
        return {"model": "classical", **self.params.to_dict()}

    def _activate(self) -> None:
        # Nothing to load: the filter bank is built per image size on first use (cheap, then cached).
        pass

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        shape = tuple(batch.shape[1:3])
        if shape not in self._banks:
            self._banks[shape] = MatchedFilterBank(self.params.boxes(), shape)
        bank = self._banks[shape]
        return np.stack([detect(img[..., 0], self.params, bank) for img in batch])
