"""Where a world model's long-horizon open-loop error comes from: its tail, and lost latents.

  python -m experiments.wm_error_tail --workdir=/tmp/hiwm/wmx/cloth_frame [--horizon=50]

On the held-out split eval_wm uses (the same windows: a start every `start_stride` steps, from
the real history and hidden state), prints the mean, median and 90th percentile of the error of
the field eval_wm reports (cloth vertices, or Meta-World's object) at --horizon, the share of it
the worst tenth of windows makes, and the copy-last baseline's mean. For a model that carries a
latent (the cloth's pinch, Meta-World's mocap target), it also splits the windows by whether
the rollout's latent ever departs from the real one (integrated from the real observations): a
cloth world model whose cloth is off at a grasp pinches another vertex, and the fold goes
elsewhere. For the windows that lose it, the field's error when the latent departs tells
drift (the model was already off) from a cliff (it was not).
"""
import json

from absl import app, flags
import numpy as np

from hiwm_jax.world_model import evaluate, load_world_model
from hiwm_jax.world_model.data import load_split

_WORKDIR = flags.DEFINE_string("workdir", None, "A world-model work directory.")
_HORIZON = flags.DEFINE_integer("horizon", 50, "Open-loop steps.")
_FIELD = flags.DEFINE_string("field", None, "The position field (default: the model's last).")
flags.mark_flag_as_required("workdir")


def main(argv):
  del argv
  wm, params, config = load_world_model(_WORKDIR.value)
  _, held_out, _ = load_split(config)
  names = [name for name, _ in wm.structure.positions]
  field = _FIELD.value or names[-1]
  if field not in names:
    raise app.UsageError(f"--field must be one of {names}")
  h = _HORIZON.value
  w = evaluate.open_loop_windows(wm, held_out, h, config.world_model.eval.start_stride)
  keep = w["valid"][:, h - 1]  # windows whose episode runs the whole horizon
  w = {k: v[keep] for k, v in w.items()}
  pred, _, latents = evaluate.rollouts(wm, params, w["history"], w["actions"], w["latent"])
  steps_error = evaluate.position_error_cm(wm, np.asarray(pred), w["targets"])[field]
  error = steps_error[:, h - 1]
  copy = np.broadcast_to(w["last"][:, None], w["targets"].shape)
  copy_error = evaluate.position_error_cm(wm, copy, w["targets"])[field][:, h - 1]
  worst = np.sort(error)[::-1][:max(len(error) // 10, 1)]
  out = {"workdir": _WORKDIR.value, "field": field, "horizon": h, "windows": int(len(error)),
         "mean_cm": float(error.mean()), "copy_last_mean_cm": float(copy_error.mean()),
         "median_cm": float(np.median(error)),
         "p90_cm": float(np.percentile(error, 90)), "worst_tenth_share": float(worst.sum() /
                                                                             error.sum())}
  if wm.latent_dim:
    first = evaluate.latent_departures(latents, w["target_latents"])
    lost = first >= 0
    mean = lambda x, where: float(x[where].mean()) if where.any() else None
    # The field's error where the departing step started: drift, or a cliff
    at_departure = evaluate.error_before(steps_error, first)[lost]
    out.update(latent_lost=int(lost.sum()), latent_lost_mean_cm=mean(error, lost),
               latent_kept_mean_cm=mean(error, ~lost),
               latent_kept_copy_last_mean_cm=mean(copy_error, ~lost),
               latent_lost_share=float(error[lost].sum() / error.sum()),
               latent_lost_error_at_departure_cm=None if not lost.any() else {
                   "min": float(at_departure.min()), "median": float(np.median(at_departure)),
                   "max": float(at_departure.max())})
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  app.run(main)
