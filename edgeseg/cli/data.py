"""``edgeseg generate``: synthetic defect datasets on disk (a preset, with knobs that override it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import claim_outputs, console, force_option, parse_range, progress_bar, user_errors
from edgeseg.data.synth import Noise, Shape

_EPILOG = """\
Examples:

  The seed script's images:  edgeseg generate --preset seed --count 200 --seed 1001 --out data/seed

  1-2 defects of contrast 3-4:  edgeseg generate --preset test --count 100 --out data/test

  Defect-free (for overkill):  edgeseg generate --good-fraction 1 --count 200 --out data/good

  Harder noise and shapes:  edgeseg generate --noise gaussian --shape mixed --out data/gauss
"""


@user_errors
def generate(
    out: Path = typer.Option(..., "--out", help="Output folder (images/, labels/, manifest.json); replaced atomically."),
    preset: str = typer.Option("seed", help="Starting distribution: seed | test | train."),
    count: int = typer.Option(100, help="Number of images (1..10,000,000)."),
    seed: int = typer.Option(0, help="Random seed (>= 0); the same seed and options give the same images."),
    contrast: Optional[str] = typer.Option(None, help="Defect contrast range LO:HI in gray levels, within -255..255 (e.g. 3:4)."),
    defects: Optional[str] = typer.Option(None, help="Defects per image LO:HI, within 0..100 (e.g. 1:2)."),
    defect_size: Optional[str] = typer.Option(None, help="Defect side length LO:HI in pixels, below the image size (e.g. 8:63)."),
    size_dist: Optional[str] = typer.Option(None, help="How defect sides are drawn: uniform (the seed) | log "
                                            "(more small and thin defects)."),
    good_fraction: Optional[float] = typer.Option(None, help="Probability that an image has no defect (0..1)."),
    shape: Optional[Shape] = typer.Option(None, help="Defect shape."),
    noise: Optional[Noise] = typer.Option(None, help="Background noise model."),
    image_size: Optional[int] = typer.Option(None, help="Square image side in pixels, 16..4096 (default 256)."),
    noise_scale: Optional[str] = typer.Option(None, help="Noise std relative to the seed's 7.2, LO:HI per image, within 0..10."),
    level_shift: Optional[str] = typer.Option(None, help="Background level shift from 112, LO:HI gray levels per image, within -112..143."),
    illumination: Optional[float] = typer.Option(None, help="Max peak-to-peak of a smooth lighting field, 0..255 gray levels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Generate a synthetic low-contrast defect dataset (faithful to the seed's make_image.py)."""
    from edgeseg.data.dataset import MAX_COUNT, write_dataset
    from edgeseg.data.synth import preset as get_preset
    from edgeseg.outputs import Kind, Output
    from edgeseg.validate import seed as check_seed
    from edgeseg.validate import whole

    whole("--count", count, 1, MAX_COUNT)
    check_seed("--seed", seed)
    cfg = get_preset(preset)
    changes: dict = {}
    if contrast is not None:
        changes["contrast"] = parse_range(contrast, float, "--contrast")
        if not all(float(v).is_integer() for v in changes["contrast"]):  # NaN and infinity are refused below
            changes["contrast_continuous"] = True
    if defects is not None:
        changes["defects"] = parse_range(defects, int, "--defects")
    if defect_size is not None:
        changes["defect_size"] = parse_range(defect_size, int, "--defect-size")
    if noise_scale is not None:
        changes["noise_scale"] = parse_range(noise_scale, float, "--noise-scale")
    if level_shift is not None:
        changes["level_shift"] = parse_range(level_shift, float, "--level-shift")
    for name, value in (("size_dist", size_dist), ("good_fraction", good_fraction), ("shape", shape), ("noise", noise),
                        ("image_size", image_size), ("illumination", illumination)):
        if value is not None:
            changes[name] = value
    cfg = cfg.replace(**changes)
    claim_outputs([Output(out, Kind.dataset)], force=force)
    with progress_bar("generate", enabled=not quiet) as progress:
        path = write_dataset(out, cfg, count, seed, progress)
    console.print(f"wrote {count} images to {path} (preset {preset}, seed {seed})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=_EPILOG)(generate)
