"""Datasets on disk: writing generated sets and reading labelled or unlabelled image folders.

Our layout (written by ``edgeseg generate``)::

    DIR/images/<n>.png   DIR/labels/<n>.png (0/255)   DIR/manifest.json

The seed's layout is read too: ``DIR/<n>.png`` with labels in ``DIR/label/<n>.png``. Every problem with the
files (corrupt or truncated PNG, colour image, sizes or bit depths that differ, a label that is not 8-bit
binary, a missing label, an empty folder) raises :class:`BadInput` with one line naming the file, so the CLI
can say exactly what to fix.

Images are 8- or 16-bit grayscale (PNG, TIFF, …) of any size, one size and one bit depth per folder; they are
read as stored (uint8 or uint16) and become gray levels only where a model takes them
(:func:`edgeseg.data.depth.to_levels`). Labels are 8-bit: 0/255 or 0/1.

A set is checked whole when it is opened, then read from disk as it is used: ``ds.images`` and ``ds.masks``
are :class:`ImageStack` s, and the commands that score a set walk it ``CHUNK`` images at a time
(:meth:`Dataset.chunks`), so their memory does not grow with the number of images.

    ds = load_dataset("data/test")       # ds.images (N, H, W) uint8|uint16, ds.masks (N, H, W) {0, 1}, lazily
    for part in ds.chunks():             # in-memory Datasets of up to CHUNK images
        part.images, part.masks
    write_dataset("data/new", preset("test"), count=50, seed=7)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.artifacts import atomic_dir, manifest, read_json, write_json
from edgeseg.data import depth
from edgeseg.data.synth import GENERATOR_VERSION, SynthConfig, generate
from edgeseg.errors import BadInput
from edgeseg.progress import Progress, silent
from edgeseg.validate import seed as check_seed
from edgeseg.validate import whole

IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Images a streaming command holds at a time. 64 images of 256² keep a chunk's arrays (images, labels,
#: probabilities, component labels, histogram indices) near 100 MB; larger chunks buy no speed, because
#: inference runs in batches of its own size and the metrics work image by image.
CHUNK = 64


def chunk_for(shape: tuple[int, ...], size: int = CHUNK) -> int:
    """Images of ``shape`` (H, W) a chunk holds: ``size`` up to 256², fewer for larger images so that a chunk
    keeps the memory of ``size`` 256² images (4 images of 1024²); at least one."""
    h, w = (int(v) for v in shape[-2:])
    return max(1, min(size, size * 256 * 256 // max(1, h * w)))
#: Most images one set may have (about 10 GB of 256² PNGs).
MAX_COUNT = 10_000_000


class ImageStack:
    """The (N, H, W) uint8 or uint16 images — or labels — of a folder, read from disk when indexed, so that a stack of any
    length costs only the memory of the slice in hand.

    ``stack[i]`` is one (H, W) image, ``stack[a:b]`` (or a list of indices) an (n, H, W) array, iteration yields
    one image at a time, and ``np.asarray(stack)`` reads them all (for small sets and tests).
    """

    def __init__(self, read: Callable[[int], np.ndarray], count: int, size: tuple[int, int],
                 dtype: np.dtype | type = np.uint8):
        self._read = read
        self.shape = (count, *size)
        self.dtype = np.dtype(dtype)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._stack(range(*index.indices(len(self))))
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"image {index} of a stack of {len(self)}")
            return self._read(i)
        return self._stack([int(i) for i in np.asarray(index).ravel()])

    def _stack(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        for k, i in enumerate(indices):
            out[k] = self[i]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._read(i)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def any(self) -> bool:
        """Whether any pixel is nonzero (for labels: whether the set has a defect), stopping at the first."""
        return any(img.any() for img in self)


@dataclass
class Dataset:
    """Images with their masks plus what the manifest says about them (when there is one).

    ``images`` and ``masks`` are arrays or, for a set opened from disk, :class:`ImageStack` s of the same shape.
    """

    images: np.ndarray | ImageStack  # (N, H, W) uint8 or uint16
    masks: np.ndarray | ImageStack  # (N, H, W) uint8 in {0, 1}
    names: list[str]
    #: Per image, the drawn defects (x, y, w, h, shape, contrast, angle) from the manifest, else None.
    defects: list[list[dict]] | None
    #: The generator config from the manifest, else None.
    config: dict[str, Any] | None
    path: Path

    def __len__(self) -> int:
        return len(self.names)

    def chunks(self, size: int = CHUNK) -> Iterator[Dataset]:
        """The set as consecutive in-memory Datasets of up to ``size`` images each (the last may be shorter),
        read from disk one chunk at a time."""
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        for start in range(0, len(self), size):
            part = slice(start, start + size)
            yield Dataset(np.asarray(self.images[part]), np.asarray(self.masks[part]), self.names[part],
                          None if self.defects is None else self.defects[part], self.config, self.path)


def natural_key(name: str) -> list:
    """Sort key so that 2.png comes before 10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# -- reading ------------------------------------------------------------------------------------------
