"""Train a registered network on fresh synthetic defects: ``train(TrainConfig(...), out_dir)``.

What a run leaves in ``out_dir``:

* ``model.keras`` — the best checkpoint by validation Dice, saved uncompiled, and ``model.keras.json``,
  its manifest: the training config, the network (name, params, FLOPs/image), its operating point
  (``threshold`` and ``mask_rule``: the threshold and rule with the best recall + Dice within the false-alarm
  budget ``fa_budget`` on a fitting set, :mod:`edgeseg.operating`; the whole sweep under
  ``operating_point``), the validation metrics at the F1-best threshold, and the wall time;
* ``history.json`` — per-epoch loss, validation Dice/recall/FP blobs, contrast range and loss stage;
* ``checkpoint/`` — last weights, best weights, optimizer state and the epoch/history, rewritten
  atomically after every epoch so ``resume=True`` continues at the next epoch after an interruption.

Library code: no printing, progress goes through the ``progress(done, total, message)`` callback.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import atomic_path, read_json, write_json, write_manifest
from edgeseg.augment import NONE, AugmentConfig, Curriculum
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress, silent

CHECKPOINT = "checkpoint"


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the model manifest)."""

    model: str = "inline"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "bce+dice+0.5*hardneg+0.25*hardpos"
    epochs: int = 40
    steps_per_epoch: int = 150
    batch_size: int = 8
    crop: int = 256
    learning_rate: float = 3e-3
    seed: int = 0
    preset: str = "train"
    #: Generator settings that change the preset (``edgeseg generate``'s knobs: ``illumination``, ``contrast``,
    #: ``noise``, …), e.g. {"illumination": 16}; the crop size comes from ``crop``.
    preset_args: dict[str, Any] = field(default_factory=dict)
    curriculum: str | None = None
    augment: bool = True
    patience: int = 8
    val_count: int = 128
    val_seed: int = 90_001
    # The operating point (edgeseg.operating; its DEFAULT_BUDGET and DEFAULT_COUNT, kept equal by a test, are
    # not imported here: that would bring OpenCV into every CLI start): the false blobs per image it may cost,
    # and how many defect images (and as many defect-free ones) it is fitted on.
    fa_budget: float = 0.005
    fit_count: int = 2000
    workers: int = 1  # data-generation threads; every batch is seeded by (seed, epoch, index), so results do not depend on it
    # Data parallelism (edgeseg.distribute): replicas per host and how they are joined. batch_size is global,
    # split over the replicas, so a run means the same thing on any count (and resumes on another one).
    devices: int = 1
    strategy: str = "auto"
    # A line's own images (edgeseg.data.sources): defect-free ``backgrounds`` that get the preset's defects, on
    # the fly, on random crops; labelled ``data``; or both, weighed by ``mix`` (e.g. "backgrounds:3,synthetic:1").
    # ``defect_ratio`` of the crops carry defects; ``contrast_sigma`` (lo, hi) gives the backgrounds' defect
    # contrast in local noise σ instead of the preset's gray levels. Validation and the operating point then use
    # held-out images of each folder (every 5th, or the val_ folders), never a training crop.
    backgrounds: str | None = None
    data: str | None = None
    val_backgrounds: str | None = None
    val_data: str | None = None
    mix: str | None = None
    defect_ratio: float = 0.75
    contrast_sigma: list[float] | None = None
    #: A trained model (.keras with its manifest) whose weights the run starts from: fine-tuning a network
    #: trained on synthetic noise to a line's images. Its network and builder arguments must be this run's.
    init: str | None = None

    @property
    def on_line(self) -> bool:
        """Whether the run trains on a line's own images (else on synthetic noise alone)."""
        return bool(self.backgrounds or self.data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _synth_config(cfg: TrainConfig):
    from edgeseg.data.synth import SynthConfig, preset

    base = preset(cfg.preset)
    if cfg.preset_args:
        known = base.to_dict()
        unknown = set(cfg.preset_args) - set(known) | ({"image_size"} & set(cfg.preset_args))
        if unknown:
            raise EdgesegError(f"--preset-arg {', '.join(sorted(unknown))}: not a generator setting of the preset "
                               f"(known: {', '.join(sorted(set(known) - {'image_size'}))}; the size is --crop)")
        try:
            base = SynthConfig.from_dict({**known, **cfg.preset_args})
        except (TypeError, ValueError) as e:
            raise EdgesegError(f"--preset-arg: {e}") from None
    if cfg.crop <= base.defect_size[1] or cfg.crop > 1024 or cfg.crop % 8:
        raise EdgesegError(f"--crop must be a multiple of 8 between {base.defect_size[1] + 1} and 1024, got {cfg.crop}")
    return base.replace(image_size=cfg.crop)


def check(cfg: TrainConfig) -> None:
    """Raise EdgesegError for any bad option before anything expensive starts (the CLI calls it first)."""
    from edgeseg import distribute
    from edgeseg.validate import finite, seed, whole

    # Before anything else: a number out of range fails in one line, whatever the rest.
    for name, hi in (("epochs", 100_000), ("steps_per_epoch", 1_000_000), ("batch_size", 4096), ("val_count", 100_000),
                     ("patience", 100_000), ("workers", 256), ("devices", 1024)):
        whole(f"--{name.replace('_', '-')}", getattr(cfg, name), 1, hi)
    whole("--fit-count", cfg.fit_count, 2, 1_000_000, why="one image per noise kind at least")
    whole("--crop", cfg.crop, 8, 1024)
    finite("--learning-rate", cfg.learning_rate, 0, 1, lo_open=True)
    finite("--fa-budget", cfg.fa_budget, 0, 1, hi_open=True, unit="false blobs per image")
    seed("--seed", cfg.seed)
    seed("val_seed", cfg.val_seed)
    finite("--defect-ratio", cfg.defect_ratio, 0, 1, lo_open=True)
    if cfg.contrast_sigma is not None:
        lo, hi = cfg.contrast_sigma
        finite("--contrast-sigma", lo, -50, 50, unit="local noise sigma")
        finite("--contrast-sigma", hi, lo, 50, unit="local noise sigma")
        if not cfg.backgrounds:
            raise EdgesegError("--contrast-sigma sets the contrast of defects placed on --backgrounds; give --backgrounds")
    for name in ("val_backgrounds", "val_data"):
        if getattr(cfg, name) and not getattr(cfg, name[4:]):
            raise EdgesegError(f"--{name.replace('_', '-')} needs --{name[4:]}")
    if cfg.mix and not cfg.on_line:
        raise EdgesegError("--mix weighs a line's images against synthetic noise; give --backgrounds or --data")
    replicas = distribute.replicas(cfg.strategy, cfg.devices)  # from the options alone: no worker contacted
    if cfg.batch_size % replicas:
        raise EdgesegError(f"--batch-size {cfg.batch_size} does not split evenly over {replicas} replicas")
    # Splitting the CPU into devices must happen before anything below starts TensorFlow's runtime
    # (resolve is cached: train() gets the same strategy).
    distribute.resolve(cfg.strategy, cfg.devices)
    import edgeseg.models as models
    from edgeseg import losses

    models.build(cfg.model, **cfg.model_kwargs)  # unknown names and arguments fail here, in a fraction of a second
    losses.parse(cfg.loss)
    _synth_config(cfg)
    if cfg.curriculum:
        Curriculum.parse(cfg.curriculum)
    if cfg.init:
        _check_init(cfg)
    if cfg.on_line:
        from edgeseg.data.sources import parse_mix

        parse_mix(cfg.mix, {"backgrounds": bool(cfg.backgrounds), "data": bool(cfg.data)})


def _check_init(cfg: TrainConfig) -> None:
    """--init names a trained model of this run's network and builder arguments (read from its manifest)."""
    from edgeseg.artifacts import read_manifest

    path = Path(cfg.init)
    if path.suffix != ".keras" or not path.is_file():
        raise EdgesegError(f"--init {path}: expected a trained .keras model (edgeseg train writes model.keras)")
    m = read_manifest(path)
    if m is None:
        raise EdgesegError(f"--init {path} has no manifest ({path}.json): which network it is cannot be checked")
    saved = m.get("config") or {}
    name, kwargs = saved.get("model"), saved.get("model_kwargs", {})
    if (name, kwargs) != (cfg.model, cfg.model_kwargs):
        args = " ".join(f"--model-arg {k}={json.dumps(v)}" for k, v in kwargs.items())
        raise EdgesegError(f"--init {path} is a {name} network {kwargs or ''}; train the same one to start from it: "
                           f"--model {name} {args}".rstrip())


def _predict(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    out = [np.asarray(model(images[i : i + batch], training=False))[..., 0] for i in range(0, len(images), batch)]
    return np.concatenate(out)


def _evaluate(model, val_x: np.ndarray, truth) -> dict[str, Any]:
    """Validation Dice at the F1-best threshold, and the defect metrics there."""
    from edgeseg.metrics import compute, f1_best_threshold

    probs = _predict(model, val_x)
    t = f1_best_threshold(probs, truth.masks, resolution=1000)
    m = compute(probs, truth, threshold=t)
    return {"threshold": t, "dice": m["dice"], "defect_recall": m["defect_recall"],
            "fp_blobs_per_image": m["fp_blobs_per_image"], "overkill_rate": m["overkill_rate"]}


class _Checkpoint:
    """The files of ``out/checkpoint``; ``state.json`` is written last and marks a complete checkpoint."""

    def __init__(self, out: Path):
        self.dir = out / CHECKPOINT
        self.last, self.best = self.dir / "last.weights.h5", self.dir / "best.weights.h5"
        self.optimizer, self.state = self.dir / "optimizer.npz", self.dir / "state.json"

    def exists(self) -> bool:
        return self.state.is_file()

    def save(self, model, optimizer, state: dict[str, Any], improved: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.last, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        if improved:
            with atomic_path(self.best, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)
        with atomic_path(self.optimizer, suffix=".npz") as tmp:
            np.savez(tmp, *[np.asarray(v) for v in optimizer.variables])
        write_json(self.state, state)

    def load(self, model, optimizer) -> dict[str, Any]:
        state = read_json(self.state)
        optimizer.build(model.trainable_variables)
        model.load_weights(self.last)
        with np.load(self.optimizer) as saved:
            arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(arrays) != len(optimizer.variables):
            raise EdgesegError(f"{self.optimizer} does not match this model/optimizer: train without --resume")
        for var, value in zip(optimizer.variables, arrays):
            var.assign(value)
        return state


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: Progress = silent) -> dict[str, Any]:
    """Train ``cfg.model`` and write ``out/model.keras`` (+ manifest, history, checkpoint).

    Returns the manifest's summary: model info, threshold, validation metrics, epochs, wall time. A
    multi-worker cluster's workers other than the chief train in step with it and write nothing: they return
    ``{"path": None, "training": …}``.
    With ``resume`` an existing checkpoint in ``out`` is continued at its next epoch (its config wins for
    everything but ``epochs``); without, any old checkpoint is ignored and overwritten.
    """
    import keras

    import edgeseg.models as models
    from edgeseg import losses
    from edgeseg.metrics import GroundTruth
    from edgeseg.distribute import resolve
    from edgeseg.trainer_data import SourceBatches, SynthBatches, line_plan

    out = Path(out)
    if resume and _Checkpoint(out).exists():
        saved = read_json(_Checkpoint(out).state)
        # The saved run's recipe, this invocation's epochs and devices (a run resumes on another replica count).
        cfg = TrainConfig(**{**saved["config"], "epochs": cfg.epochs, "devices": cfg.devices,
                             "strategy": cfg.strategy})
    elif resume:
        raise EdgesegError(f"nothing to resume in {out}: no {CHECKPOINT}/state.json (train without --resume)")
    check(cfg)
    dist = resolve(cfg.strategy, cfg.devices)
    ckpt = _Checkpoint(out)
    loss = losses.parse(cfg.loss)
    synth = _synth_config(cfg)
    curriculum = Curriculum.parse(cfg.curriculum) if cfg.curriculum else None
    keras.utils.set_random_seed(cfg.seed)  # weight initialisation; data draws use their own seeded rngs
    total_steps = cfg.epochs * cfg.steps_per_epoch
    with dist.scope():  # every variable (weights, optimizer slots, the loss stage) on every replica
        model = models.build(cfg.model, **cfg.model_kwargs)
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, total_steps, alpha=0.05,
                                                          warmup_target=None)
        optimizer = keras.optimizers.Adam(schedule)
        if isinstance(loss, losses.Scheduled):
            loss.set_epoch(0)  # creates the stage variable eagerly, outside the traced training step
        model.compile(optimizer=optimizer, loss=loss)

        state: dict[str, Any] = {"config": cfg.to_dict(), "epoch": 0, "history": [], "best_dice": -1.0,
                                 "best_epoch": None, "wall_s": 0.0, "stale": 0}
        if resume:
            state = ckpt.load(model, optimizer)
            state["config"] = cfg.to_dict()
        elif cfg.init:
            model.set_weights(keras.models.load_model(cfg.init, compile=False).get_weights())
    state["distribution"] = dist.describe()

    augmentation = AugmentConfig() if cfg.augment else NONE
    if cfg.on_line:
        plan = line_plan(cfg, synth, curriculum)
        data = SourceBatches(plan.make_source, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, augmentation,
                             workers=cfg.workers)
    else:
        plan = None
        data = SynthBatches(synth, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, augmentation, curriculum,
                            workers=cfg.workers)
    val_x, val_masks = _validation(cfg, plan)
    truth = GroundTruth.from_masks(val_masks)
    started = time.perf_counter()
    wall_before = float(state["wall_s"])

    class Driver(keras.callbacks.Callback):
        """Sets the epoch's data and loss stage, reports progress, validates, checkpoints, stops early."""

        def on_epoch_begin(self, epoch, logs=None):
            data.set_epoch(epoch)
            if isinstance(loss, losses.Scheduled):
                loss.set_epoch(epoch)
            self.losses: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float((logs or {}).get("loss", np.nan)))
            epoch = state["epoch"]
            done = epoch * cfg.steps_per_epoch + batch + 1
            best = f" best val dice {state['best_dice']:.3f}" if state["best_epoch"] is not None else ""
            progress(done, total_steps, f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(self.losses[-20:]):.4f}{best}")

        def on_epoch_end(self, epoch, logs=None):
            val = _evaluate(self.model, val_x, truth)
            improved = val["dice"] > state["best_dice"] + 1e-4
            state["stale"] = 0 if improved else state["stale"] + 1
            if improved:
                state["best_dice"], state["best_epoch"] = val["dice"], epoch
            state["history"].append({
                "epoch": epoch, "loss": float((logs or {}).get("loss", np.mean(self.losses))),
                "contrast": list(data.cfg.contrast) if isinstance(data, SynthBatches) else data.contrast,
                "loss_stage": loss.stage_at(epoch) if isinstance(loss, losses.Scheduled) else 0,
                **{f"val_{k}": v for k, v in val.items()},
            })
            state["epoch"] = epoch + 1
            state["wall_s"] = wall_before + time.perf_counter() - started
            if dist.is_chief:  # a multi-worker cluster's other workers write nothing
                ckpt.save(self.model, optimizer, state, improved)
            if state["stale"] >= cfg.patience:
                self.model.stop_training = True

    if state["epoch"] < cfg.epochs and state["stale"] < cfg.patience:
        if dist.custom_loop:
            from edgeseg import train_loop

            train_loop.fit(model, optimizer, loss, data, dist.strategy, cfg.epochs, state["epoch"], Driver(),
                           workers=cfg.workers)
        else:
            model.fit(data, epochs=cfg.epochs, initial_epoch=state["epoch"], callbacks=[Driver()], verbose=0)
    if not dist.is_chief:
        return {"path": None, "training": {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
                                           "wall_s": round(state["wall_s"], 1), "distribution": state["distribution"]}}
    return _finish(cfg, out, ckpt, state, val_x, truth, progress, plan)


