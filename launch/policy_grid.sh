#!/usr/bin/env bash
# Issue 3's policy table: base (few demos) policies for every task x backbone and the data-rich
# reference (many demos) on the rigid tasks; each trained, evaluated on 50 held-out seeds, tabled.
#   bash launch/policy_grid.sh [DATA_DIR] [JOBS]
# Needs the datasets first: python -m experiments.collect_all --data_dir=DATA_DIR
# JOBS trainings run at once (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir="${1:-/tmp/hiwm}"
jobs="${2:-2}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"

runs=()  # base policies first (the Hi-WM chain needs them), diffusion before flow
for variant in base many; do
  for backbone in diffusion flow; do
    for task in pick_place push cloth_fold; do
      [[ "${variant}" == many && "${task}" == cloth_fold ]] || runs+=("${task} ${backbone} ${variant}")
    done
  done
done

train_and_eval() {
  local task=$1 backbone=$2 variant=$3
  local arg="backbone=${backbone}"; [[ "${variant}" == many ]] && arg+=",many"
  local workdir="${data_dir}/runs/${task}_${backbone}_${variant}"
  [[ -f "${workdir}/eval_real.json" ]] && { echo "${workdir}: done already"; return; }
  python3 -m experiments.train_policy --config="experiments/configs/${task}.py:${arg}" \
      --config.data_dir="${data_dir}" --workdir="${workdir}" > "${workdir}.log" 2>&1
  python3 -m experiments.eval_policy --workdir="${workdir}" >> "${workdir}.log" 2>&1
  tail -n 1 "${workdir}.log"
}
export -f train_and_eval
export data_dir
mkdir -p "${data_dir}/runs"
printf '%s\n' "${runs[@]}" | xargs -P "${jobs}" -I{} bash -c 'train_and_eval {}'
python3 -m experiments.policy_table --runs="${data_dir}/runs/*_base,${data_dir}/runs/*_many" \
    --out=results/policies.md
