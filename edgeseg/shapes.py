"""Image shapes as a user writes them: ``HxW`` (``--shape 768x1280``) and TensorRT profile ranges
``MINHxMINW:OPTHxOPTW:MAXHxMAXW``, checked in one line each.

    parse_shape("768x1280")                       # → (768, 1280)
    check_shape((256, 257), multiple=4)           # BadInput: sides must be multiples of 4 (256x260 would do)
    parse_profile("256x256:1024x1024:2048x2048")  # → ((256, 256), (1024, 1024), (2048, 2048))
"""

from __future__ import annotations

import re

from edgeseg.errors import BadInput

#: Image sides edgeseg exports and builds for (the generator's range: parity images are drawn at that size).
MIN_SIDE, MAX_SIDE = 16, 4096

_SHAPE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")

Shape = tuple[int, int]


def parse_shape(text: str, option: str = "--shape") -> Shape:
    """``"HxW"`` → (H, W) (height first, as numpy and the camera's rows); one line if it is not two numbers."""
    m = _SHAPE.fullmatch(str(text))
    if not m:
        raise BadInput(f"{option} must be HEIGHTxWIDTH in pixels (e.g. 1024x1024 or 768x1280), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def round_up(n: int, multiple: int) -> int:
    return -(-int(n) // int(multiple)) * int(multiple)


def check_shape(shape: Shape, multiple: int = 1, option: str = "--shape", what: str = "the network") -> Shape:
    """``shape`` if both sides are within :data:`MIN_SIDE`..:data:`MAX_SIDE` and multiples of ``multiple``
    (what a network that pools or folds needs), else one line saying which shape would do."""
    h, w = (int(v) for v in shape)
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise BadInput(f"{option} {h}x{w}: each side must be {MIN_SIDE}..{MAX_SIDE} pixels")
    if h % multiple or w % multiple:
        near = f"{round_up(h, multiple)}x{round_up(w, multiple)}"
        raise BadInput(f"{option} {h}x{w}: {what} needs sides that are multiples of {multiple}; {near} would do")
    return h, w


def format_shape(shape: Shape) -> str:
    return f"{int(shape[0])}x{int(shape[1])}"


def parse_profile(text: str, option: str = "--shape") -> tuple[Shape, Shape, Shape]:
    """``"HxW"`` (MIN = OPT = MAX) or ``"MINHxMINW:OPTHxOPTW:MAXHxMAXW"`` → three (H, W), each side ordered
    MIN ≤ OPT ≤ MAX; one line otherwise."""
    parts = str(text).split(":")
    if len(parts) not in (1, 3):
        raise BadInput(f"{option} must be HxW or MINHxMINW:OPTHxOPTW:MAXHxMAXW (e.g. 512x512:1024x1024:2048x2048), "
                       f"got {text!r}")
    shapes = [parse_shape(p, option) for p in parts] * (3 if len(parts) == 1 else 1)
    lo, opt, hi = shapes
    if not all(lo[i] <= opt[i] <= hi[i] for i in (0, 1)):
        raise BadInput(f"{option} {text}: each side must grow from MIN to OPT to MAX")
    return lo, opt, hi
