"""The push task.

  python -m experiments.collect --config=experiments/configs/push.py --workdir=/tmp/hiwm
  python -m experiments.collect --config=experiments/configs/push.py:quick --workdir=/tmp/hiwm
"""
from experiments.configs import common


def get_config(arg=None):
  return common.task_config("push", arg)
