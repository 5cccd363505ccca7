"""Branches per failure state: Hi-WM's first round with K corrections per failure, for each K.

  python -m experiments.ablate_branches --config=experiments/configs/pick_place.py:backbone=diffusion \
      --config.hiwm.world_model=/tmp/hiwm/wmx/pick_place_cmd --config.eval.num_episodes=200 \
      --work_dir=/tmp/hiwm/chains6/pick_place_diffusion --ks=1,4,16 --out=/tmp/ablation
Needs the chain in --work_dir run first (experiments.hiwm): its base policy and world model.
The rollouts, the gate and so the corrected failure states are the same for every K; each K
fine-tunes the base once on its own corrections. Writes <out>/ablation.md and ablation.json
(with the resolved config).
"""
import json
import os

from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import checkpoint, pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "A finished chain's work directory.")
_KS = flags.DEFINE_list("ks", ["1", "4", "16"], "Branches per failure state.")
_OUT = flags.DEFINE_string("out", None, "Where ablation.md and ablation.json go.")
flags.mark_flags_as_required(["config", "work_dir", "out"])


def main(argv):
  del argv
  try:
    ks = [int(k) for k in _KS.value]
  except ValueError:
    raise app.UsageError(f"--ks must be whole numbers, e.g. 1,4,16; got {_KS.value}") from None
  if min(ks) < 1:
    raise app.UsageError(f"--ks must be >= 1; got {ks}")
  config = _CONFIG.value
  rows = pipeline.ablate_branches(config, _WORK_DIR.value, ks)
  text = pipeline.ablation_table(config.task, config.policy.backbone, rows)
  os.makedirs(_OUT.value, exist_ok=True)
  checkpoint.save_config(_OUT.value, config)
  with open(os.path.join(_OUT.value, "ablation.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(_OUT.value, "ablation.json"), "w") as f:
    json.dump({"task": config.task, "backbone": config.policy.backbone, "rows": rows,
               "config": json.loads(config.to_json_best_effort())}, f, indent=2)
  print(text)


if __name__ == "__main__":
  app.run(main)
