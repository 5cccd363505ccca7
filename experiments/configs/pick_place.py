"""The pick_place task: data collection, base policy (few demos), reference policy (many demos).

  python -m experiments.collect --config=experiments/configs/pick_place.py --config.data_dir=/tmp/hiwm
  python -m experiments.train_policy --config=experiments/configs/pick_place.py:backbone=diffusion \
      --workdir=/tmp/hiwm/runs/pick_place_diffusion
  python -m experiments.eval_policy --workdir=/tmp/hiwm/runs/pick_place_diffusion
  ...py:smoke for a seconds-long smoke run, ...py:quick for the whole chain in minutes;
  ...py:many for the data-rich reference policy.
"""
from experiments.configs import common


def get_config(arg=None):
  return common.task_config("pick_place", arg, many_demos=200,
                            base_demos=dict(diffusion=10, flow=7))
