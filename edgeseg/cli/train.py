"""``edgeseg train``: train a registered network on fresh synthetic defects (thin layer over edgeseg.train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from edgeseg.cli.common import claim_outputs, console, force_option, parse_range, progress_bar, user_errors
from edgeseg.errors import EdgesegError
from edgeseg.train import TrainConfig

_D = TrainConfig()  # the options' defaults are the library's, so the two cannot drift apart

_EPILOG = """\
Examples:

  The demo network (the defaults, ~9–12 minutes on 2 CPU cores):  edgeseg train --model inline --out runs/demo

  A UNet for comparison:  edgeseg train --model unet --crop 128 --steps-per-epoch 100 --out runs/unet

  The training recipe with stronger lighting and wider contrast:
    edgeseg train --preset-arg illumination=16 --preset-arg "contrast=[2.5,6]" --out runs/x

  A loss schedule and a contrast curriculum:  edgeseg train --loss "bce@0,bce+dice@4" --curriculum 8:3:4 --out runs/x

  Continue an interrupted run:  edgeseg train --out runs/demo --resume

  A line that affords one false alarm in 1,000 images:  edgeseg train --fa-budget 0.001 --out runs/strict

  Data-parallel on a host's 4 GPUs (global batch 32):  edgeseg train --devices 4 --batch-size 32 --out runs/dp

  On two hosts, the same command on each with its own TF_CONFIG (index 1 on the second host):
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \
    edgeseg train --strategy multiworker --batch-size 16 --out runs/mw

  On your line's defect-free images, defects 0.5-2 local sigma, a quarter synthetic noise:
    edgeseg train --backgrounds line/good --contrast-sigma 0.5:2 --mix backgrounds:3,synthetic:1 --out runs/line

  The demo network fine-tuned to your line:
    edgeseg train --init runs/demo/model.keras --backgrounds line/good --contrast-sigma 0.5:4 --out runs/line

  Your labelled images mixed with defects placed on your backgrounds:
    edgeseg train --backgrounds line/good --data line/labelled --mix backgrounds:1,data:1 --out runs/line

With --strategy multiworker, worker 0 (or the chief) writes the run; the other workers write nothing, and
--resume needs the checkpoint in --out on every worker (a shared folder).

With --backgrounds or --data, validation and the operating point use held-out images of each folder (every
5th, or --val-backgrounds / --val-data), never a training crop; the fitting set is --fit-count crops with
defects and as many without. Otherwise, after training, the threshold and mask rule are fitted on fresh images (--fit-count with defects, as many
without, half with uniform and half with Gaussian noise): the point with the best defect recall + Dice whose
false blobs per image stay within --fa-budget on each noise kind.
eval, predict, compare and the exported models use it; edgeseg operating-point refits it later for another
budget or on a line's own images.

