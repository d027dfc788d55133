"""Train one variant for the study (docs/study.md) and score it on the held-out sets.

    python tools/study/train_variant.py RUNDIR '{"gate_extremes": true}' '{"epochs": 30, "patience": 8}'
    python tools/study/train_variant.py RUNDIR '{}' '{"preset_over": {"size_dist": "log"}}'

Argument 2: keyword arguments for the model builder; argument 3: TrainConfig fields, plus ``preset_over``
(fields of the `train` preset to override). Scores with tools/study/score.py when training ends.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

from edgeseg.data.synth import PRESETS
from edgeseg.train import TrainConfig, train

out, kw = Path(sys.argv[1]), json.loads(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
over = extra.pop("preset_over", None)
if over:
    PRESETS["study"] = PRESETS["train"].replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()})
    extra["preset"] = "study"
t = time.time()
train(TrainConfig(model_kwargs=kw, **extra), out)
print("train_s", round(time.time() - t, 1), flush=True)
subprocess.run([sys.executable, str(Path(__file__).with_name("score.py")), str(out / "model.keras")], check=True)
