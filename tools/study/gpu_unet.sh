#!/bin/bash
# Train the reference UNet on a lent GPU host that has JAX but no TensorFlow (Keras 3 on its JAX backend),
# with the inline network's recipe (same data, loss and validation set), for the "inline vs UNet" row of
# docs/study.md. The UNet is too slow to converge on a 2-core CPU; the .keras file it writes is
# backend-independent, so it is scored here afterwards with `edgeseg eval` like any other model.
#
# Needs the Keras wheels in .whl (keras, namex, optree for the host's Python 3.12; see the device README).
# Usage there:  bash tools/study/gpu_unet.sh OUTDIR [TRAIN_SECONDS]
# Writes OUTDIR/{model.keras,model.keras.json,history.json,state.json,train.log} and the best checkpoint in
# 15 MB parts (bw.part.*; with the optimizer's moments it is 24 MB, over the device tool's 16 MB per file).
# If the time runs out first, state.json and the parts still hold the best epoch so far: `cat bw.part.* >
# RUN/checkpoint/best.weights.h5`, copy state.json beside it and run tools/study/finish_run.py RUN, as
# docs/study.md's UNet row did (that run asked for 80 epochs; 64 fit in the 420 s). The loss is
# pinned to that run's bce+dice: the default has since become bce+dice+0.5*hardneg.
set -uo pipefail
OUT=${1:?usage: gpu_unet.sh OUTDIR [TRAIN_SECONDS]}; LIMIT=${2:-420}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/train.log"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" | tee -a "$OUT/train.log"
RUN=/tmp/unet
timeout "$LIMIT" python3 -m edgeseg.cli.app train --model unet --loss bce+dice --epochs 80 --steps-per-epoch 150 --batch-size 16 \
  --patience 20 --workers 14 --seed 0 --out "$RUN" -q 2>&1 | tee -a "$OUT/train.log"
echo "train exit ${PIPESTATUS[0]}" | tee -a "$OUT/train.log"
cp "$RUN"/model.keras "$RUN"/model.keras.json "$RUN"/history.json "$OUT"/ 2>/dev/null
cp "$RUN"/checkpoint/state.json "$OUT"/ 2>/dev/null
split -b 15M "$RUN"/checkpoint/best.weights.h5 "$OUT"/bw.part. 2>/dev/null
python3 - "$RUN/checkpoint/state.json" <<'EOF' | tee -a "$OUT/train.log"
import json, sys
s = json.load(open(sys.argv[1]))
for h in s["history"]:
    print(f"epoch {h['epoch'] + 1:3d} loss {h['loss']:.4f} val dice {h['val_dice']:.3f} recall {h['val_defect_recall']:.3f} "
          f"fp {h['val_fp_blobs_per_image']:.3f}")
print("best epoch", s["best_epoch"] + 1, "dice", round(s["best_dice"], 4), "wall", round(s["wall_s"]), "s")
EOF
