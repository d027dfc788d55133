"""Synthetic low-contrast defect images, faithful to the seed's ``make_image.py`` and generalising it.

The seed draws a 256×256 background of uniform integers 100..124 and redraws the pixels of two axis-aligned
rectangles (sides 8..63, fully inside) uniformly in 100+c..124+c with c = 3; labels are 255 inside
defects. Redrawing a uniform pixel in a range shifted by c is the same distribution as adding c to a fresh
background draw, so here an image is ``noise + c · defect`` — vectorised, seeded, NumPy-2 safe — and the
same formula carries the variations a real line shows: Gaussian noise, other noise levels and background
levels, smooth illumination, elliptical defects. Overlapping defects keep the contrast of the one drawn last,
as the seed's redraw does.

    rng = np.random.default_rng(0)
    sample = generate(rng, PRESETS["seed"])
    sample.image  # (256, 256) uint8
    sample.mask   # (256, 256) uint8 in {0, 1}
    sample.defects  # [Defect(x, y, w, h, shape, contrast, angle), ...]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.validate import finite, finite_range, whole

GENERATOR_VERSION = 1
#: Image sides the generator draws (16: room for a defect; 4096: a 16-megapixel frame, 16 MB per image).
MIN_SIZE, MAX_SIZE = 16, 4096
#: Most defects per image.
MAX_DEFECTS = 100


class Shape(str, Enum):
    rect = "rect"
    ellipse = "ellipse"
    mixed = "mixed"


class Noise(str, Enum):
    uniform = "uniform"
    gaussian = "gaussian"
    mixed = "mixed"


# The seed's background: uniform integers 100..124 → mean 112, std sqrt((25² − 1) / 12) ≈ 7.21.
SEED_LOW, SEED_HIGH = 100, 124
SEED_MEAN = (SEED_LOW + SEED_HIGH) / 2
SEED_STD = math.sqrt(((SEED_HIGH - SEED_LOW + 1) ** 2 - 1) / 12)


@dataclass(frozen=True)
class SynthConfig:
    """How images are drawn. Ranges are inclusive (lo, hi); the defaults are the seed's script."""

    image_size: int = 256
    contrast: tuple[float, float] = (3, 3)
    #: Integer contrasts (the seed's) or continuous ones (training recipes, curricula).
    contrast_continuous: bool = False
    defects: tuple[int, int] = (2, 2)
    defect_size: tuple[int, int] = (8, 63)
    #: How each side is drawn in ``defect_size``: ``uniform`` (the seed) or ``log`` (log-uniform: small and
    #: thin defects, the ones a pixel loss under-weights, are drawn more often — a training recipe).
    size_dist: str = "uniform"
    #: Probability that an image has no defect at all.
    good_fraction: float = 0.0
    shape: Shape = Shape.rect
    noise: Noise = Noise.uniform
    #: Noise std relative to the seed's 7.21, drawn per image (1, 1 = the seed).
    noise_scale: tuple[float, float] = (1.0, 1.0)
    #: Shift of the background mean from the seed's 112, drawn per image.
    level_shift: tuple[float, float] = (0.0, 0.0)
    #: Peak-to-peak amplitude (gray levels) of a smooth illumination field, drawn per image in [0, this].
    illumination: float = 0.0

    def __post_init__(self) -> None:
        # Every knob within what an 8-bit image can show: the background mean (112 + shift) stays in 0..255,
        # a contrast or lighting swing beyond 255 gray levels saturates every pixel it touches.
        whole("image_size", self.image_size, MIN_SIZE, MAX_SIZE, unit="pixels")
        finite_range("contrast", self.contrast, -255, 255, unit="gray levels")
        finite_range("noise_scale", self.noise_scale, 0, 10, unit="(times the seed's noise)")
        finite_range("level_shift", self.level_shift, -SEED_MEAN, 255 - SEED_MEAN, unit="gray levels")
        finite("illumination", self.illumination, 0, 255, unit="gray levels")
        finite("good_fraction", self.good_fraction, 0, 1)
        for name, lo, hi in (("defects", 0, MAX_DEFECTS), ("defect_size", 1, self.image_size - 1)):
            a, b = getattr(self, name)
            for end in (a, b):
                whole(name, end, lo, hi, why=f"for {self.image_size}px images" if name == "defect_size" else "")
            if a > b:
                raise EdgesegError(f"{name}: low end {a} is above high end {b}")
        if self.size_dist not in ("uniform", "log"):
            raise EdgesegError(f"unknown size_dist {self.size_dist!r}: choose one of uniform, log")
        for name, enum in (("shape", Shape), ("noise", Noise)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                raise EdgesegError(
                    f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(e.value for e in enum)}"
                ) from None

    def replace(self, **changes: Any) -> "SynthConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"], d["noise"] = self.shape.value, self.noise.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SynthConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


