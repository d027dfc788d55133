"""Range checks for numbers a user gives: one line naming the option, the allowed range and the value.

NaN passes every comparison that is not written for it (``not 0 <= nan <= 1`` is True, but ``nan < 0`` is
False), and infinity passes every lower bound; both end up in manifests as invalid JSON or in integer
conversions as tracebacks. So every number a command or a config takes goes through here:

    finite("--fa-budget", 0.005, 0, 1, hi_open=True)       # → 0.005
    whole("--image-size", 100000, 16, 4096)                  # EdgesegError: --image-size must be ...
    finite_range("--contrast", (3, float("inf")), -255, 255)

A seed is :data:`SEED_MAX` at most: NumPy takes any non-negative integer, but manifests and other tools
(TensorFlow's, JSON readers that parse numbers as doubles) keep 63 bits at best.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

from edgeseg.errors import EdgesegError

SEED_MAX = 2**63 - 1


def seed(name: str, value: Any) -> int:
    """A random seed: an integer from 0 to :data:`SEED_MAX`."""
    return whole(name, value, 0, SEED_MAX)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def finite(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, unit: str = "") -> float:
    """``value`` as a float when it is a finite number within [lo, hi] (or open ends), else one line."""
    unit = f" {unit}" if unit else ""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    ok = (not isinstance(value, bool) and math.isfinite(x)
          and (lo is None or (x > lo if lo_open else x >= lo))
          and (hi is None or (x < hi if hi_open else x <= hi)))
    if not ok:
        raise EdgesegError(f"{name} must be {_interval(lo, hi, lo_open, hi_open)}{unit}, got {_shown(value)}")
    return x


def whole(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, unit: str = "",
          why: str = "") -> int:
    """``value`` as an int when it is an integer within [lo, hi], else one line (``why`` says why the bound)."""
    unit = f" {unit}" if unit else ""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
          and (lo is None or value >= lo) and (hi is None or value <= hi))
    if not ok:
        if lo is not None and hi is not None:
            bounds = f"an integer from {lo:,} to {hi:,}"
        elif lo is not None:
            bounds = f"an integer >= {lo:,}"
        else:
            bounds = f"an integer <= {hi:,}" if hi is not None else "an integer"
        raise EdgesegError(f"{name} must be {bounds}{unit}{f' ({why})' if why else ''}, got {value!r}")
    return int(value)


def finite_range(name: str, pair: tuple[Any, Any], lo: float | None = None, hi: float | None = None, *,
                 unit: str = "") -> tuple[float, float]:
    """A (low, high) pair of finite numbers within [lo, hi] with low <= high, else one line."""
    unit = f" {unit}" if unit else ""
    a, b = pair
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        x = y = math.nan
    if not (math.isfinite(x) and math.isfinite(y) and (lo is None or x >= lo) and (hi is None or y <= hi)):
        raise EdgesegError(f"{name} must be LO:HI with both ends {_interval(lo, hi, False, False)}{unit}, "
                           f"got {_shown(a)}:{_shown(b)}")
    if x > y:
        raise EdgesegError(f"{name}: low end {_shown(a)} is above high end {_shown(b)}")
    return x, y


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get without swapping (Linux's MemAvailable, else the free
    physical pages), or None where neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def fits_memory(name: str, need: int, what: str) -> None:
    """One line when ``need`` bytes (``what`` says for what) exceed the memory available now."""
    have = available_memory()
    if have is not None and need > have:
        raise EdgesegError(f"{name} needs about {need / 2**30:.1f} GiB for {what}, more than the "
                           f"{have / 2**30:.1f} GiB of memory available; choose a smaller value")
