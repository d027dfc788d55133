"""A line's own defect-free images as backgrounds: seed-style defects placed on real surfaces.

A line collects defect-free images easily and labelled defects rarely. edgeseg trains, calibrates and measures
on the first kind by drawing the generator's defects (:func:`edgeseg.data.synth.draw_defects`: every shape,
size and contrast knob ``generate`` has) onto them — the image's own texture, lighting and sensor noise stay
what they are, and the defect adds its contrast on top, as a stain or a dent in a flat-field image does.

Contrast is given in gray levels on the 8-bit scale of :mod:`edgeseg.data.depth` (on a 16-bit image 3 levels
add 3 × 257 of its own: the levels every network, metric and ``generate`` use) or, with ``relative=True``, in
units of the *local noise* σ: the standard deviation, in a window around the defect, of what is left after a
local mean is taken away (:func:`local_noise`). A textured surface has its own noise, so "3 gray levels" means
a different thing on brushed metal and on a polished wafer; "1 σ" means the same.

    bg = load_backgrounds("line/good", min_size=256)        # 8- or 16-bit, any sizes ≥ 256
    rng = np.random.default_rng(0)
    image, origin = random_crop(rng, bg.images[0], 256)
    sample = inject(rng, image, preset("test").replace(contrast=(1, 2), contrast_continuous=True), relative=True)
    sample.image, sample.mask, sample.defects                 # same dtype as the background
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.data.depth import SCALE
from edgeseg.data.synth import Sample, SynthConfig, draw_defects
from edgeseg.errors import BadInput

#: Side of the window :func:`local_noise` measures in: a little larger than a typical defect (8..63 px), so
#: the texture a defect sits on, not the defect, sets its σ.
NOISE_WINDOW = 33


#: Background images (and their noise maps) kept in memory at a time: a folder of any size costs at most this
#: many images, and a folder of up to this many is read from disk once.
KEEP = 64


class OnDisk(Sequence):
    """A folder's images, read from disk when indexed and the last :data:`KEEP` kept (thread-safe: training's
    data threads share it). ``shapes`` and ``dtype`` are known without reading."""

    def __init__(self, files: list[Path], shapes: list[tuple[int, int]], dtype, keep: int = KEEP):
        self.files, self.shapes, self.dtype, self.keep = list(files), list(shapes), np.dtype(dtype), keep
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        with self._lock:
            if i in self._kept:
                self._kept.move_to_end(i)
                return self._kept[i]
        from edgeseg.data.dataset import read_gray

        img = read_gray(self.files[i])
        if img.shape != self.shapes[i] or img.dtype != self.dtype:
            raise BadInput(f"{self.files[i]} changed since its folder was checked ({img.shape[1]}x{img.shape[0]} "
                           f"{img.dtype}); run the command again")
        with self._lock:
            self._kept[i] = img
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return img

    def subset(self, indices: Sequence[int]) -> "OnDisk":
        return OnDisk([self.files[i] for i in indices], [self.shapes[i] for i in indices], self.dtype, self.keep)


@dataclass
class Backgrounds:
    """Defect-free images of one bit depth (sizes may differ), their file names and folder. ``images`` is a list
    of arrays or, from :func:`load_backgrounds`, an :class:`OnDisk` sequence whose memory does not grow with the
    folder."""

    images: Sequence[np.ndarray]
    names: list[str]
    path: Path
    _noise: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Each image's (height, width), without reading the images from disk."""
        return list(self.images.shapes) if isinstance(self.images, OnDisk) else [i.shape for i in self.images]

    @property
    def dtype(self) -> np.dtype:
        return self.images.dtype if isinstance(self.images, OnDisk) else self.images[0].dtype

    def subset(self, indices: Sequence[int]) -> "Backgrounds":
        """These images only (a training part, a held-out part)."""
        images = self.images.subset(indices) if isinstance(self.images, OnDisk) else [self.images[i] for i in indices]
        return Backgrounds(images, [self.names[i] for i in indices], self.path)

    def noise(self, i: int) -> np.ndarray:
        """:func:`local_noise` of image ``i``; the last :data:`KEEP` are kept."""
        if i in self._noise:
            self._noise.move_to_end(i)
        else:
            self._noise[i] = local_noise(self.images[i])
            while len(self._noise) > KEEP:
                self._noise.popitem(last=False)
        return self._noise[i]

    def weights(self, size: int) -> np.ndarray:
        """How often each image is drawn: in proportion to the crops of ``size`` it holds, so every place of
        every image is as likely as any other."""
        n = np.array([(h - size + 1) * (w - size + 1) for h, w in self.shapes], float)
        return n / n.sum()

    def describe(self) -> dict[str, Any]:
        """For manifests: the folder, the images (name, height, width) and the depth."""
        return {"path": str(self.path), "bits": self.dtype.itemsize * 8,
                "images": [{"name": n, "height": int(h), "width": int(w)} for n, (h, w) in zip(self.names, self.shapes)]}