PRESETS: dict[str, SynthConfig] = {
    # Exactly the seed script's distribution: two rectangles, contrast 3, uniform noise 100..124.
    "seed": SynthConfig(),
    # The seed's text for the test set: 1–2 defects of contrast 3–4.
    "test": SynthConfig(contrast=(3, 4), defects=(1, 2)),
    # The recommended training recipe (see docs/study.md): it teaches the mean shift, not the seed's
    # hard noise bounds — noise model, noise level, background level and illumination vary per image,
    # defects are rectangles and ellipses, and a fifth of the images are defect-free.
    # Why (docs/study.md, "Which training data?"): contrast near the target's 3 (wider ranges teach easy
    # defects and miss faint ones), mild illumination (none: the net fails on lit images; 16 levels: it
    # misses faint defects), log-uniform sides (more small and thin defects, the ones it would miss:
    # +0.4–1.0 point of recall at an equal false-alarm rate on every set).
    "train": SynthConfig(
        contrast=(2.5, 3.5), contrast_continuous=True, defects=(0, 3), size_dist="log", good_fraction=0.2,
        shape=Shape.mixed, noise=Noise.mixed, noise_scale=(0.9, 1.1), level_shift=(-40.0, 40.0),
        illumination=6.0,
    ),
}


def validation_config(image_size: int = 256) -> SynthConfig:
    """The evaluation-like distribution that training validates on and fits its operating point on
    (:mod:`edgeseg.operating`): the seed's contrast 3 and noise level, 1–2 defects, noise and shape mixed,
    a tenth of the images defect-free."""
    return PRESETS["seed"].replace(image_size=image_size, defects=(1, 2), noise="mixed", shape="mixed",
                                   good_fraction=0.1)


def preset(name: str) -> SynthConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise EdgesegError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class Defect:
    """One drawn defect: bounding box (x, y, w, h) in pixels, its shape, contrast and rotation (ellipses)."""

    x: int
    y: int
    w: int
    h: int
    shape: str
    contrast: float
    angle: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Sample:
    image: np.ndarray  # (H, W) uint8
    mask: np.ndarray  # (H, W) uint8 in {0, 1}
    defects: list[Defect] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # per-image draws: noise model, std, level, lighting


