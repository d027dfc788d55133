"""Write model.keras (+ manifest, history) from a run's checkpoint when training was cut off before it could.

    python tools/study/finish_run.py RUNDIR     # RUNDIR/checkpoint/{best.weights.h5,state.json}

The same final step as `edgeseg train` (`edgeseg.train.finish`): the best weights go into a fresh, uncompiled
model, the F1-best threshold is found on the run's validation set, and the manifest records the run's config.
Used for the GPU UNet of docs/study.md, whose time limit ended training at epoch 64 of 80
(tools/study/gpu_unet.sh).
"""
import sys

from edgeseg.train import finish

result = finish(sys.argv[1])
training = result["training"]
print(f"wrote {result['path']}: best epoch {training['best_epoch'] + 1} of {training['epochs_run']}, "
      f"validation Dice {result['validation']['dice']:.3f} at threshold {result['threshold']:.3f}")
