#!/bin/bash
# Reproduces the shipped built-in checkpoint (vla_accel_ros/assets/builtin):
#   240 scripted-expert demonstrations per task, recorded as 3 seed chunks per task (seeds 0-, 1000-,
#   2000-; expert failures dropped) so 18 recorders run in parallel, then 30 epochs of behaviour cloning,
#   then one DAgger round and a 2-epoch fine-tune (below).
# Usage: tools/train_builtin.sh [WORKDIR] (DEVICE=cuda for a GPU; JOBS=N recorders at a time)
# The shipped one was made with DEVICE=cuda on an H200 machine with 16 cores (demos 71 s, training 5.2 min).
# On a 2-core CPU the same run takes many hours; that is why it was not trained here.
set -euo pipefail
WORK=${1:-data/builtin_run}
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-$(nproc)}
TASKS="reach-v3 push-v3 pick-place-v3 drawer-open-v3 button-press-topdown-v3 window-open-v3"
mkdir -p "$WORK"
for task in $TASKS; do
  for chunk in 0 1 2; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    vla-accel collect-demos --out "$WORK/demos/c$chunk" --tasks "$task" --episodes-per-task 80 \
      --seed-start $((chunk * 1000)) --workers 1 > "$WORK/demos_${task}_$chunk.log" 2>&1 &
  done
done
wait
vla-accel train --data "$WORK/demos" --out "$WORK/model" --epochs 30 --batch-size 256 --lr 1e-3 \
  --device "$DEVICE"
# One DAgger round: the trained policy drives reach, push and pick-place (its weakest tasks) on fresh
# seeds while the expert labels every state it visits; then a short fine-tune on those episodes mixed
# with 100 expert demonstrations per task (seeds 0-99), keeping the checkpoint's statistics.
vla-accel collect-demos --out "$WORK/ft/dagger/a" --tasks reach-v3 --episodes-per-task 60 --seed-start 3000 \
  --workers 1 --driver "$WORK/model" > "$WORK/dagger_a.log" 2>&1 &
vla-accel collect-demos --out "$WORK/ft/dagger/b" --tasks push-v3,pick-place-v3 --episodes-per-task 35 \
  --seed-start 3000 --workers 1 --driver "$WORK/model" > "$WORK/dagger_b.log" 2>&1 &
vla-accel collect-demos --out "$WORK/ft/expert" --episodes-per-task 100 --workers 2 > "$WORK/expert100.log" 2>&1 &
wait
vla-accel train --data "$WORK/ft" --out "$WORK/model_dagger" \
  --init "$WORK/model" --epochs 2 --batch-size 128 --lr 3e-4 --device "$DEVICE"
echo "checkpoint: $WORK/model_dagger; evaluate with: vla-accel eval --checkpoint $WORK/model_dagger --episodes 50"
