"""Write model.keras (+ manifest, history) from a run's checkpoint when training was cut off before it could.

    python tools/study/finish_run.py RUNDIR     # RUNDIR/checkpoint/{best.weights.h5,state.json}

The same final step as `edgeseg train`: the best weights go into a fresh, uncompiled model, the F1-best
threshold is found on the run's validation set, and the manifest records the run's config. Used for the
GPU UNet of docs/STUDY.md, whose time limit ended training at epoch 64 of 80 (tools/study/gpu_unet.sh).
"""
import sys
from pathlib import Path

from edgeseg import train as training
from edgeseg.artifacts import read_json
from edgeseg.metrics import GroundTruth
from edgeseg.trainer_data import validation_set

out = Path(sys.argv[1])
ckpt = training._Checkpoint(out)
state = read_json(ckpt.state)
cfg = training.TrainConfig(**state["config"])
images, masks = validation_set(cfg.val_seed, cfg.val_count)
result = training._finish(cfg, out, ckpt, state, images, GroundTruth.from_masks(masks))
print(f"wrote {result['path']}: best epoch {state['best_epoch'] + 1} of {state['epoch']}, "
      f"validation Dice {result['validation']['dice']:.3f} at threshold {result['threshold']:.3f}")
