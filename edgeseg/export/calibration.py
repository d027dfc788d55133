"""Generated INT8 calibration sets, cached on disk by what was asked for.

INT8 scales are set from the activations a few hundred images produce. Those images are *generated* by the
synthetic generator (never taken from a test set, which would leak the test into the model) in one of three
mixes — ``defect`` (every image has defects), ``background`` (defect-free), ``mixed`` (half each) — and saved
as one ``images.npy`` under ``calib/<hash>/`` with a ``manifest.json`` (generator config, seed, count,
sha256), where ``<hash>`` is the hash of the request. The same request finds the same folder and reuses it,
so an INT8 model can be rebuilt from exactly the images it was calibrated on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from edgeseg.artifacts import atomic_dir, read_json, sha256_file, write_json
from edgeseg.errors import EdgesegError

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
    images: np.ndarray  # (count, S, S) uint8
    reused: bool


def calib_config(image_size: int, mix: CalibMix | str, preset_name: str = "test"):
    """The generator config for a calibration mix: the deployment distribution (``test`` preset: 1–2
    defects of contrast 3–4, uniform noise) with the mix's fraction of defect-free images."""
    from edgeseg.data.synth import preset
    from edgeseg.export.onnx import sized

    mix = CalibMix(mix)
    return sized(preset(preset_name), image_size).replace(good_fraction=_GOOD_FRACTION[mix])


def calibration_set(image_size: int, count: int = DEFAULT_CALIB_COUNT, mix: CalibMix | str = CalibMix.mixed,
                    seed: int = 7, root: str | Path = DEFAULT_CALIB_ROOT, preset_name: str = "test") -> CalibSet:
    """The calibration images for this request, generated once and then read back from ``root/<hash>/``."""
    from edgeseg.data.synth import GENERATOR_VERSION, generate_batch

    if not 1 <= count <= MAX_CALIB_COUNT:
        raise EdgesegError(f"--calib-count must be between 1 and {MAX_CALIB_COUNT} (got {count})")
    try:
        mix = CalibMix(mix)
    except ValueError:
        raise EdgesegError(f"unknown calibration mix {mix!r}: choose one of "
                           f"{', '.join(m.value for m in CalibMix)}") from None
    cfg = calib_config(image_size, mix, preset_name)
    request = {"generator": cfg.to_dict(), "generator_version": GENERATOR_VERSION, "preset": preset_name,
               "mix": mix.value, "seed": seed, "count": count}
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = Path(root) / digest
    cached = _read(folder, count, image_size)
    if cached is not None:
        return CalibSet(folder, digest, cached, reused=True)
    images, _ = generate_batch(np.random.default_rng(seed), cfg, count)
    with atomic_dir(folder) as tmp:
        np.save(tmp / "images.npy", images)
        write_json(tmp / "manifest.json", {"kind": "calibration", "hash": digest, "request": request,
                                            "shape": list(images.shape),
                                            "sha256": sha256_file(tmp / "images.npy")})
    return CalibSet(folder, digest, images, reused=False)


def _read(folder: Path, count: int, image_size: int) -> np.ndarray | None:
    """A cached set if it is complete and intact, else None (it is then regenerated)."""
    try:
        meta = read_json(folder / "manifest.json")
        if sha256_file(folder / "images.npy") != meta["sha256"]:
            return None
        images = np.load(folder / "images.npy")
    except (OSError, ValueError, KeyError):
        return None
    if images.shape != (count, image_size, image_size) or images.dtype != np.uint8:
        return None
    return images
