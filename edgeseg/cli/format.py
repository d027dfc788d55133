"""Numbers in table cells, the same way in every command: a value that is not there (None) is ``-``.

    num(0.91234)        # '0.912'
    num(0.0123, 4)      # '0.0123'
    pct(0.025)          # '2.5%'
    signed(-0.0042, 4)  # '-0.0042'
    sig(0.30000001)     # '0.3' (thresholds)
    sci(3.2e-05)        # '3.2e-05' (probability differences)
"""

from __future__ import annotations

MISSING = "-"


def num(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals."""
    return MISSING if v is None else f"{v:.{digits}f}"


def pct(v: float | None, digits: int = 1) -> str:
    """A rate (0..1) as a percentage with ``digits`` decimals."""
    return MISSING if v is None else f"{100 * v:.{digits}f}%"


def signed(v: float | None, digits: int = 3) -> str:
    """A difference, with its sign always shown."""
    return MISSING if v is None else f"{v:+.{digits}f}"


def sig(v: float | None, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, trailing zeros dropped (a threshold: 0.3, 0.425)."""
    return MISSING if v is None else f"{v:.{digits}g}"


def sci(v: float | None, digits: int = 1) -> str:
    """``v`` in scientific notation (a tiny difference: 3.2e-05)."""
    return MISSING if v is None else f"{v:.{digits}e}"
