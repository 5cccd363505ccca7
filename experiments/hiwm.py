"""The Hi-WM chain for one task config, end to end, and its comparison table.

  python -m experiments.hiwm --config=experiments/configs/push.py:backbone=diffusion \
      --work_dir=/tmp/hiwm/runs/push_diffusion_chain --out=results/push_diffusion
  python -m experiments.hiwm --config=experiments/configs/push.py:quick --work_dir=/tmp/hiwm_quick \
      --out=/tmp/hiwm_quick/results      # the quick variant: one task in minutes
collect -> base policy -> world model -> Hi-WM round(s) -> post-train -> baselines (WM closed
loop, real HG-DAgger) -> real + WM evaluation. Stages already done in --work_dir are reused.
Writes <out>/results.json (with the resolved config), table.md, success.png, wm_vs_real.png.
"""
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Where the chain's models and rounds live.")
_OUT = flags.DEFINE_string("out", None, "Where results.json, the table and plots go.")
flags.mark_flags_as_required(["config", "work_dir", "out"])


def main(argv):
  del argv
  results = pipeline.run_chain(_CONFIG.value, _WORK_DIR.value, _OUT.value)
  print(pipeline.table([results]))
  print(f"results in {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
