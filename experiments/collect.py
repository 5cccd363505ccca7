"""Collect one task's real-world data: expert demos and play episodes, as RLDS datasets.

  python -m experiments.collect --config=experiments/configs/push.py --workdir=/tmp/hiwm
  python -m experiments.collect --config=experiments/configs/push.py --config.collect.num_demos=10
"""
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import collect

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/hiwm", "Datasets go to <workdir>/<task>/.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  print(collect.summary_table([collect.collect_task(_CONFIG.value, _WORKDIR.value)]))


if __name__ == "__main__":
  app.run(main)
