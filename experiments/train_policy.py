"""Train a policy (or fine-tune one with --config.train.init_from=<policy workdir>).

  python -m experiments.train_policy --config=experiments/configs/push.py:backbone=flow \
      --workdir=/tmp/hiwm/runs/push_flow
Re-running with the same workdir resumes from its latest checkpoint.
"""
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax.policies import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and config go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  train.train_policy(_CONFIG.value, _WORKDIR.value)
  print(f"trained; checkpoints in {_WORKDIR.value}/checkpoints, TensorBoard logs in "
        f"{_WORKDIR.value}/tensorboard")


if __name__ == "__main__":
  app.run(main)
