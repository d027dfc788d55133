"""TensorFlow's start-up log lines, hidden on the command line (``edgeseg --verbose`` keeps them).

Importing TensorFlow prints a few lines to stderr from C++ before any Python code could stop it: absl's
"All log messages before absl::InitializeLog() ..." warning, "oneDNN custom operations are on ..." and
"This TensorFlow binary is optimized ...". They say nothing about the command, and a user reads them as
errors. ``TF_CPP_MIN_LOG_LEVEL=3`` (set only when the user has not set it) hides TensorFlow's own log; the
absl lines come before TensorFlow reads it, so the file descriptor of stderr is pointed at a temporary file
while ``tensorflow`` is imported, and whatever else was written meanwhile is written back. Only INFO and
WARNING lines in absl's format and the two lines above are dropped: errors pass.

Numerics are untouched: ``TF_ENABLE_ONEDNN_OPTS`` (oneDNN on or off changes round-off) is left as it is.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

#: absl's log line format: severity letter, MMDD, time, thread, file:line] (I = info, W = warning).
_ABSL_LINE = re.compile(rb"^[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] ")
_NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
          b"To enable the following instructions:")

_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
_set_level = False


def _noise(line: bytes) -> bool:
    return bool(_ABSL_LINE.match(line)) or line.startswith(_NOISE)


@contextlib.contextmanager
def _stderr_filtered() -> Iterator[None]:
    """Point fd 2 at a temporary file for the block, then write back what is not start-up noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().splitlines(keepends=True) if not _noise(line)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as usual and runs its import with :func:`_stderr_filtered`; used once."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        _uninstall()
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is not None and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module) -> None:
                with _stderr_filtered():
                    run(module)

            loader.exec_module = exec_module
        return spec


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietImport)]


def quiet() -> None:
    """Hide TensorFlow's start-up lines from here on (before TensorFlow is imported; a no-op after)."""
    global _set_level
    if "tensorflow" in sys.modules:
        return
    if _LEVEL not in os.environ:
        os.environ[_LEVEL] = "3"
        _set_level = True
    if not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def verbose() -> None:
    """Undo :func:`quiet`: TensorFlow logs as it would (``--verbose``)."""
    global _set_level
    _uninstall()
    if _set_level:
        os.environ.pop(_LEVEL, None)
        _set_level = False