def _validation(cfg: TrainConfig, plan) -> tuple[np.ndarray, np.ndarray]:
    """The fixed validation set: held-out line images (``plan``: a :class:`~edgeseg.trainer_data.LinePlan`; a
    tenth of them defect-free) or the synthetic one."""
    from edgeseg.trainer_data import held_out_set, validation_set

    if plan is not None:
        return held_out_set(plan.held, cfg.val_count, cfg.val_seed, good_fraction=0.1)
    return validation_set(cfg.val_seed, cfg.val_count)


def finish(out: str | Path) -> dict[str, Any]:
    """Write ``out/model.keras`` (+ manifest, history) from ``out/checkpoint`` alone: its best weights and
    ``state.json``, for a run that was cut off before :func:`train` could (a time limit on a lent GPU).
    Returns what :func:`train` returns."""
    from edgeseg.metrics import GroundTruth

    out = Path(out)
    ckpt = _Checkpoint(out)
    if not ckpt.exists():
        raise EdgesegError(f"nothing to finish in {out}: no {CHECKPOINT}/state.json")
    state = read_json(ckpt.state)
    cfg = TrainConfig(**state["config"])
    plan = None
    if cfg.on_line:
        from edgeseg.trainer_data import line_plan

        plan = line_plan(cfg, _synth_config(cfg), None)
    val_x, val_masks = _validation(cfg, plan)
    return _finish(cfg, out, ckpt, state, val_x, GroundTruth.from_masks(val_masks), plan=plan)


