"""Collect one task's real-world data as RLDS datasets in <data_dir>/<task>/.

Expert demos and play episodes:
  python -m experiments.collect --config=experiments/configs/push.py --config.data_dir=/tmp/hiwm
A trained policy's rollouts, failures included (source=policy), as the dataset
"policy_<backbone>" (the world model's data):
  python -m experiments.collect --config=experiments/configs/push.py \
      --policy=/tmp/hiwm/runs/push_diffusion --config.collect.num_policy=100
"""
import json

from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import collect

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.", lock_config=True)
_POLICY = flags.DEFINE_string("policy", None, "A policy work directory: record its rollouts.")
_NAME = flags.DEFINE_string("name", None, "Dataset name for --policy rollouts (default "
                            "policy_<the policy's backbone>).")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  if _POLICY.value:
    print(json.dumps(collect.collect_policy_rollouts(_CONFIG.value, _POLICY.value, _NAME.value),
                     indent=2))
  else:
    print(collect.summary_table([collect.collect_task(_CONFIG.value)]))


if __name__ == "__main__":
  app.run(main)
