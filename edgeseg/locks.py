"""One writer per output: a lock file beside each output, and the clean-up of what a killed writer left.

Every artifact is written by :func:`edgeseg.artifacts.atomic_path` / :func:`~edgeseg.artifacts.atomic_dir`
to ``.<name>.<random>`` beside it and renamed into place. Both hold :func:`lock` on the output while they
write, and commands take it earlier for all their outputs (:func:`edgeseg.outputs.claim`), so two commands
writing one output never both succeed: the second is refused in one line while the first holds it.

A writer killed with SIGKILL (or by a power cut) cannot remove its temporary file or folder; whoever takes
the lock next removes it, since no one else can be writing it then. The lock file itself is removed when it
is released (a waiter that opened the old one notices and opens the new one), so a finished command leaves
nothing hidden behind.

    with lock("data/seed"):      # refused at once if another process holds it
        ...
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from edgeseg.errors import EdgesegError

# Locks this process holds: key → [fd, depth]. Re-entrant, because a command holds its outputs' locks while
# the atomic writers it calls take them again (flock would refuse a second open file in one process).
_held: dict[str, list[int]] = {}
_guard = threading.Lock()


def lock_path(path: str | os.PathLike) -> Path:
    """``data/seed`` → ``data/.seed.lock``."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def _key(path: Path) -> str:
    # The lock lives beside the name the user gave, so a symlinked output is keyed by its own folder.
    return os.path.join(os.path.realpath(path.parent), path.name)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _acquire(path: Path) -> int:
    """An fd holding an exclusive flock on ``path``'s lock file; refused at once when another holds it."""
    lockfile = lock_path(path)
    for _ in range(100):
        try:
            fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise EdgesegError(f"cannot write {path}: {e.strerror or e} (while creating {lockfile})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise EdgesegError(f"{path} is being written by another edgeseg command{holder}; wait for it to "
                               "finish, or choose another path") from None
        # The previous holder unlinks the file before releasing it: a lock on an unlinked file guards nothing.
        try:
            st, now = os.fstat(fd), os.stat(lockfile)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    else:  # pragma: no cover - a lock file replaced a hundred times in a row
        raise EdgesegError(f"cannot lock {lockfile}: it keeps being replaced; try again")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(lock_path(path))  # while still holding it, see _acquire
    os.close(fd)


@contextlib.contextmanager
def lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of output ``path`` (``.<name>.lock`` beside it; its folder must exist) for the block.

    Another process holding it makes this raise an :class:`EdgesegError` at once, naming its pid. The first
    acquisition in this process also removes what a killed writer of ``path`` left (:func:`remove_stale`).
    """
    path = Path(path)
    key = _key(path)
    with _guard:
        entry = _held.get(key)
        if entry is None:
            entry = _held[key] = [_acquire(path), 0]
            first = True
        else:
            first = False
        entry[1] += 1
    try:
        if first:
            remove_stale(path)
        yield
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                _release(path, entry[0])


def stale_pattern(name: str) -> re.Pattern[str]:
    """What writers of ``name`` leave when killed: ``.<name>.<8 random characters>[suffix]`` (tempfile's
    mkstemp/mkdtemp names) and ``.<name>.old`` (the previous folder, mid-swap)."""
    return re.compile(rf"\.{re.escape(name)}\.(?:[a-z0-9_]{{8}}(?:\..*)?|old)")


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders killed writers of ``path`` left beside it; returns them.

    Call it only while holding :func:`lock` on ``path``. A ``.<name>.old`` with no ``<name>`` beside it is the
    previous artifact of a writer killed between its two renames: it is put back, not removed.
    """
    path = Path(path)
    pattern = stale_pattern(path.name)
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return removed
    for entry in entries:
        p = Path(entry.path)
        try:
            if entry.name == f".{path.name}.old" and not os.path.lexists(path):
                os.replace(p, path)
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass  # not ours to remove after all (permissions): the writer's own temp names never collide
    return removed
