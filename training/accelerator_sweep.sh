#!/usr/bin/env bash
# Model 2's validation runs on one accelerator (Keras on JAX), side by side, then the two best by
# validation mean AUROC back as model folders. Run from the repository root on the accelerator:
#   training/accelerator_sweep.sh DATA OUT
# DATA holds s224/{nih,nih-extra}, s128/{nih,nih-extra} (python -m training.resized_copy) and
# nih-thumbs/; OUT receives <run>.keras.part* (each file under 16 MiB) and sweep.tar.gz (cards, logs).
# Every run uses the same patient split (seed 7); the test split is not looked at here.
set -u
DATA=${1:?dataset folders}
OUT=${2:?output folder}
PY=${PY:-python3}
EPOCHS=${EPOCHS:-25}
DEADLINE=${DEADLINE:-500}  # seconds per run: the accelerator is lent for minutes
EXTRA=${EXTRA:-}           # e.g. "--max-steps 1" for a dry run
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
SWEEP=runs/sweep
mkdir -p "$SWEEP" "$OUT"

full() { echo "--dataset $DATA/s$1/nih --dataset $DATA/s$1/nih-extra --input-size $1"; }
thumbs="--train-only-dataset $DATA/nih-thumbs"
common="--version 2.0.0 --seed 7 --epochs $EPOCHS --batch-size 16 --learning-rate 1e-3 --ema 0.99 --patience 20 $EXTRA"
launch() {
    local name=$1
    shift
    # shellcheck disable=SC2086  # the option strings split into words on purpose
    timeout "$DEADLINE" "$PY" -m training "$@" $common --out "$SWEEP/$name" >"$SWEEP/$name.log" 2>&1 &
}
# shellcheck disable=SC2046
{
    launch t09 $(full 224) $thumbs --teacher-weight 0.9
    launch t05 $(full 224) $thumbs --teacher-weight 0.5
    launch t09-seed8 $(full 224) $thumbs --teacher-weight 0.9 --train-seed 8
    launch t09-nothumbs $(full 224) --teacher-weight 0.9
    launch t09-128px $(full 128) $thumbs --teacher-weight 0.9
}
(sleep 180 && command -v nvidia-smi >/dev/null && nvidia-smi >"$SWEEP/nvidia-smi.txt") &
wait

"$PY" - "$SWEEP" "$OUT" <<'EOF'
import json, sys
from pathlib import Path

sweep, out = Path(sys.argv[1]), Path(sys.argv[2])
scores = {}
for card in sorted(sweep.glob("*/model_card.json")):
    metrics = {m["split"]: m for m in json.loads(card.read_text())["metrics"]}
    scores[card.parent.name] = metrics["validation"]["mean_auroc"]
# A run stopped by the deadline: its best checkpoint and logged scores (its card is made afterwards).
for checkpoint in sorted(sweep.glob("*/checkpoints/best.keras")):
    run = checkpoint.parent.parent
    log = run / "training_log.csv"
    if run.name in scores or not log.is_file():
        continue
    import csv, keras

    rows = list(csv.DictReader(log.open()))
    scores[run.name] = max(float(row["val_mean_auroc"]) for row in rows)
    keras.models.load_model(checkpoint, compile=False).save(run / "model.keras")
    print(f"{run.name}: stopped after {len(rows)} epochs")
for name, score in sorted(scores.items(), key=lambda item: -item[1]):
    print(f"{name}: validation mean AUROC {score:.4f}")
for name in sorted(scores, key=lambda n: -scores[n])[:2]:
    data = (sweep / name / "model.keras").read_bytes()
    for i in range(0, len(data), 15 << 20):
        (out / f"{name}.keras.part{i // (15 << 20)}").write_bytes(data[i : i + (15 << 20)])
EOF
tar -czf "$OUT/sweep.tar.gz" --exclude='*.keras' --exclude=checkpoints "$SWEEP"
ls -la "$OUT"
