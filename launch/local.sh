#!/usr/bin/env bash
# One machine (CPU, or one GPU with a CUDA jax installed): install, then run the main job.
#   bash launch/local.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="${1:-/tmp/hiwm}"
python3 -m pip install -q -e .
MUJOCO_GL="${MUJOCO_GL:-egl}" python3 -m experiments.collect_all --data_dir="$workdir"
