"""Judge a trained world model against held-out real episodes (the config's held-out split).

  python -m experiments.eval_wm --workdir=/tmp/hiwm/runs/wm_push
Prints open-loop position error (cm) at the configured horizons beside copy-the-last-observation,
and WM-vs-simulator success agreement on the held-out split and on --fresh_episodes new
full-horizon simulator episodes (collected episodes stop at the first successful step, so their
final state sits on the success boundary); writes <workdir>/eval_wm.json.
"""
import json
import os

from absl import app, flags

from hiwm_jax.world_model import evaluate, load_world_model
from hiwm_jax.world_model.data import load_split
from hiwm_jax.world_model.real_episodes import full_horizon_episodes

_WORKDIR = flags.DEFINE_string("workdir", None, "A world-model work directory.")
_FRESH = flags.DEFINE_integer("fresh_episodes", 40, "Also judge success on this many new "
                              "full-horizon simulator episodes (0: none).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  wm, params, config = load_world_model(_WORKDIR.value)
  _, held_out, used = load_split(config)
  cfg = config.world_model.eval
  errors = evaluate.open_loop_errors(wm, params, held_out, cfg.horizons, cfg.start_stride)
  agreement = evaluate.success_agreement(wm, params, held_out)
  print(f"{config.task}: {len(held_out)} held-out episodes from {used}")
  print("| horizon | starts | field | WM (cm) | copy last (cm) | copy / WM |\n"
        "|---|---|---|---|---|---|")
  for h, row in errors.items():
    for field, e in row.items():
      if field != "starts":
        print(f"| {h} | {row['starts']} | {field} | {e['wm']:.3f} | {e['copy_last']:.3f} | "
              f"{e['copy_last'] / max(e['wm'], 1e-9):.1f}x |")
  _print_agreement("held-out split (episodes end at first success)", agreement)
  result = {"task": config.task, "datasets": used, "open_loop": errors,
            "success_agreement": agreement}
  if _FRESH.value:
    fresh = full_horizon_episodes(config, _FRESH.value, config.eval.seed_offset + 500_000)
    result["success_agreement_full_horizon"] = evaluate.success_agreement(wm, params, fresh)
    _print_agreement("new full-horizon episodes", result["success_agreement_full_horizon"])
  with open(os.path.join(_WORKDIR.value, "eval_wm.json"), "w") as f:
    json.dump(result, f, indent=2)


def _print_agreement(what: str, a: dict) -> None:
  print(f"success agreement, {what}: {100 * a['agreement']:.1f}% of {a['episodes']} episodes "
        f"({a['real_successes']} real successes, {a['real_failures']} real failures); balanced "
        f"accuracy {100 * a['balanced_accuracy']:.1f}% (TPR {a['true_positive_rate']:.2f}, "
        f"TNR {a['true_negative_rate']:.2f}); by source {a['by_source']}")


if __name__ == "__main__":
  app.run(main)