def _noise(rng: np.random.Generator, cfg: SynthConfig, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Background noise (float, zero mean, before level shift) and what was drawn."""
    kind = cfg.noise if cfg.noise is not Noise.mixed else (Noise.uniform if rng.random() < 0.5 else Noise.gaussian)
    scale = float(rng.uniform(*cfg.noise_scale))
    if kind is Noise.uniform and scale == 1.0:
        # The seed's own draw: integers 100..124, kept integer so the preset is exact.
        field_ = rng.integers(SEED_LOW, SEED_HIGH + 1, size=(n, n)).astype(np.float32) - SEED_MEAN
    elif kind is Noise.uniform:
        half = math.sqrt(3.0) * SEED_STD * scale  # same std as scale × the seed's
        field_ = rng.uniform(-half, half, size=(n, n)).astype(np.float32)
    else:
        field_ = rng.normal(0.0, SEED_STD * scale, size=(n, n)).astype(np.float32)
    return field_, {"noise": kind.value, "noise_std": round(SEED_STD * scale, 4)}


def _illumination(rng: np.random.Generator, amplitude: float, n: int) -> tuple[np.ndarray | None, float]:
    """A smooth field: a tilted plane plus one broad bump, scaled to a random peak-to-peak ≤ amplitude."""
    if amplitude <= 0:
        return None, 0.0
    ptp = float(rng.uniform(0, amplitude))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    theta = rng.uniform(0, 2 * np.pi)
    plane = np.cos(theta) * xx + np.sin(theta) * yy
    cx, cy, sigma = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.25, 0.8)
    bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)) * rng.choice([-1.0, 1.0])
    f = plane + rng.uniform(0, 1) * bump
    span = float(f.max() - f.min()) or 1.0
    return ((f - f.mean()) * (ptp / span)).astype(np.float32), ptp


def _defect_mask(shape: str, w: int, h: int, angle: float) -> np.ndarray:
    """Boolean footprint of a defect inside its (h, w) box."""
    if shape == Shape.rect.value:
        return np.ones((h, w), dtype=bool)
    # Ellipse inscribed in the box, rotated by angle and shrunk so it stays inside the box.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    c, s = math.cos(angle), math.sin(angle)
    # Semi-axes chosen so the rotated ellipse's bounding box fits (w, h).
    a, b = w / 2, h / 2
    if angle:
        # For a rotated ellipse with semi-axes (p, q): half-extents sqrt(p²c²+q²s²), sqrt(p²s²+q²c²).
        # Solve for p, q that fill the box (clipped to stay positive when the angle makes it infeasible).
        det = c**4 - s**4
        if abs(det) > 1e-3:
            p2 = (a**2 * c**2 - b**2 * s**2) / det
            q2 = (b**2 * c**2 - a**2 * s**2) / det
        else:
            p2 = q2 = -1.0
        if p2 <= 1 or q2 <= 1:  # near 45°: fall back to a circle-ish ellipse that fits
            p2 = q2 = min(a, b) ** 2
        a, b = math.sqrt(p2), math.sqrt(q2)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    m = (u / max(a, 0.5)) ** 2 + (v / max(b, 0.5)) ** 2 <= 1.0
    if not m.any():
        m[int(cy), int(cx)] = True
    return m


@dataclass(frozen=True)
class Placed:
    """One drawn defect and its boolean footprint inside its box (``defect.h`` × ``defect.w``)."""

    defect: Defect
    footprint: np.ndarray
    #: The drawn contrast before the record's rounding (the pixels get this one).
    contrast: float


def draw_defects(rng: np.random.Generator, cfg: SynthConfig, height: int, width: int) -> list[Placed]:
    """The defects of one image of ``height`` × ``width``: how many (``good_fraction``, ``defects``), their
    sizes, places (fully inside), contrasts, shapes and angles, in the seed's order of draws — so that
    :func:`generate` draws the same images from the same rng whatever else uses this function
    (:mod:`edgeseg.data.backgrounds` places defects on photographs with it)."""
    count = 0 if rng.random() < cfg.good_fraction else int(rng.integers(cfg.defects[0], cfg.defects[1] + 1))
    lo, hi = cfg.defect_size
    placed: list[Placed] = []
    for _ in range(count):
        if cfg.size_dist == "log":
            w, h = (min(hi, int(v)) for v in np.exp(rng.uniform(math.log(lo), math.log(hi + 1), size=2)))
        else:
            w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        # The seed: x = randint(0, 256 - size), i.e. 0..256-size-1, so the defect is fully inside.
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        if cfg.contrast_continuous:
            c = float(rng.uniform(*cfg.contrast))
        else:
            c = float(rng.integers(int(cfg.contrast[0]), int(cfg.contrast[1]) + 1))
        shape = cfg.shape.value if cfg.shape is not Shape.mixed else str(rng.choice([Shape.rect.value, Shape.ellipse.value]))
        angle = float(rng.uniform(0, math.pi)) if shape == Shape.ellipse.value and rng.random() < 0.5 else 0.0
        placed.append(Placed(Defect(x, y, w, h, shape, round(c, 4), round(angle, 4)), _defect_mask(shape, w, h, angle), c))
    return placed


def generate(rng: np.random.Generator, cfg: SynthConfig = PRESETS["seed"]) -> Sample:
    """Draw one image, its binary mask and the list of defects."""
    n = cfg.image_size
    noise, info = _noise(rng, cfg, n)
    level = SEED_MEAN + float(rng.uniform(*cfg.level_shift))
    light, ptp = _illumination(rng, cfg.illumination, n)
    info.update(level=round(level, 3), illumination=round(ptp, 3))

    placed = draw_defects(rng, cfg, n, n)
    contrast_map = np.zeros((n, n), dtype=np.float32)
    mask = np.zeros((n, n), dtype=np.uint8)
    for p in placed:
        d = p.defect
        contrast_map[d.y : d.y + d.h, d.x : d.x + d.w][p.footprint] = p.contrast  # the last drawn wins, like the seed
        mask[d.y : d.y + d.h, d.x : d.x + d.w][p.footprint] = 1
    defects = [p.defect for p in placed]

    img = noise + level + contrast_map
    if light is not None:
        img += light
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Sample(image=image, mask=mask, defects=defects, info=info)


def generate_batch(rng: np.random.Generator, cfg: SynthConfig, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images and masks stacked: (count, H, W) uint8 each. For training and benchmarks."""
    n = cfg.image_size
    images = np.empty((count, n, n), dtype=np.uint8)
    masks = np.empty((count, n, n), dtype=np.uint8)
    for i in range(count):
        s = generate(rng, cfg)
        images[i], masks[i] = s.image, s.mask
    return images, masks