def _finish(cfg: TrainConfig, out: Path, ckpt: _Checkpoint, state: dict[str, Any], val_x, truth,
            progress: Progress = silent, plan=None) -> dict[str, Any]:
    """Reload the best weights into a fresh, uncompiled model, fit its operating point; save it with its
    manifest and history."""
    import edgeseg.models as models
    from edgeseg import operating
    from edgeseg.data import depth
    from edgeseg.data.depth import to_levels

    best = models.build(cfg.model, **cfg.model_kwargs)
    with warnings.catch_warnings():
        # The checkpoint also holds the optimizer's variables, which an uncompiled model has no use for.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        best.load_weights(ckpt.best if ckpt.best.is_file() else ckpt.last)
    val = _evaluate(best, val_x, truth)
    predict = lambda images: _predict(best, to_levels(images)[..., None])  # noqa: E731
    fit_progress = lambda done, total, _m="": progress(done, total, "fitting the operating point")  # noqa: E731
    if plan is not None:
        from edgeseg.trainer_data import fitting_stacks

        defect, masks, good = fitting_stacks(plan.held, cfg.fit_count, cfg.val_seed, cfg.crop)
        point = {**operating.fit_on(predict, defect, masks, good, cfg.fa_budget, progress=fit_progress),
                 "fitting_set": {"defect_images": cfg.fit_count, "good_images": cfg.fit_count,
                                 "seed": [cfg.val_seed, 1], "from": "held-out line images"}}
    else:
        point = operating.fit(predict, cfg.fa_budget, cfg.fit_count, cfg.val_seed, progress=fit_progress)
    threshold, rule = point["chosen"]["threshold"], point["chosen"]["mask_rule"]
    path = out / "model.keras"
    with atomic_path(path, suffix=".keras") as tmp:
        best.save(tmp)
    write_json(out / "history.json", state["history"])
    info = models.describe(best, cfg.model)
    training = {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
                "stopped_early": state["epoch"] < cfg.epochs, "wall_s": round(state["wall_s"], 1),
                "distribution": state.get("distribution", {"strategy": "none", "replicas": 1})}
    if plan is not None:
        training["line"] = plan.described
    write_manifest(path, "model", config=cfg.to_dict(), model=info, threshold=threshold, mask_rule=rule,
                   input_scaling=depth.describe(),
                   operating_point=point, validation={**val, "count": cfg.val_count, "seed": cfg.val_seed},
                   training=training)
    return {"model": info, "threshold": threshold, "mask_rule": rule, "operating_point": point["chosen"],
            "within_budget": point["within_budget"], "validation": val, "training": training, "path": str(path)}