def read_gray(path: Path) -> np.ndarray:
    """One 8- or 16-bit grayscale image (uint8 or uint16, as stored); BadInput naming the file when it cannot be
    used as one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    if path.suffix.lower() == ".png":
        if not data.startswith(_PNG_SIGNATURE):
            raise BadInput(f"{path} is not a PNG file (corrupt or wrong format)")
        # libpng may decode a file cut short after the pixel data without complaint; a complete PNG
        # always ends with the IEND chunk.
        if b"IEND" not in data[-12:]:
            raise BadInput(f"{path} is truncated (no PNG end marker); regenerate or re-copy it")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise BadInput(f"{path} is corrupt or not an image OpenCV can read")
    if img.dtype not in depth.DEPTHS:
        raise BadInput(f"{path} has {img.dtype} pixels; edgeseg reads 8- or 16-bit grayscale images")
    if img.ndim == 3:
        color = img[..., :3]
        if not (np.array_equal(color[..., 0], color[..., 1]) and np.array_equal(color[..., 0], color[..., 2])):
            raise BadInput(f"{path} is a colour image; edgeseg reads grayscale images (save it as "
                           f"{depth.bits(img.dtype)}-bit gray)")
        img = np.ascontiguousarray(color[..., 0])
    if img.ndim != 2:
        raise BadInput(f"{path} has {img.shape[2] if img.ndim == 3 else img.ndim} channels; edgeseg reads "
                       "grayscale images")
    return img


def read_label(path: Path, shape: tuple[int, ...], image: Path) -> np.ndarray:
    """A binary 8-bit label (0/255 or 0/1) as a {0, 1} mask of ``shape``."""
    lab = read_gray(path)
    if lab.dtype != np.uint8:
        raise BadInput(f"{path} is a {depth.bits(lab.dtype)}-bit label; labels are 8-bit binary images (0 and 255, "
                       "or 0 and 1): save it as 8-bit")
    if lab.shape != shape:
        raise BadInput(f"{path} is {lab.shape[1]}x{lab.shape[0]} but its image {image.name} is {shape[1]}x{shape[0]}")
    values = np.unique(lab)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise BadInput(f"{path} is not a binary label: values {shown} (expected 0 and 255, or 0 and 1)")
    return (lab > 0).astype(np.uint8)


def image_dir(path: str | Path) -> Path:
    """The folder holding the images: DIR/images (our layout) or DIR itself (the seed's)."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p} does not exist")
    if not p.is_dir():
        raise BadInput(f"{p} is not a folder")
    return p / "images" if (p / "images").is_dir() else p


def label_dir(path: str | Path) -> Path | None:
    """The folder holding the labels (DIR/labels, or the seed's DIR/label), or None when there is none."""
    p = Path(path)
    for name in ("labels", "label"):
        if (p / name).is_dir():
            return p / name
    return None


def _image_files(folder: Path, limit: int | None) -> list[Path]:
    for f in folder.iterdir():
        if f.suffix.lower() in IMAGE_SUFFIXES and f.is_symlink() and not f.exists():
            raise BadInput(f"{f} is a link to {os.readlink(f)}, which does not exist; fix the link or remove it")
    files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                    and not f.name.startswith(".")), key=lambda f: natural_key(f.name))
    if not files:
        raise BadInput(f"no images in {folder} (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return files[:limit] if limit else files


def list_images(path: str | Path, limit: int | None = None) -> list[Path]:
    """The image files of a folder (either layout), natural-sorted; BadInput when there are none."""
    return _image_files(image_dir(path), limit)


def _same_size(shapes: list[tuple[int, ...]], files: list[Path]) -> tuple[int, int]:
    first = shapes[0]
    for shape, f in zip(shapes, files):
        if shape != first:
            raise BadInput(
                f"{f} is {shape[1]}x{shape[0]} but {files[0].name} is {first[1]}x{first[0]}; "
                "all images of a set must have the same size"
            )
    return first[0], first[1]


def _same_depth(dtypes: list[np.dtype], files: list[Path]) -> np.dtype:
    first = dtypes[0]
    for dtype, f in zip(dtypes, files):
        if dtype != first:
            raise BadInput(f"{f} is {depth.bits(dtype)}-bit but {files[0].name} is {depth.bits(first)}-bit; "
                           "a set has one bit depth (convert them all to 8- or to 16-bit)")
    return first


def _checked_images(files: list[Path]) -> tuple[tuple[int, int], np.dtype]:
    """Read every image once (and let it go) so that a bad file fails now, not halfway through a run; their
    common (H, W) and pixel type."""
    shapes, dtypes = [], []
    for f in files:
        img = read_gray(f)
        shapes.append(img.shape)
        dtypes.append(img.dtype)
    return _same_size(shapes, files), _same_depth(dtypes, files)


def _reader(files: list[Path], size: tuple[int, int], dtype: np.dtype) -> Callable[[int], np.ndarray]:
    def read(i: int) -> np.ndarray:
        img = read_gray(files[i])
        if img.shape != size:  # the file changed since the set was checked
            raise BadInput(f"{files[i]} is {img.shape[1]}x{img.shape[0]} but the set's images are "
                           f"{size[1]}x{size[0]}")
        if img.dtype != dtype:
            raise BadInput(f"{files[i]} is {depth.bits(img.dtype)}-bit but the set's images are "
                           f"{depth.bits(dtype)}-bit")
        return img

    return read


def open_images(path: str | Path, limit: int | None = None) -> tuple[ImageStack, list[str]]:
    """Unlabelled images of a folder (either layout), natural-sorted and checked, read lazily: (stack, names)."""
    files = _image_files(image_dir(path), limit)
    size, dtype = _checked_images(files)
    return ImageStack(_reader(files, size, dtype), len(files), size, dtype), [f.name for f in files]


def load_images(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Unlabelled images of a folder (either layout), natural-sorted, in memory: ((N, H, W) uint8 or uint16,
    names)."""
    files = _image_files(image_dir(path), limit)
    images = [read_gray(f) for f in files]
    _same_size([img.shape for img in images], files)
    _same_depth([img.dtype for img in images], files)
    return np.stack(images), [f.name for f in files]


def _find_label(labels: Path, image: Path) -> Path:
    exact = labels / image.name
    if exact.is_file():
        return exact
    for suffix in (".png", ".PNG"):
        alt = labels / (image.stem + suffix)
        if alt.is_file():
            return alt
    raise BadInput(f"no label for {image}: expected {exact}")


def load_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    """A labelled set in our layout or the seed's, with or without a manifest (see the module docstring).

    Every image and label is read once here and checked (a bad file fails before any model runs), but none
    is kept: the returned set reads them again as it is used (:class:`ImageStack`).
    """
    root = Path(path)
    folder = image_dir(root)
    labels = label_dir(root)
    if labels is None:
        raise BadInput(f"{root} has no labels: expected {root / 'labels'} (or the seed's {root / 'label'})")
    files = _image_files(folder, limit)
    size, dtype = _checked_images(files)
    label_files = []
    for f in files:
        label_files.append(_find_label(labels, f))
        read_label(label_files[-1], size, f)

    def read_mask(i: int) -> np.ndarray:
        return read_label(label_files[i], size, files[i])

    names = [f.name for f in files]
    defects, config = _manifest_info(root, names)
    return Dataset(ImageStack(_reader(files, size, dtype), len(files), size, dtype),
                   ImageStack(read_mask, len(files), size), names, defects, config, root)


def load_good(path: str | Path, limit: int | None = None) -> Dataset:
    """Defect-free images: a labelled set (the caller checks that its labels are empty), or a folder of
    unlabelled images in either layout — what a line collects from parts that passed — taken as defect-free."""
    if label_dir(path) is not None:
        return load_dataset(path, limit)
    images, names = open_images(path, limit)
    size = images.shape[1:]
    return Dataset(images, ImageStack(lambda i: np.zeros(size, np.uint8), len(images), size), names, None, None,
                   Path(path))


def _manifest_info(root: Path, names: list[str]) -> tuple[list[list[dict]] | None, dict | None]:
    mpath = root / "manifest.json"
    if not mpath.is_file():
        return None, None
    try:
        m = read_json(mpath)
    except (ValueError, OSError) as e:
        raise BadInput(f"{mpath} is not valid JSON ({e}); delete it or regenerate the set") from None
    images = m.get("images") if isinstance(m, dict) else None
    if not isinstance(m, dict) or not isinstance(images, (list, type(None))) or not isinstance(
            m.get("config"), (dict, type(None))):
        raise BadInput(f"{mpath} is not a dataset manifest (a JSON object with an images list and a config "
                       "object); delete it or regenerate the set")
    config = (m.get("config") or {}).get("generator")
    config = config if isinstance(config, dict) else None
    per_image = {e.get("name"): e.get("defects") for e in (images or []) if isinstance(e, dict)}
    if not all(isinstance(per_image.get(n), list) for n in names):
        return None, config  # a manifest that does not describe every image is not used for breakdowns
    return [per_image[n] for n in names], config


# -- writing ------------------------------------------------------------------------------------------
def ensure_replaceable(path: str | Path, kind: str) -> None:
    """Refuse to overwrite anything but an earlier artifact of the same ``kind`` (or an empty folder), so
    that ``--out`` pointing at the wrong folder never deletes someone's files."""
    p = Path(path)
    if not p.exists():
        return
    if not p.is_dir():
        raise BadInput(f"{p} exists and is not a folder; choose another --out")
    if not any(p.iterdir()):
        return
    m = p / "manifest.json"
    try:
        ok = m.is_file() and read_json(m).get("kind") == kind
    except (ValueError, OSError, AttributeError):
        ok = False
    if not ok:
        raise BadInput(f"{p} exists and is not an edgeseg {kind} folder; refusing to overwrite it (choose another --out)")


def write_pair(tmp: Path, out: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    """``image`` and its {0, 1} ``mask`` as ``images/name`` and ``labels/name`` (0/255) of a set being written in
    ``tmp`` (to become ``out``); one line naming the file when the disk refuses."""
    if not (cv2.imwrite(str(tmp / "images" / name), image)
            and cv2.imwrite(str(tmp / "labels" / name), mask * np.uint8(255))):
        raise BadInput(f"could not write {out / 'images' / name} (disk full or not writable?)")


def write_set(out: str | Path, count: int, seed: int, draw: Callable[[np.random.Generator], tuple],
              config: dict[str, Any], progress: Progress = silent) -> Path:
    """``count`` images drawn one by one with ``draw(rng) -> (image, mask, record)`` from rng ``seed`` into ``out``
    (replaced atomically when complete): images/<n>.png, labels/<n>.png (0/255), and manifest.json with ``config``
    and, per image, its name and ``record``."""
    whole("count", count, 1, MAX_COUNT)
    check_seed("seed", seed)
    out = Path(out)
    ensure_replaceable(out, "dataset")
    rng = np.random.default_rng(seed)
    records = []
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for i in range(count):
            image, mask, record = draw(rng)
            name = f"{i}.png"
            write_pair(tmp, out, name, image, mask)
            records.append({"name": name, **record})
            progress(i + 1, count, name)
        write_json(tmp / "manifest.json", manifest("dataset", config, images=records))
    return out


def write_dataset(out: str | Path, cfg: SynthConfig, count: int, seed: int,
                  progress: Progress = silent, bits: int = 8) -> Path:
    """Generate ``count`` images with ``cfg`` from ``seed`` into ``out`` (replaced atomically when complete).

    Writes images/<n>.png (``bits`` 16: each level × 257, the same images in 16-bit files, for a line whose camera
    writes 16 bits), labels/<n>.png (0/255) and manifest.json: the generator config and version,
    the seed, and per image its defects (boxes, shapes, contrasts) and the per-image draws (noise, level,
    illumination), so a set can be regenerated bit for bit and metrics can be broken down by contrast.
    """
    if bits not in (8, 16):
        raise BadInput(f"--bits must be 8 or 16, got {bits}")

    def draw(rng: np.random.Generator) -> tuple:
        s = generate(rng, cfg)
        image = s.image if bits == 8 else s.image.astype(np.uint16) * np.uint16(257)
        return image, s.mask, {"defects": [d.to_dict() for d in s.defects], "info": s.info}

    config = {"generator": cfg.to_dict(), "generator_version": GENERATOR_VERSION, "seed": seed, "count": count,
              **({"bits": 16, "note": "each 8-bit level x 257: the same images in 16-bit files"} if bits == 16 else {})}
    return write_set(out, count, seed, draw, config, progress)