Losses: bce, wbce (pos_weight), dice, focal (gamma, alpha), tversky (alpha, beta), hardneg (k, margin: the
k most confident background pixels of each image), hardpos (k, erode: the k least confident defect-interior
pixels); combine with + and weights (0.5*bce+dice), arguments after a colon (focal:gamma=2), stages with
@EPOCH (bce@0,dice@5).
"""


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p)


def _parse_args(items: list[str], option: str = "--model-arg", example: str = "width=8") -> dict[str, Any]:
    """``["width=8", "dilations=[1,2,4]"]`` → {"width": 8, "dilations": [1, 2, 4]} (values are JSON,
    or plain strings when they are not)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgesegError(f"{option} must be KEY=VALUE (e.g. {example}), got {item!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    return kwargs


@user_errors
def train(
    out: Path = typer.Option(..., "--out", help="Run folder: model.keras (+ .json manifest), history.json, checkpoint/."),
    model: str = typer.Option(_D.model, "--model", help="Network: inline | unet | context."),
    model_arg: Optional[list[str]] = typer.Option(None, "--model-arg", help="Builder argument KEY=VALUE (repeatable)."),
    loss: str = typer.Option(_D.loss, help="Loss spec (see below), e.g. bce+dice, focal:gamma=2, bce@0,dice@5."),
    epochs: int = typer.Option(_D.epochs, help="Maximum epochs."),
    steps_per_epoch: int = typer.Option(_D.steps_per_epoch, help="Batches per epoch (each batch freshly generated)."),
    batch_size: int = typer.Option(_D.batch_size, help="Images per batch."),
    crop: int = typer.Option(_D.crop, help="Training image side in pixels (the networks are fully convolutional)."),
    learning_rate: float = typer.Option(_D.learning_rate, help="Peak learning rate (Adam, cosine decay)."),
    seed: int = typer.Option(_D.seed, help="Seed of weights and training data; the same seed gives the same run."),
    preset: str = typer.Option(_D.preset, help="Training data distribution: a synth preset (train | seed | test)."),
    preset_arg: Optional[list[str]] = typer.Option(None, "--preset-arg", help="Change one generator setting of the preset, KEY=VALUE (repeatable; JSON values): illumination=16, contrast=[2.5,6], noise=gaussian, size_dist=uniform."),
    curriculum: Optional[str] = typer.Option(_D.curriculum, help="Contrast curriculum, e.g. 8:3:4 = from contrast 8 down to 3 over the first 4 epochs."),
    augment: bool = typer.Option(_D.augment, "--augment/--no-augment", help="Flips, gain, gamma, extra noise."),
    patience: int = typer.Option(_D.patience, help="Stop after this many epochs without a better validation Dice."),
    val_count: int = typer.Option(_D.val_count, help="Validation images (fixed set, 256², evaluation-like distribution)."),
    fa_budget: float = typer.Option(_D.fa_budget, help="False blobs per image the fitted threshold and mask rule may cost (on a fitting set of --fit-count defect and as many defect-free images)."),
    fit_count: int = typer.Option(_D.fit_count, help="Defect images (and as many defect-free ones) the operating point is fitted on."),
    workers: int = typer.Option(_D.workers, help="Threads drawing training batches (a GPU host wants several; the results do not change)."),
    devices: int = typer.Option(_D.devices, help="Data-parallel replicas on this host: its GPUs, or the CPU split into that many devices; --batch-size is the global batch."),
    strategy: str = typer.Option(_D.strategy, help="auto (mirrored when --devices > 1) | none | mirrored (tf.distribute.MirroredStrategy: one host) | multiworker (MultiWorkerMirroredStrategy: several hosts, each with TF_CONFIG; --devices is per worker)."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Defect-free images of your line (any size >= --crop, 8- or 16-bit): the preset's defects are placed on random crops, never the same twice."),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled images of your line (the dataset layout edgeseg reads: images/ + labels/)."),
    val_backgrounds: Optional[Path] = typer.Option(None, "--val-backgrounds", help="Held-out defect-free images for validation and the operating point (default: every 5th --backgrounds image)."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Held-out labelled images (default: every 5th --data image)."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Weights of the sources, e.g. backgrounds:3,synthetic:1 (default: the given folders, equally)."),
    defect_ratio: float = typer.Option(_D.defect_ratio, "--defect-ratio", help="Share of line crops that carry a defect (placed on backgrounds, or a labelled one under the crop)."),
    contrast_sigma: Optional[str] = typer.Option(None, "--contrast-sigma", help="Contrast of the defects placed on --backgrounds in local noise sigma, LO:HI (default: the preset's gray levels)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this trained model's weights (e.g. runs/demo/model.keras: fine-tune to your line); same --model and --model-arg."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out at its next epoch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    force: bool = force_option(),
) -> None:
    """Train a segmentation network; keeps the checkpoint with the best validation Dice."""
    from edgeseg import distribute
    from edgeseg.outputs import Kind, Output
    from edgeseg.train import check, train as run

    cfg = TrainConfig(model=model, model_kwargs=_parse_args(model_arg or []), loss=loss, epochs=epochs,
                      steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                      learning_rate=learning_rate, seed=seed, preset=preset,
                      preset_args=_parse_args(preset_arg or [], "--preset-arg", "illumination=16"), curriculum=curriculum,
                      augment=augment, patience=patience, val_count=val_count, fa_budget=fa_budget,
                      fit_count=fit_count, workers=workers, devices=devices, strategy=strategy,
                      backgrounds=_path(backgrounds), data=_path(data), val_backgrounds=_path(val_backgrounds),
                      val_data=_path(val_data), mix=mix, defect_ratio=defect_ratio, init=_path(init),
                      contrast_sigma=list(parse_range(contrast_sigma, float, "--contrast-sigma")) if contrast_sigma else None)
    # Before anything else, not after training: an unwritable --out, a dataset or an earlier run there fails now.
    inputs = {"--backgrounds": backgrounds, "--data": data, "--val-backgrounds": val_backgrounds, "--val-data": val_data,
              "--init": init}
    # A multi-worker cluster's workers other than the chief write nothing, so they claim nothing.
    chief = cfg.strategy != distribute.Strategy.multiworker.value or distribute.cluster().is_chief
    if chief:
        claim_outputs([Output(out, Kind.resumed_run if resume else Kind.run)],
                      {k: v for k, v in inputs.items() if v is not None}, force=force)
    check(cfg)
    with progress_bar("train", enabled=not quiet) as progress:
        result = run(cfg, out, resume=resume, progress=progress)
    if result["path"] is None:
        tr = result["training"]
        console.print(f"{tr['distribution']['task']} of {tr['distribution']['workers']} workers: trained "
                      f"{tr['epochs_run']} epochs in step with the chief, which writes the run", highlight=False)
        return
    val, info, tr = result["validation"], result["model"], result["training"]
    console.print(
        f"wrote {result['path']}: {info['name']} ({info['params']:,} params, {info['flops_per_image'] / 1e9:.3f} "
        f"GFLOP/image), best epoch {tr['best_epoch'] + 1 if tr['best_epoch'] is not None else '-'} of "
        f"{tr['epochs_run']}, {tr['wall_s']:.0f} s; validation at threshold {val['threshold']:.3f}: "
        f"Dice {val['dice']:.3f}, recall {val['defect_recall']:.3f}, FP/img {val['fp_blobs_per_image']:.2f}",
        highlight=False,
    )
    from edgeseg.postprocess import MaskRule

    op, rule = result["operating_point"], MaskRule.from_dict(result["mask_rule"])
    console.print(
        f"operating point: threshold {op['threshold']:.2f}, {rule.describe()}; on the fitting "
        f"set Dice {op['dice']:.3f}, recall {op['defect_recall']:.3f}, FP/img {op['fp_blobs_per_image']:.4f}"
        + ("" if result["within_budget"] else f" [yellow](over the --fa-budget {cfg.fa_budget}: no point was within it)[/]"),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("train", epilog=_EPILOG)(train)
