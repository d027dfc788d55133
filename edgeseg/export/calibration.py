"""INT8 calibration sets — generated, or cut from a line's own images — cached on disk by what was asked for.

INT8 scales are set from the activations a few hundred images produce. By default those images are
*generated* by the synthetic generator (never taken from a test set, which would leak the test into the
model) in one of three mixes — ``defect`` (every image has defects), ``background`` (defect-free), ``mixed``
(half each). A line that has its own images (``--calib-data DIR``: a folder of images, labelled or not, 8- or
16-bit, any size at least the model's input) calibrates on them instead: ``count`` crops of the model's input
shape at seeded random places (the whole image where it has that shape), so the scales see the line's own
levels, noise and lighting. Either set is saved as one ``images.npy`` (as stored: uint8 or uint16; the
calibration reader turns it into gray levels with :func:`edgeseg.data.depth.to_levels`, as every runner does)
under ``calib/<hash>/`` with a ``manifest.json``, where ``<hash>`` is the hash of the request — for a line's
folder, including every file's name, size and modification time, so a changed folder is a new set. The same
request finds the same folder and reuses it, so an INT8 model can be rebuilt from exactly the images it was
calibrated on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import atomic_dir, read_json, sha256_file, write_json
from edgeseg.errors import BadInput, EdgesegError

MAX_CALIB_COUNT = 512
DEFAULT_CALIB_COUNT = 512  # closest to FP32 of 64..512 on the demo model (docs/study.md)
DEFAULT_CALIB_ROOT = Path("calib")


class CalibMix(str, Enum):
    defect = "defect"
    background = "background"
    mixed = "mixed"


_GOOD_FRACTION = {CalibMix.defect: 0.0, CalibMix.background: 1.0, CalibMix.mixed: 0.5}


@dataclass(frozen=True)
class CalibSet:
    path: Path  # the folder calib/<hash>/
    hash: str
    images: np.ndarray  # (count, H, W) uint8 (generated) or the line's own depth (uint8 or uint16)
    reused: bool
    source: str | None = None  # the line's folder the crops came from; None for a generated set


def calib_config(image_size: int, mix: CalibMix | str, preset_name: str = "test"):
    """The generator config for a calibration mix: the deployment distribution (``test`` preset: 1–2
    defects of contrast 3–4, uniform noise) with the mix's fraction of defect-free images."""
    from edgeseg.data.synth import preset
    from edgeseg.export.onnx import sized

    mix = CalibMix(mix)
    return sized(preset(preset_name), image_size).replace(good_fraction=_GOOD_FRACTION[mix])


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_CALIB_COUNT:
        raise EdgesegError(f"--calib-count must be between 1 and {MAX_CALIB_COUNT} (got {count})")


def _digest(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]


def calibration_set(image_size: int | tuple[int, int], count: int = DEFAULT_CALIB_COUNT,
                    mix: CalibMix | str = CalibMix.mixed, seed: int = 7, root: str | Path = DEFAULT_CALIB_ROOT,
                    preset_name: str = "test") -> CalibSet:
    """The generated calibration images for this request (a side, or (H, W): drawn square at the longer side,
    then cropped), generated once and then read back from ``root/<hash>/``."""
    from edgeseg.data.synth import GENERATOR_VERSION, generate_batch
    from edgeseg.export.onnx import as_shape

    _check_count(count)
    try:
        mix = CalibMix(mix)
    except ValueError:
        raise EdgesegError(f"unknown calibration mix {mix!r}: choose one of "
                           f"{', '.join(m.value for m in CalibMix)}") from None
    h, w = as_shape(image_size)
    side = max(h, w)
    cfg = calib_config(side, mix, preset_name)
    request = {"generator": cfg.to_dict(), "generator_version": GENERATOR_VERSION, "preset": preset_name,
               "mix": mix.value, "seed": seed, "count": count}
    if (h, w) != (side, side):
        request["crop"] = [h, w]  # square requests keep the hash they always had (their caches are reused)
    digest = _digest(request)
    folder = Path(root) / digest
    cached = _read(folder, (count, h, w))
    if cached is not None:
        return CalibSet(folder, digest, cached, reused=True)
    images, _ = generate_batch(np.random.default_rng(seed), cfg, count)
    images = np.ascontiguousarray(images[:, :h, :w])
    return _write(folder, digest, request, images, None)


