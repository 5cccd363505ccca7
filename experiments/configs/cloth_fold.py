"""The cloth_fold task: data collection, base policy (few demos), reference policy (many demos).

  python -m experiments.collect --config=experiments/configs/cloth_fold.py --config.data_dir=/tmp/hiwm
  python -m experiments.train_policy --config=experiments/configs/cloth_fold.py:backbone=diffusion \
      --workdir=/tmp/hiwm/runs/cloth_fold_diffusion
  python -m experiments.eval_policy --workdir=/tmp/hiwm/runs/cloth_fold_diffusion
  ...py:smoke for a seconds-long smoke run, ...py:quick for the whole chain in minutes;
  ...py:many for the data-rich reference policy.
"""
from experiments.configs import common


def get_config(arg=None):
  # 200 full-horizon episodes: the world model sees folds laid down and settling (common.py)
  return common.task_config("cloth_fold", arg, many_demos=200,
                            base_demos=dict(diffusion=10, flow=6), num_full_horizon=200)
