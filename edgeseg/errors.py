"""Errors a user can cause and fix. The CLI turns these into one line on stderr and exit code 1;
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class EdgesegError(Exception):
    """A user-facing error: bad input, a missing file, a wrong option. The message says what to do."""


class MissingDependency(EdgesegError):
    """An optional package is not installed; the message names the extra that brings it."""


class BadInput(EdgesegError):
    """Input data that cannot be used (corrupt image, wrong shape, non-binary label, empty folder)."""
