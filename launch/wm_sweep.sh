#!/usr/bin/env bash
# World-model variants trained at once (one GPU shares them well: each alone leaves it mostly
# idle), then each judged by eval_wm on its held-out split. Prints each run's open-loop rows.
#   bash launch/wm_sweep.sh CONFIG DATA_DIR OUT_ROOT NAME=OVERRIDES [NAME=OVERRIDES ...]
# e.g. (results/world_model: 4 cloth models in 4 minutes on one H200)
#   bash launch/wm_sweep.sh experiments/configs/cloth_fold.py /tmp/hiwm3 /tmp/hiwm/wmx/noise \
#       "noise_0=" "noise_1mm=--config.world_model.input_noise=0.001"
# OVERRIDES are train_wm flags, space-separated; each run's work directory is OUT_ROOT/NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 4 ]] || { sed -n '2,8p' "$0"; exit 2; }
config=$1 data_dir=$2 out_root=$3
shift 3
for spec in "$@"; do  # every spec checked before anything starts
  if [[ "${spec}" != *=* || -z "${spec%%=*}" ]]; then
    echo "bad run spec '${spec}': want NAME=OVERRIDES"; exit 2
  fi
done
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the one GPU's memory
mkdir -p "${out_root}"
names=()
for spec in "$@"; do
  name=${spec%%=*} overrides=${spec#*=}
  names+=("${name}")
  # shellcheck disable=SC2086  # the overrides are meant to split into flags
  python3 -m experiments.train_wm --config="${config}" --config.data_dir="${data_dir}" \
      --workdir="${out_root}/${name}" ${overrides} > "${out_root}/${name}.log" 2>&1 &
done
failed=0
for job in $(jobs -p); do wait "${job}" || failed=1; done
for name in "${names[@]}"; do  # the evaluations at once too
  if [[ ! -f "${out_root}/${name}/risk_calibration.json" ]]; then
    echo "${name}: training failed, see ${out_root}/${name}.log"; failed=1; continue
  fi
  python3 -m experiments.eval_wm --workdir="${out_root}/${name}" --fresh_episodes=0 \
      > "${out_root}/${name}.eval.log" 2>&1 &
done
for job in $(jobs -p); do wait "${job}" || failed=1; done
for name in "${names[@]}"; do
  [[ -f "${out_root}/${name}.eval.log" ]] || continue
  echo "${name}:"; tr '\r' '\n' < "${out_root}/${name}.eval.log" | grep '^| [0-9]\|agreement, held'
done
exit "${failed}"
