"""The main job, until the Hi-WM loop exists: collect every task's data, print the table.

  python -m experiments.collect_all --data_dir=/tmp/hiwm
  python -m experiments.collect_all --tasks=push --config_arg=smoke
"""
import importlib

from absl import app, flags

from hiwm_jax import collect, envs

_TASKS = flags.DEFINE_list("tasks", envs.names(), "Tasks to collect, each with its config file.")
_CONFIG_ARG = flags.DEFINE_string("config_arg", None, "Arg for every task config, e.g. smoke.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/hiwm", "Datasets go to <data_dir>/<task>/.")


def main(argv):
  del argv
  summaries = []
  for task in _TASKS.value:
    config = importlib.import_module(f"experiments.configs.{task}").get_config(_CONFIG_ARG.value)
    config.data_dir = _DATA_DIR.value
    summaries.append(collect.collect_task(config))
  print(collect.summary_table(summaries))


if __name__ == "__main__":
  app.run(main)
