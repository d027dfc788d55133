"""``--tile`` and ``--tile-overlap``, the same on every command that runs a model over images
(:mod:`edgeseg.tiling`)."""

from __future__ import annotations

import typer

from edgeseg.tiling import DEFAULT_OVERLAP


def tile_option():
    return typer.Option(
        None, "--tile", help="Run images in overlapping N×N tiles even where the model takes them whole (default: "
        "whole images; a model exported for one size, or an engine, is tiled at that size by itself).")


def overlap_option():
    return typer.Option(
        None, "--tile-overlap", help=f"Pixels neighbouring tiles share; each keeps its half, so every output pixel "
        f"has overlap/2 pixels of context (default {DEFAULT_OVERLAP}: 64 px of inline's ~250 px receptive field; "
        "half the tile for tiles under 256 px).")
