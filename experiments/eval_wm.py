"""Judge a trained world model against held-out real episodes (the config's held-out split).

  python -m experiments.eval_wm --workdir=/tmp/hiwm/runs/wm_push
Prints open-loop position error (cm) at the configured horizons beside copy-the-last-observation,
and WM-vs-simulator success agreement on the held-out split and on --fresh_episodes new
full-horizon simulator episodes (collected episodes stop at the first successful step, so their
final state sits on the success boundary); writes <workdir>/eval_wm.json, with the error at
every horizon up to the longest, drawn in <workdir>/eval_wm_error_growth.png. The held-out
open-loop error is also broken down by dataset (a few failing base-policy episodes can make
much of it), and each disagreement on success is counted where the replay's hidden state (the
cloth's grasp) had departed from the real one.

  python -m experiments.eval_wm --workdir=/tmp/hiwm/wmx/push_cmd --datasets=push_flow_hgdagger
judges it instead, the same way, on every episode of datasets it was not trained on (here real
HG-DAgger sessions, from states its own data rarely shows), each written to
<workdir>/eval_wm_<dataset>.json (and _error_growth.png); eval_wm.json is left as it was. The
longest horizon's error is also split by the first real success: windows before it, holding it,
and after it (in episodes that run past success, such as `collect.full_horizon_episodes`).

  python -m experiments.eval_wm --workdir=/tmp/hiwm/wmx/cloth --step=3000 --fresh_episodes=0
judges an earlier checkpoint (one the run kept) instead of the last, into
<workdir>/eval_wm_step3000.json (and _error_growth.png): how the figures moved with training.
"""
import json
import os

from absl import app, flags
import numpy as np

from hiwm_jax import plots
from hiwm_jax.collect import full_horizon_episodes
from hiwm_jax.world_model import evaluate, load_world_model
from hiwm_jax.world_model.data import load_episodes, load_split

_WORKDIR = flags.DEFINE_string("workdir", None, "A world-model work directory.")
_FRESH = flags.DEFINE_integer("fresh_episodes", 40, "Also judge success on this many new "
                              "full-horizon simulator episodes (0: none).")
_DATASETS = flags.DEFINE_list("datasets", [], "Judge every episode of these datasets instead "
                              "(names under the config's data_dir/task), each on its own.")
_TRAIN = flags.DEFINE_integer("train_episodes", 0, "Also measure open-loop error on this many "
                              "of its training episodes (a fixed random sample): beside the "
                              "held-out figure, it tells underfitting from overfitting.")
