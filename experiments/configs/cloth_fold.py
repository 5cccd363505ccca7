"""The cloth_fold task.

  python -m experiments.collect --config=experiments/configs/cloth_fold.py --workdir=/tmp/hiwm
  python -m experiments.collect --config=experiments/configs/cloth_fold.py:quick --workdir=/tmp/hiwm
"""
from experiments.configs import common


def get_config(arg=None):
  return common.task_config("cloth_fold", arg)
