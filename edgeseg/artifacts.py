"""Atomic artifact writing and the JSON manifest that sits beside every artifact.

Every file edgeseg produces (dataset, model, ONNX, engine, report) is written to a temporary file in the
same folder and renamed into place, so a crash never leaves half an artifact: a full disk is one line and
the temporary file is removed, and one that a killed writer left is removed by the next writer (see
:mod:`edgeseg.locks`). Files get the permissions the umask gives, like any file the user creates.
Every artifact gets a ``<artifact>.json`` (or ``manifest.json`` for folders) saying how it was made:
config, versions, input hashes, time and machine.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
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


class WriteError(EdgesegError):
    """Writing an artifact failed (disk full, quota, read-only file system…); nothing half-written is left."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot write {path}: {reason}")
        self.path, self.reason = Path(path), reason


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, racing other threads' files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _reason(e: OSError) -> str:
    text = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        text += " (free some space or choose another path)"
    return text


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
        if _read_only(folder):
            raise EdgesegError(f"cannot write {path}: {folder} is on a read-only file system")
        raise EdgesegError(f"cannot write {path}: no permission to write in {folder}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _writable_parent(path: Path) -> None:
    """Create ``path``'s folder, or say in one line why it cannot be."""
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(path, _reason(e)) from None


def _remove(path: Path) -> None:
    """Remove a file or a folder tree, if there is one."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the file ending for writers that choose the format from it (Keras, cv2). The output's
    lock is held meanwhile (:func:`edgeseg.locks.lock`); the file gets the permissions of the umask, like any
    file the user creates; an OSError (disk full, quota, read-only) becomes a :class:`WriteError`, and the
    temporary file is removed whatever happens.
    """
    from edgeseg.locks import lock

    path = Path(path)
    _writable_parent(path)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise WriteError(path, f"it is {'a folder' if path.is_dir() else 'not a regular file'}")
    with lock(path):
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
            os.close(fd)
        except OSError as e:
            raise WriteError(path, _reason(e)) from None
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes it 0600: others could not read the model
            os.replace(tmp_path, path)
        except OSError as e:
            raise WriteError(path, _reason(e)) from None
        finally:
            _remove(tmp_path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    As :func:`atomic_path`: the lock is held, the folder gets the umask's permissions, OSErrors become a
    :class:`WriteError` and the temporary folder is removed. The previous folder is moved to ``.<name>.old``
    for the swap; a failed or interrupted swap puts it back.
    """
    from edgeseg.locks import lock

    path = Path(path)
    _writable_parent(path)
    with lock(path):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        except OSError as e:
            raise WriteError(path, _reason(e)) from None
        old = path.with_name(f".{path.name}.old")
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it 0700
            if os.path.lexists(path):
                os.replace(path, old)
            os.replace(tmp, path)
        except OSError as e:
            raise WriteError(path, _reason(e)) from None
        except WriteError as e:  # a file inside the temporary folder: name the folder the user asked for
            raise WriteError(path, e.reason) from None
        finally:
            if not os.path.lexists(path) and os.path.lexists(old):
                os.replace(old, path)
            _remove(old)
            _remove(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. numpy scalars and Paths are converted."""
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    return write_bytes(path, text.encode())


def write_figure(path: str | os.PathLike, fig: Any, dpi: float | str = 110) -> Path:
    """A matplotlib figure as a PNG at ``path``, written atomically; the figure is closed either way."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


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

    A manifest that is not a JSON object, or (for a file) that names no sha256 or another sha256 than the
    artifact's (the file was replaced after its manifest was written, or a crash came between writing the two),
    is refused in one line: nothing says its threshold, mask rule and precision belong to this file.
    """
    p = Path(artifact)
    mpath = manifest_path(p)
    if not os.path.lexists(mpath):
        return None
    if not mpath.is_file():
        raise EdgesegError(f"{mpath} is not a manifest (it is {'a folder' if mpath.is_dir() else 'not a file'}); "
                           f"remove it and re-export {p.name}, or refit it with edgeseg operating-point")
    try:
        record = read_json(mpath)
    except (ValueError, OSError):
        raise EdgesegError(f"{mpath} is not a valid manifest (bad JSON); re-export the model") from None
    if not isinstance(record, dict):
        raise EdgesegError(f"{mpath} is not a valid manifest (not a JSON object); re-export the model")
    if p.is_file():
        expected = record.get("sha256")
        if not isinstance(expected, str):
            raise EdgesegError(f"{mpath} names no sha256 of {p.name}, so nothing says it was written for this file; "
                               "re-export the model, or remove the manifest and refit it with edgeseg operating-point")
        if _sha256_cached(p) != expected:
            raise EdgesegError(f"{mpath} was written for another {p.name} (its sha256 differs): the file changed "
                               "after its manifest; re-export it, or remove the manifest and refit it with "
                               "edgeseg operating-point")
    return record


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return sha256_file(path)


def _sha256_cached(path: Path) -> str:
    """sha256 of ``path``, hashed once per version of the file (a command reads a model's manifest several
    times: threshold, mask rule, precision)."""
    st = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


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
    """Write the manifest beside ``artifact`` (including the artifact's own sha256 when it is a file).

    Called right after the artifact is written. When the manifest cannot be written (disk full), the artifact
    is removed as well: a model without its manifest would run at the default threshold and mask rule.
    """
    p = Path(artifact)
    if p.is_file():
        extra.setdefault("sha256", sha256_file(p))
    try:
        return write_json(manifest_path(p), manifest(kind, config, inputs, **extra))
    except WriteError as e:
        if p.is_file():
            _remove(p)
            raise WriteError(e.path, f"{e.reason}; removed {p} too (without its manifest it would run at the "
                             "default threshold)") from None
        raise