def line_request(source: str | Path, shape: tuple[int, int], count: int, seed: int) -> tuple[dict[str, Any], list[Path]]:
    """What a calibration set cut from a line's folder depends on (its files' names, sizes and modification
    times, hashed; the crop shape, count and seed), and the folder's image files."""
    from edgeseg.data.dataset import list_images

    files = list_images(source)
    listing = []
    for f in files:
        st = f.stat()
        listing.append([f.name, st.st_size, st.st_mtime_ns])
    files_hash = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    request = {"source": str(Path(source).resolve()), "files": len(files), "files_sha256": files_hash,
               "shape": [int(shape[0]), int(shape[1])], "seed": seed, "count": count, "sampling": "random-crop"}
    return request, files


def _check_size(source: str | Path, image: tuple[int, int], shape: tuple[int, int]) -> None:
    (ih, iw), (h, w) = image, shape
    if ih < h or iw < w:
        raise BadInput(f"the images in {source} are {iw}x{ih}, smaller than the model's input {w}x{h}: calibrate on "
                       "larger images, or export the model for a smaller --shape")


def line_calibration_set(source: str | Path, shape: tuple[int, int], count: int = DEFAULT_CALIB_COUNT, seed: int = 7,
                         root: str | Path = DEFAULT_CALIB_ROOT) -> CalibSet:
    """``count`` crops of ``shape`` (H, W) from the images in ``source`` (a line's folder, either layout, labels
    ignored), read once and cached under ``root/<hash>/`` (see the module docstring).

    Crops go through the images in a seeded random order (each image once before any twice), each at a seeded
    random place; an image of exactly ``shape`` is taken whole. A folder without images, with images of
    several sizes or bit depths, or with images smaller than ``shape`` is refused in one line before anything
    is written."""
    from edgeseg.data.dataset import open_images

    _check_count(count)
    h, w = int(shape[0]), int(shape[1])
    request, _files = line_request(source, (h, w), count, seed)
    digest = _digest(request)
    folder = Path(root) / digest
    cached = _read(folder, (count, h, w))
    if cached is not None:
        return CalibSet(folder, digest, cached, reused=True, source=str(source))
    stack, _names = open_images(source)  # every file checked: one size, one bit depth, readable
    n, ih, iw = stack.shape
    _check_size(source, (ih, iw), (h, w))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    images = np.empty((count, h, w), stack.dtype)
    for k, i in enumerate(order):
        y, x = int(rng.integers(0, ih - h + 1)), int(rng.integers(0, iw - w + 1))
        images[k] = stack[int(i)][y:y + h, x:x + w]
    return _write(folder, digest, request, images, str(source))


def _write(folder: Path, digest: str, request: dict[str, Any], images: np.ndarray, source: str | None) -> CalibSet:
    with atomic_dir(folder) as tmp:
        np.save(tmp / "images.npy", images)
        write_json(tmp / "manifest.json", {"kind": "calibration", "hash": digest, "request": request,
                                            "shape": list(images.shape), "dtype": str(images.dtype),
                                            "source": source, "sha256": sha256_file(tmp / "images.npy")})
    return CalibSet(folder, digest, images, reused=False, source=source)


def _read(folder: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
    """A cached set if it is complete and intact, else None (it is then made again)."""
    try:
        meta = read_json(folder / "manifest.json")
        if sha256_file(folder / "images.npy") != meta["sha256"]:
            return None
        images = np.load(folder / "images.npy")
    except (OSError, ValueError, KeyError):
        return None
    if images.shape != tuple(shape) or images.dtype not in (np.uint8, np.uint16):
        return None
    return images
