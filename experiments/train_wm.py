"""Train the world model on a task's datasets (config.wm_data), held-out episodes kept aside.

  python -m experiments.train_wm --config=experiments/configs/push.py \
      --workdir=/tmp/hiwm/runs/wm_push
  python -m experiments.eval_wm --workdir=/tmp/hiwm/runs/wm_push
Without the base policy's rollouts yet:
  --config.wm_data.optional='("policy_diffusion","policy_flow")'
Re-running with the same workdir resumes from its latest checkpoint.
"""
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax.world_model import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and config go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  wm, _ = train.train_world_model(_CONFIG.value, _WORKDIR.value)
  print(f"trained a {wm.ensemble_size}-member {wm.task.name} world model (risk scale "
        f"{wm.risk_scale:.4g}); checkpoints in {_WORKDIR.value}/checkpoints, TensorBoard logs "
        f"in {_WORKDIR.value}/tensorboard")


if __name__ == "__main__":
  app.run(main)