def load_backgrounds(path: str | Path, min_size: int) -> Backgrounds:
    """The defect-free images of a folder (either dataset layout; labels, if any, must be empty), each at least
    ``min_size`` on both sides, all 8-bit or all 16-bit. One-line :class:`BadInput` otherwise. Every image is read
    once here to check it; the returned set reads them again as they are used (:class:`OnDisk`)."""
    from edgeseg.data.dataset import IMAGE_SUFFIXES, image_dir, label_dir, natural_key, read_gray

    root = Path(path)
    folder = image_dir(root)
    files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                    and not f.name.startswith(".")), key=lambda f: natural_key(f.name))
    if not files:
        raise BadInput(f"no images in {folder} (expected {', '.join(IMAGE_SUFFIXES)} files of defect-free parts)")
    shapes, dtype = [], None
    for f in files:
        img = read_gray(f)
        if img.dtype not in (np.uint8, np.uint16):
            raise BadInput(f"{f} has {img.dtype} pixels; edgeseg reads 8- or 16-bit grayscale images")
        if min(img.shape) < min_size:
            raise BadInput(f"{f} is {img.shape[1]}x{img.shape[0]}, smaller than the {min_size}x{min_size} crop; "
                           "give larger images or a smaller --crop")
        if dtype is not None and img.dtype != dtype:
            raise BadInput(f"{f} is {img.dtype.itemsize * 8}-bit but {files[0].name} is "
                           f"{dtype.itemsize * 8}-bit; one folder of backgrounds has one bit depth")
        shapes.append(img.shape)
        dtype = img.dtype
    labels = label_dir(root)
    if labels is not None:
        for f in files:
            lab = labels / f.name
            if lab.is_file() and read_gray(lab).any():
                raise BadInput(f"{lab} marks a defect, but backgrounds must be defect-free; leave that image out "
                               "or use the folder as labelled data (--data)")
    return Backgrounds(OnDisk(files, shapes, dtype), [f.name for f in files], root)


def local_noise(image: np.ndarray, window: int = NOISE_WINDOW) -> np.ndarray:
    """Per pixel, the standard deviation of the image about its local mean in a ``window``-wide box (float32, in
    the image's own gray levels): sensor noise plus texture finer than the window — what a defect of that size
    has to stand out against. Never below 1/4 of a gray level (a flat synthetic image would give 0)."""
    import cv2

    x = np.asarray(image, np.float32)
    mean = cv2.blur(x, (window, window), borderType=cv2.BORDER_REFLECT)
    var = cv2.blur((x - mean) ** 2, (window, window), borderType=cv2.BORDER_REFLECT)
    floor = 0.25 * (257.0 if image.dtype == np.uint16 else 1.0)
    return np.maximum(np.sqrt(np.maximum(var, 0)), floor).astype(np.float32)


