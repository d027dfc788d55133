"""Progress reporting without printing: library code calls a callback, the CLI renders it with rich."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """``progress(done, total, message)``; total may be None when unknown."""

    def __call__(self, done: int, total: int | None, message: str = "") -> None: ...


def silent(done: int, total: int | None, message: str = "") -> None:
    """The default callback: library calls stay quiet unless the caller asks for progress."""
