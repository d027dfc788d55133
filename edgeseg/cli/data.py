"""``edgeseg generate``: synthetic defect datasets on disk (a preset, with knobs that override it), drawn on
synthetic noise or, with ``--backgrounds``, on a line's own defect-free images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeseg.cli.common import claim_outputs, console, force_option, parse_range, progress_bar, user_errors
from edgeseg.data.synth import Noise, Shape
from edgeseg.errors import EdgesegError

_EPILOG = """\
Examples:

  The seed script's images:  edgeseg generate --preset seed --count 200 --seed 1001 --out data/seed

  1-2 defects of contrast 3-4:  edgeseg generate --preset test --count 100 --out data/test

  Defect-free (for overkill):  edgeseg generate --good-fraction 1 --count 200 --out data/good

  Harder noise and shapes:  edgeseg generate --noise gaussian --shape mixed --out data/gauss

  On your line's defect-free images, 1-2 sigma of their local noise, 256x256 crops:
    edgeseg generate --backgrounds line/good --contrast-sigma 1:2 --crop 256 --count 500 --out data/line

With --backgrounds the images bring their own noise, level and lighting (--noise, --noise-scale, --level-shift, --illumination and --image-size do not apply), images are written at their bit depth, and --contrast is in gray levels on the 8-bit scale (a 16-bit image's levels / 257).
"""

#: generate's knobs that describe synthetic backgrounds, refused with --backgrounds.
_NOISE_KNOBS = ("--noise", "--noise-scale", "--level-shift", "--illumination", "--image-size")
#: Largest --contrast-sigma: 100 sigma is a defect no one needs a network for.
MAX_SIGMA = 100


@user_errors
def generate(
    out: Path = typer.Option(..., "--out", help="Output folder (images/, labels/, manifest.json); replaced atomically."),
    preset: str = typer.Option("seed", help="Starting distribution: seed | test | train."),
    count: int = typer.Option(100, help="Number of images (1..10,000,000)."),
    seed: int = typer.Option(0, help="Random seed (>= 0); the same seed and options give the same images."),
    contrast: Optional[str] = typer.Option(None, help="Defect contrast range LO:HI in gray levels, within -255..255 (e.g. 3:4)."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="A folder of defect-free images (8- or "
                                               "16-bit gray, either dataset layout) to draw the defects on."),
    contrast_sigma: Optional[str] = typer.Option(None, "--contrast-sigma", help="With --backgrounds: contrast LO:HI "
                                                 "in multiples of the local noise sigma measured on them (e.g. 1:2); "
                                                 "instead of --contrast."),
    crop: Optional[int] = typer.Option(None, "--crop", help="With --backgrounds: random N x N crops (16..4096); "
                                       "default: the whole images, which must then have one size."),
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
    bits: int = typer.Option(8, "--bits", help="8, or 16: the same images in 16-bit files (each level x 257), as a 16-bit camera writes them."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Generate a synthetic low-contrast defect dataset (faithful to the seed's make_image.py)."""
    from edgeseg.data.dataset import MAX_COUNT, write_dataset
    from edgeseg.data.synth import preset as get_preset
    from edgeseg.outputs import Kind, Output
    from edgeseg.validate import finite_range
    from edgeseg.validate import seed as check_seed
    from edgeseg.validate import whole

    whole("--count", count, 1, MAX_COUNT)
    check_seed("--seed", seed)
    cfg = get_preset(preset)
    changes: dict = {}
    given = dict(zip(_NOISE_KNOBS, (noise, noise_scale, level_shift, illumination, image_size)))
    _check_backgrounds_options(backgrounds, contrast, contrast_sigma, crop, given)
    if contrast is not None:
        changes["contrast"] = parse_range(contrast, float, "--contrast")
        if not all(float(v).is_integer() for v in changes["contrast"]):  # NaN and infinity are refused below
            changes["contrast_continuous"] = True
    if contrast_sigma is not None:
        changes["contrast"] = finite_range("--contrast-sigma", parse_range(contrast_sigma, float, "--contrast-sigma"),
                                           -MAX_SIGMA, MAX_SIGMA, unit="(times the local noise sigma)")
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
    if bits not in (8, 16):
        raise EdgesegError(f"--bits must be 8 or 16, got {bits}")
    if backgrounds is not None:
        if bits != 8:
            raise EdgesegError("--bits does not apply with --backgrounds: images are written at the backgrounds' depth")
        _generate_on_backgrounds(out, backgrounds, cfg, changes, count, seed, contrast_sigma is not None, crop,
                                 quiet, force)
        return
    cfg = cfg.replace(**changes)
    claim_outputs([Output(out, Kind.dataset)], force=force)
    with progress_bar("generate", enabled=not quiet) as progress:
        path = write_dataset(out, cfg, count, seed, progress, bits=bits)
    console.print(f"wrote {count} images to {path} (preset {preset}, seed {seed})", highlight=False, soft_wrap=True)


def _check_backgrounds_options(backgrounds: Path | None, contrast: str | None, contrast_sigma: str | None,
                               crop: int | None, noise_knobs: dict) -> None:
    """The options that go with --backgrounds (and only with it), in one line when they clash."""
    from edgeseg.data.synth import MAX_SIZE, MIN_SIZE
    from edgeseg.validate import whole

    if contrast is not None and contrast_sigma is not None:
        raise EdgesegError("--contrast (gray levels) and --contrast-sigma (local noise sigma) are two units for "
                           "one contrast: give one of them")
    if backgrounds is None:
        for name, value in (("--contrast-sigma", contrast_sigma), ("--crop", crop)):
            if value is not None:
                raise EdgesegError(f"{name} goes with --backgrounds (defect-free images to draw on); give a folder "
                                   "of them, or leave it out")
        return
    for name, value in noise_knobs.items():
        if value is not None:
            raise EdgesegError(f"{name} does not apply with --backgrounds: the images bring their own noise, level "
                               "and lighting" + ("; --crop N sets the image size" if name == "--image-size" else ""))
    if crop is not None:
        whole("--crop", crop, MIN_SIZE, MAX_SIZE, unit="pixels")


def _generate_on_backgrounds(out: Path, folder: Path, cfg, changes: dict, count: int, seed: int, relative: bool,
                             crop: int | None, quiet: bool, force: bool) -> None:
    from edgeseg.data.backgrounds import load_backgrounds
    from edgeseg.data.line import UNITS, image_shape, write_line_dataset
    from edgeseg.data.synth import MAX_SIZE, MIN_SIZE
    from edgeseg.outputs import Kind, Output

    bg = load_backgrounds(folder, crop or 1)
    h, w = image_shape(bg, crop)
    # The generator checks the defect sides against its image size: the crop, or the images' shorter side.
    cfg = cfg.replace(image_size=min(max(min(h, w), MIN_SIZE), MAX_SIZE), **changes)
    claim_outputs([Output(out, Kind.dataset)], {"--backgrounds": folder}, force=force)
    with progress_bar("generate", enabled=not quiet) as progress:
        path = write_line_dataset(out, bg, cfg, count, seed, relative, crop, progress)
    console.print(f"wrote {count} {w}x{h} images to {path} ({len(bg)} backgrounds in {folder}, contrast in "
                  f"{UNITS[relative]}, seed {seed})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=_EPILOG)(generate)
