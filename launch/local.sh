#!/usr/bin/env bash
# One machine (CPU, or one GPU with a CUDA jax installed): install, then run the main job —
# the whole Hi-WM chain on push, quick variant.
#   bash launch/local.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="${1:-/tmp/hiwm_quick}"
python3 -m pip install -q -e .
MUJOCO_GL="${MUJOCO_GL:-egl}" python3 -m experiments.hiwm \
    --config=experiments/configs/push.py:quick --config.data_dir="$workdir/data" \
    --work_dir="$workdir/run" --out="$workdir/results"
