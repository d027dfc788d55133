"""Atomic artifact writing and the JSON manifest that sits beside every artifact.

Every file edgeseg produces (dataset, model, ONNX, engine, report) is written to a temporary file in the
same folder and renamed into place, so a crash never leaves half an artifact; and every artifact gets a
``<artifact>.json`` (or ``manifest.json`` for folders) saying how it was made: config, versions, input
hashes, time and machine.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeseg import __version__
from edgeseg.errors import EdgesegError

# Packages whose versions are recorded in every manifest (those not installed are skipped).
_RECORDED = ("numpy", "cv2", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "tensorrt", "pycuda")


def check_writable(path: str | os.PathLike) -> None:
    """Raise a one-line :class:`EdgesegError` when ``path`` cannot be written: a file where one of its folders
    would be, or a folder without write permission. Nothing is created; commands call it before long work."""
    path = Path(path)
    folder = path.parent.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise EdgesegError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise EdgesegError(f"cannot write {path}: no permission to write in {folder}")


def _writable_parent(path: Path) -> None:
    """Create ``path``'s folder, or say in one line why it cannot be."""
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgesegError(f"cannot write {path}: {e.strerror or e}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the file ending for writers that choose the format from it (Keras, cv2).
    """
    path = Path(path)
    _writable_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    _writable_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. numpy scalars and Paths are converted."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    return write_bytes(path, text.encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "value"):  # enums
        return o.value
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path(artifact: str | os.PathLike) -> Path:
    """Where the manifest of ``artifact`` lives: ``model.onnx`` → ``model.onnx.json``;
    a folder → ``folder/manifest.json``."""
    p = Path(artifact)
    return p / "manifest.json" if p.is_dir() else p.with_name(p.name + ".json")


def read_manifest(artifact: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest beside ``artifact``, or None when it has none.

    A manifest that is not a JSON object, or that names another sha256 than the artifact's file (the file was
    replaced after its manifest was written, or a crash came between writing the two), is refused in one line:
    its threshold and mask rule belong to another model.
    """
    p = Path(artifact)
    mpath = manifest_path(p)
    if not mpath.is_file():
        return None
    try:
        record = read_json(mpath)
    except (ValueError, OSError):
        raise EdgesegError(f"{mpath} is not a valid manifest (bad JSON); re-export the model") from None
    if not isinstance(record, dict):
        raise EdgesegError(f"{mpath} is not a valid manifest (not a JSON object); re-export the model")
    expected = record.get("sha256")
    if isinstance(expected, str) and p.is_file() and sha256_file(p) != expected:
        raise EdgesegError(f"{mpath} was written for another {p.name} (its sha256 differs): the file changed "
                           "after its manifest; re-export it or refit it with edgeseg operating-point")
    return record


def environment() -> dict[str, Any]:
    """Machine and package versions, recorded in every manifest."""
    from edgeseg.deps import versions

    return {
        "edgeseg": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions(*_RECORDED),
    }


def manifest(kind: str, config: dict[str, Any], inputs: dict[str, str] | None = None, **extra: Any) -> dict:
    """A manifest record: what kind of artifact, the config that made it, hashes of its inputs."""
    return {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "inputs": inputs or {},
        "environment": environment(),
        **extra,
    }


def write_manifest(artifact: str | os.PathLike, kind: str, config: dict[str, Any],
                   inputs: dict[str, str] | None = None, **extra: Any) -> Path:
    """Write the manifest beside ``artifact`` (including the artifact's own sha256 when it is a file)."""
    p = Path(artifact)
    if p.is_file():
        extra.setdefault("sha256", sha256_file(p))
    return write_json(manifest_path(p), manifest(kind, config, inputs, **extra))