def random_crop(rng: np.random.Generator, image: np.ndarray, height: int, width: int | None = None
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """A uniformly placed ``height`` × ``width`` (default square) crop of ``image`` and its top-left (y, x)."""
    width = height if width is None else width
    h, w = image.shape
    if h < height or w < width:
        raise BadInput(f"an image of {w}x{h} has no {width}x{height} crop")
    y, x = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
    return image[y : y + height, x : x + width], (y, x)


def inject(rng: np.random.Generator, background: np.ndarray, cfg: SynthConfig, relative: bool = False,
           noise: np.ndarray | None = None) -> Sample:
    """``background`` (uint8 or uint16, any size; or float gray levels on the 8-bit scale, kept unrounded)
    with defects drawn by ``cfg`` added onto it.

    Of ``cfg`` only the defect knobs count (``defects``, ``defect_size``, ``size_dist``, ``good_fraction``,
    ``shape``, ``contrast``, ``contrast_continuous``): the background brings the noise, level and lighting.
    ``contrast`` is in gray levels on the 8-bit scale (a uint16 background gets 257 of its own levels per
    level) or, with ``relative``, in multiples of the local noise σ (``noise``: its :func:`local_noise`, in the
    background's own levels, computed when not given) — the median σ over the defect's footprint. Each
    recorded defect's ``contrast`` is then in 8-bit-scale gray levels, its ``contrast_sigma`` the multiple
    drawn and its ``noise_sigma`` that σ (8-bit scale too). The result is rounded and clipped to the
    background's depth; where defects overlap, the last one drawn wins.
    """
    h, w = background.shape
    if cfg.defect_size[1] >= min(h, w):
        raise BadInput(f"defects up to {cfg.defect_size[1]} px do not fit in a {w}x{h} image; lower --defect-size")
    floating = background.dtype.kind == "f"  # gray levels already (training on 16-bit backgrounds): no rounding
    top = 255.0 if floating else float(np.iinfo(background.dtype).max)
    if not floating and background.dtype not in SCALE:
        raise BadInput(f"{background.dtype} pixels: backgrounds are 8- or 16-bit grayscale images")
    scale = 1.0 if floating else SCALE[background.dtype]  # the background's own levels -> 8-bit-scale levels
    placed = draw_defects(rng, cfg, h, w)
    if relative and placed and noise is None:
        noise = local_noise(background)
    shift = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    defects = []
    for p in placed:
        d = p.defect
        box = (slice(d.y, d.y + d.h), slice(d.x, d.x + d.w))
        record = d.to_dict()
        if relative:
            sigma = float(np.median(noise[box][p.footprint]))  # in the background's own levels
            c = p.contrast * sigma
            record.update(contrast=round(c * scale, 4), contrast_sigma=d.contrast,
                          noise_sigma=round(sigma * scale, 4))
        else:
            c = p.contrast / scale
        shift[box][p.footprint] = c
        mask[box][p.footprint] = 1
        defects.append(record)
    if not placed:
        image = background
    elif floating:
        image = np.clip(background + shift, 0, top).astype(background.dtype)
    else:
        image = np.clip(np.rint(background.astype(np.float32) + shift), 0, top).astype(background.dtype)
    return Sample(image=image, mask=mask, defects=defects, info={})


def draw(rng: np.random.Generator, backgrounds: Backgrounds, size: int | None, cfg: SynthConfig,
         relative: bool = False) -> tuple[Sample, dict[str, Any]]:
    """One training or test image: a random ``size``² crop of a background (chosen in proportion to its crops)
    — or, with ``size`` None, a whole background (each as likely) — with :func:`inject`'s defects; and where it
    came from (image name, crop y, x)."""
    if size is None:
        i = int(rng.integers(len(backgrounds)))
        crop, (y, x) = backgrounds.images[i], (0, 0)
        noise = backgrounds.noise(i) if relative else None
    else:
        i = int(rng.choice(len(backgrounds), p=backgrounds.weights(size)))
        crop, (y, x) = random_crop(rng, backgrounds.images[i], size)
        noise = backgrounds.noise(i)[y : y + size, x : x + size] if relative else None
    sample = inject(rng, crop, cfg, relative, noise)
    return sample, {"background": backgrounds.names[i], "y": y, "x": x}
