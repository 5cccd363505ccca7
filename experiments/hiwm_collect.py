"""One Hi-WM round: the policy rolls out in the world model, the simulated person corrects it.

  python -m experiments.hiwm_collect --config=experiments/configs/push.py \
      --policy=/tmp/hiwm/runs/push_diffusion_base --world_model=/tmp/hiwm/runs/wm_push \
      --out=/tmp/hiwm/runs/hiwm_push_r1
Writes <out>/session (the intervention tree), <out>/hiwm_summary.json and the kept corrections
as an RLDS dataset at <data_dir>/<task>/<config.hiwm.dataset> (refused if it already exists).
"""
import os

from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import hiwm_round

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.")
_POLICY = flags.DEFINE_string("policy", None, "The policy's work directory.")
_WORLD_MODEL = flags.DEFINE_string("world_model", None, "The world model's work directory.")
_OUT = flags.DEFINE_string("out", None, "A new directory for the session and the summary.")
_CLOSED_LOOP = flags.DEFINE_bool(
    "closed_loop", False, "The WM closed-loop baseline instead: no person; the rollouts the "
    "world model judges successful are kept (give a different --config.hiwm.dataset).")
flags.mark_flags_as_required(["config", "policy", "world_model", "out"])


def main(argv):
  del argv
  config = _CONFIG.value
  dataset = os.path.join(config.data_dir, config.task, config.hiwm.dataset)
  summary = hiwm_round.run_round(config, _POLICY.value, _WORLD_MODEL.value, _OUT.value, dataset,
                                 person=not _CLOSED_LOOP.value)
  print(hiwm_round.summary_line(summary))


if __name__ == "__main__":
  app.run(main)
