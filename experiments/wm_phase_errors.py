"""Where a cloth world model's one-step error lives: by phase of the grip.

  python -m experiments.wm_phase_errors --workdir=/tmp/hiwm/wmx/cloth

On every step of the held-out split (from the real history and the real pinch), the model's
one-step error on the cloth's vertices (cm), beside copy-last and constant velocity (the last
step's change repeated, and half of it: a damped guess), split by what the gripper does: carry
(holds a vertex before and after), the grasp step, the release step, each of the ten steps
after a release (the cloth falls and settles), and rest (nothing held, ten steps after any
release). Each phase's share of the summed error says where precision would pay off.
For world models that carry the pinch latent (world_model.pinch_latent).
"""
import json
import os

from absl import app, flags
import numpy as np

from hiwm_jax.world_model import evaluate, load_world_model
from hiwm_jax.world_model.data import load_split

_WORKDIR = flags.DEFINE_string("workdir", None, "A cloth world-model work directory.")
flags.mark_flag_as_required("workdir")

SETTLE_STEPS = 10  # steps after a release reported one by one


def phases(held: np.ndarray) -> np.ndarray:
  """Per step t of an episode, from held [T+1] (a vertex pinched at each observation), its
  phase name: what the action at t does to the grip."""
  names, since = [], None  # steps since the last release
  for before, after in zip(held[:-1], held[1:]):
    since = None if since is None else since + 1
    if before and after:
      names.append("carry")
    elif after:
      names.append("grasp step")
    elif before:
      names.append("release step")
      since = 0
    elif since is not None and since <= SETTLE_STEPS:
      names.append(f"{since} after release")
    else:
      names.append("rest")
  return np.array(names)


def main(argv):
  del argv
  wm, params, config = load_world_model(_WORKDIR.value)
  if not wm.pinch_latent:
    raise app.UsageError(f"{_WORKDIR.value} holds no pinch latent (world_model.pinch_latent): "
                         "its grip phases are unknown")
  _, held_out, _ = load_split(config)
  w = evaluate.open_loop_windows(wm, held_out, 1, stride=1)  # every step of every episode
  pred = np.asarray(evaluate.rollouts(wm, params, w["history"], w["actions"], w["latent"])[0])
  true = w["targets"][:, 0]
  last, previous = w["history"][:, -1], w["history"][:, -2]
  field = "cloth_verts"
  guesses = {"wm": pred[:, 0], "copy_last": last, "constant_velocity": 2 * last - previous,
             "half_velocity": last + 0.5 * (last - previous)}
  errors = {k: evaluate.position_error_cm(wm, v, true)[field] for k, v in guesses.items()}
  names = np.concatenate([
      phases(wm.episode_latents(ep["steps"]["observation"], ep["steps"]["action"][:-1]
                                ).sum(-1) > 0.5) for ep in held_out])
  order = (["carry", "grasp step", "release step"] +
           [f"{k} after release" for k in range(1, SETTLE_STEPS + 1)] + ["rest"])
  total = errors["wm"].sum()
  rows = {}
  print(f"| phase | steps | WM (cm) | copy-last | constant velocity | half velocity | "
        f"share of WM error |\n|---|---|---|---|---|---|---|")
  for name in order:
    m = names == name
    if not m.any():
      continue
    rows[name] = {"steps": int(m.sum()), **{k: float(e[m].mean()) for k, e in errors.items()},
                  "share": float(errors["wm"][m].sum() / total)}
    r = rows[name]
    print(f"| {name} | {r['steps']} | {r['wm']:.4f} | {r['copy_last']:.4f} | "
          f"{r['constant_velocity']:.4f} | {r['half_velocity']:.4f} | {r['share']:.2f} |")
  with open(os.path.join(_WORKDIR.value, "wm_phase_errors.json"), "w") as f:
    json.dump({"field": field, "steps": int(len(names)), "phases": rows}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
