"""Fit the cloth's written-out physics (world_model/cloth_physics.py) to recorded episodes.

  python -m experiments.fit_cloth_physics --config=experiments/configs/cloth_fold.py \
      --config.data_dir=/tmp/hiwm3

The physics alone is a world model: one with `physics_prior` and an untrained network (its
output layer starts at zero), so the prior's step is the whole step while the gripper holds
the cloth, and the cloth stays as it is otherwise. From the config's constants
(`world_model.physics`), this moves one constant at a time over a few values, keeping a change
that lowers the open-loop error at --horizon steps on the *training* split's windows (eval_wm's
windows: a start every `start_stride` steps); prints each try, the fitted constants as a
config override, and the physics alone on the held-out split beside copy-last. Writes
<--out>/fit_cloth_physics.json with the config.
"""
import json
import os

from absl import app, flags
import jax
from ml_collections import config_flags
import numpy as np

from hiwm_jax import envs
from hiwm_jax.world_model import core, evaluate
from hiwm_jax.world_model.data import load_split

_CONFIG = config_flags.DEFINE_config_file("config", None, "A cloth_fold task config.")
_HORIZON = flags.DEFINE_integer("horizon", 50, "Open-loop steps the fit scores.")
_OUT = flags.DEFINE_string("out", None, "Where to write the result (default: data_dir/task).")
flags.mark_flag_as_required("config")

# The values each constant is tried at (the config's own value is always tried first).
_TRIES = {"damping": (10.0, 20.0, 40.0, 80.0), "pin_rate": (0.3, 0.6, 0.9),
          "iterations": (2, 4, 8), "friction": (0.5, 1.0, 2.0)}


def _physics_alone(config, task, physics: dict):
  """The physics as a world model: unit statistics, an untrained (zero-output) network."""
  cfg = config.world_model.copy_and_resolve_references()
  cfg.physics_prior, cfg.physics = True, physics
  structure = core.obs_structure(task)
  stats = {"mean": np.zeros(task.obs_dim, np.float32), "std": np.ones(task.obs_dim, np.float32)}
  wm = core.make(cfg, task, stats, np.ones(structure.predicted.shape, np.float32))
  return wm, core.init_params(wm, jax.random.PRNGKey(0))


def _errors(config, task, physics, windows, horizons):
  """Mean cloth-vertex error (cm) at each horizon over the windows that run that long."""
  wm, params = _physics_alone(config, task, physics)
  pred = np.asarray(evaluate.rollouts(wm, params, windows["history"], windows["actions"],
                                      windows["latent"])[0])
  error = evaluate.position_error_cm(wm, pred, windows["targets"])["cloth_verts"]
  return {h: float(error[windows["valid"][:, h - 1], h - 1].mean()) for h in horizons}


def main(argv):
  del argv
  config = _CONFIG.value
  if config.task != "cloth_fold":
    raise app.UsageError(f"the written-out physics is the cloth's; --config is for "
                         f"{config.task}")
  task = envs.task_fns(config.task)
  train, held_out, _ = load_split(config)
  h = _HORIZON.value
  horizons = sorted({1, 10, h})
  stride = config.world_model.eval.start_stride
  wm, _ = _physics_alone(config, task, dict(config.world_model.physics))
  windows = evaluate.open_loop_windows(wm, train, h, stride)
  best = dict(config.world_model.physics)
  score = _errors(config, task, best, windows, horizons)
  tries = [{"physics": dict(best), **{f"{k}_step_cm": v for k, v in score.items()}}]
  print(f"{len(windows['history'])} training windows; the config's constants: "
        f"{h}-step {score[h]:.3f} cm")
  print("| constant | value | 1-step (cm) | 10-step (cm) | " f"{h}-step (cm) |\n|---|---|---|---|---|")
  for name, values in _TRIES.items():
    for value in values:
      if value == best[name]:
        continue
      trial = {**best, name: value}
      got = _errors(config, task, trial, windows, horizons)
      tries.append({"physics": trial, **{f"{k}_step_cm": v for k, v in got.items()}})
      print(f"| {name} | {value} | {got[1]:.4f} | {got[10]:.4f} | {got[h]:.4f} |", flush=True)
      if got[h] < score[h]:
        best, score = trial, got
  print("fitted: " + " ".join(f"--config.world_model.physics.{k}={v}" for k, v in best.items()))
  held = evaluate.open_loop_errors(*_physics_alone(config, task, best), held_out, horizons,
                                   stride)
  alone = {k: held[k]["cloth_verts"]["wm"] for k in horizons}
  copy = {k: held[k]["cloth_verts"]["copy_last"] for k in horizons}
  print("held-out split, physics alone / copy-last (cm): " + ", ".join(
      f"{k}-step {alone[k]:.3f} / {copy[k]:.3f}" for k in horizons))
  out = _OUT.value or os.path.join(config.data_dir, config.task)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "fit_cloth_physics.json"), "w") as f:
    json.dump({"config": config.to_dict(), "horizon": h, "fitted": best,
               "training_windows": int(len(windows["history"])), "tries": tries,
               "held_out_physics_alone_cm": alone, "held_out_copy_last_cm": copy}, f,
              indent=2)


if __name__ == "__main__":
  app.run(main)
