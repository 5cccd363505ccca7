"""The pick_place task.

  python -m experiments.collect --config=experiments/configs/pick_place.py --workdir=/tmp/hiwm
  python -m experiments.collect --config=experiments/configs/pick_place.py:quick --workdir=/tmp/hiwm
"""
from experiments.configs import common


def get_config(arg=None):
  return common.task_config("pick_place", arg)