_STEP = flags.DEFINE_integer("step", None, "Judge this checkpoint step (default: the last); "
                             "results go to eval_wm_step<step>.json.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  wm, params, config = load_world_model(_WORKDIR.value, _STEP.value)
  suffix = "" if _STEP.value is None else f"_step{_STEP.value}"
  try:
    extra = {name: load_episodes(config, name) for name in _DATASETS.value}
  except FileNotFoundError as e:
    raise app.UsageError(f"--datasets: {e}") from None
  for name, episodes in extra.items():
    print(f"\n{name}: all {len(episodes)} episodes (not in the held-out split)")
    result = {"task": config.task, "dataset": name, "episodes": len(episodes),
              **_judge(wm, params, config, episodes, name, f"eval_wm_{name}{suffix}")}
    result["open_loop_by_success_phase"] = _by_success_phase(wm, params, config, episodes)
    with open(os.path.join(_WORKDIR.value, f"eval_wm_{name}{suffix}.json"), "w") as f:
      json.dump(result, f, indent=2)
  if extra:
    return
  train, held_out, used = load_split(config)
  print(f"{config.task}: {len(held_out)} held-out episodes from {used}")
  result = {"task": config.task, "datasets": used, **_judge(
      wm, params, config, held_out, "held-out split (episodes end at first success)",
      f"eval_wm{suffix}")}
  result["open_loop_by_dataset"] = _by_dataset(wm, params, config, held_out)
  if _TRAIN.value:
    pick = np.random.default_rng(0).choice(len(train), min(_TRAIN.value, len(train)),
                                           replace=False)
    print(f"\nopen loop on {len(pick)} of its {len(train)} training episodes:")
    result["open_loop_train_sample"] = _open_loop(wm, params, config, [train[i] for i in pick])
    result["train_sample_episodes"] = int(len(pick))
    _print_errors(result["open_loop_train_sample"])
  if _FRESH.value:
    fresh = full_horizon_episodes(config, _FRESH.value, config.eval.seed_offset + 500_000,
                                  "held-out real episodes")
    result["success_agreement_full_horizon"] = evaluate.success_agreement(wm, params, fresh)
    _print_agreement("new full-horizon episodes", result["success_agreement_full_horizon"])
  if _STEP.value is not None:
    result["step"] = _STEP.value
  with open(os.path.join(_WORKDIR.value, f"eval_wm{suffix}.json"), "w") as f:
    json.dump(result, f, indent=2)


def _judge(wm, params, config, episodes, what: str, name: str) -> dict:
  """Open-loop errors and success agreement on `episodes`, printed as tables; the error at
  every horizon drawn into <workdir>/<name>_error_growth.png."""
  cfg = config.world_model.eval
  curves = evaluate.open_loop_curves(wm, params, episodes, max(cfg.horizons), cfg.start_stride)
  path = os.path.join(_WORKDIR.value, f"{name}_error_growth.png")
  plots.error_growth(curves, path, f"{config.task} world model, open loop on {what}")
  result = {"open_loop": evaluate.at_horizons(curves, cfg.horizons),
            "open_loop_curve": _listed(curves),
            "success_agreement": evaluate.success_agreement(wm, params, episodes)}
  _print_errors(result["open_loop"])
  print(f"error at every horizon: {path}")
  _print_agreement(what, result["success_agreement"])
  return result


def _listed(tree):
  """Arrays as JSON lists, NaN (no window that long) as null."""
  if isinstance(tree, dict):
    return {k: _listed(v) for k, v in tree.items()}
  return [None if np.isnan(x) else float(x) if isinstance(x, float) else int(x)
          for x in np.asarray(tree).tolist()]


def _open_loop(wm, params, config, episodes) -> dict:
  """Open-loop errors on `episodes` at the config's horizons and start stride."""
  cfg = config.world_model.eval
  return evaluate.open_loop_errors(wm, params, episodes, cfg.horizons, cfg.start_stride)


def _by_dataset(wm, params, config, episodes) -> dict:
  """Open-loop errors of `episodes` per dataset, printed at the longest horizon with each
  dataset's share of the summed error: which data a held-out figure is made of."""
  names = dict.fromkeys(ep["episode_metadata"]["dataset"] for ep in episodes)
  out = {}
  for name in names:
    subset = [ep for ep in episodes if ep["episode_metadata"]["dataset"] == name]
    out[name] = {"episodes": len(subset), **_open_loop(wm, params, config, subset)}
  h = max(config.world_model.eval.horizons)
  field = wm.structure.positions[-1][0]  # the headline field
  rows = {name: r[h] for name, r in out.items()}
  total = sum(r[field]["wm"] * r["starts"] for r in rows.values() if r["starts"])
  print(f"\nheld-out split by dataset, {h} steps, {field}:\n"
        "| dataset | episodes | starts | WM (cm) | copy last (cm) | copy / WM | "
        "share of WM error |\n"
        "|---|---|---|---|---|---|---|")
  for name, r in rows.items():
    if r["starts"]:
      e = r[field]
      print(f"| {name} | {out[name]['episodes']} | {r['starts']} | {e['wm']:.3f} | "
            f"{e['copy_last']:.3f} | {e['copy_last'] / max(e['wm'], 1e-9):.1f}x | "
            f"{100 * e['wm'] * r['starts'] / max(total, 1e-12):.0f}% |")
    else:
      print(f"| {name} | {out[name]['episodes']} | 0 | | | | |")
  return out


def _by_success_phase(wm, params, config, episodes) -> dict:
  """The longest horizon's error before, across and after each episode's first success
  (episodes that run past it: the fold laid down and settling), printed."""
  cfg = config.world_model.eval
  out = evaluate.success_phase_errors(wm, params, episodes, max(cfg.horizons), cfg.start_stride)
  print(f"by the first real success, {out['horizon']} steps, {out['field']}:\n"
        "| windows | starts | WM (cm) | copy last (cm) |\n|---|---|---|---|")
  for phase in ("before_success", "holding_success", "after_success"):
    r = out[phase]
    if r["starts"]:
      print(f"| {phase.replace('_', ' ')} | {r['starts']} | {r['wm']:.3f} | {r['copy_last']:.3f} |")
  return out


def _print_errors(errors: dict) -> None:
  print("| horizon | starts | field | WM (cm) | copy last (cm) | copy / WM |\n"
        "|---|---|---|---|---|---|")
  for h, row in errors.items():
    for field, e in row.items():
      if field != "starts":
        print(f"| {h} | {row['starts']} | {field} | {e['wm']:.3f} | {e['copy_last']:.3f} | "
              f"{e['copy_last'] / max(e['wm'], 1e-9):.1f}x |")


def _print_agreement(what: str, a: dict) -> None:
  print(f"success agreement, {what}: {100 * a['agreement']:.1f}% of {a['episodes']} episodes "
        f"({a['real_successes']} real successes, {a['real_failures']} real failures); balanced "
        f"accuracy {100 * a['balanced_accuracy']:.1f}% (TPR {a['true_positive_rate']:.2f}, "
        f"TNR {a['true_negative_rate']:.2f}); by source {a['by_source']}; "
        f"{a['disagreements_after_latent_departure']} of {a['disagreements']} disagreements after "
        "the replay's hidden state (the cloth's grasp) departed from the real one"
        + _departures(a))


def _departures(a: dict) -> str:
  """How far the replays that departed had drifted the step before, if any did."""
  errors = [e for e in a["error_before_departure_cm"] if e is not None]
  if not errors:
    return ""
  return (f" (in {len(errors)} of {a['episodes']} replays; their error the step before: median "
          f"{np.median(errors):.2f} cm, {sum(e < 0.3 for e in errors)} under 0.3 cm)")


if __name__ == "__main__":
  app.run(main)
