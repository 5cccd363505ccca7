"""Per start state: does the world model call each policy's episode as the real world does?

  python -m experiments.episode_agreement --results=results/paper3

For every (task, backbone, variant) in <results>/results.json (paper_table's, as tabled) or else
<results>/*/results.json: the real and WM outcomes at the evaluation seeds, side by side. Where
a policy's eval.json predates per-episode real outcomes, its real evaluation runs again (same
seeds and weights) and must reproduce the stored success count; the outcomes are then added to
that eval.json. Writes <results>/episode_agreement.md and .json.
"""
import glob
import json
import os

import ml_collections
from absl import app, flags

from hiwm_jax import checkpoint, envs, evaluate, pipeline
from hiwm_jax.policies.train import load_policy

_RESULTS = flags.DEFINE_string("results", None, "A paper_table output dir.", required=True)


def _real_outcomes(config, variant: dict) -> list[bool]:
  """The stored per-episode real outcomes, or a rerun of the same evaluation that records them."""
  known = pipeline.stored_outcomes(variant)  # in the results, or recorded in eval.json
  if known is not None:
    return known
  real = variant["real"]
  eval_file = os.path.join(variant["workdir"], "eval.json")
  with open(eval_file) as f:
    stored = json.load(f)
  if stored["real"]["seeds"] != real["seeds"]:
    raise ValueError(f"{eval_file} evaluated seeds {stored['real']['seeds']}, the results "
                     f"{real['seeds']}; rerun experiments.paper_table for these results")
  policy, params, _ = load_policy(variant["workdir"])
  env = envs.make(config.task, max_steps=config.max_steps)
  try:
    again, _ = evaluate.evaluate_real(env, policy, params, real["episodes"], real["seeds"][0],
                                      desc=f"{config.task} {variant['variant']} again")
  finally:
    env.close()
  if again["successes"] != real["successes"]:
    raise RuntimeError(f"{variant['workdir']}: the rerun gave {again['successes']} successes, "
                       f"the stored evaluation {real['successes']}; real evaluation is not "
                       "reproducible here, so its per-episode outcomes cannot be recovered")
  stored["real"]["success"] = again["success"]
  checkpoint.write_json(eval_file, stored)
  return again["success"]


def _load(results_dir: str) -> list[dict]:
  """The chains' results: paper_table's combined results.json (as tabled: evaluated again or
  judged in other world models), else each <run>/results.json."""
  combined = os.path.join(results_dir, "results.json")
  if os.path.exists(combined):
    with open(combined) as f:
      content = json.load(f)
    if "results" in content:
      return content["results"]
  paths = sorted(glob.glob(os.path.join(results_dir, "*", "results.json")))
  if not paths:
    raise app.UsageError(f"no results.json or */results.json under {results_dir}; run "
                         "experiments.paper_table")
  out = []
  for path in paths:
    with open(path) as f:
      out.append(json.load(f))
  return out


def _row(task: str, backbone: str, variant: str, a: dict) -> str:
  rate = a["wm_false_success_rate"]
  return (f"| {task} | {backbone} | {variant} | {a['agreement']:.0%} | {a['both_succeed']} | "
          f"{a['wm_false_success']} | {a['wm_false_failure']} | {a['both_fail']} | "
          f"{'-' if rate is None else f'{rate:.0%}'} |")


def main(argv):
  del argv
  rows, pooled = [], {}  # pooled: task -> (real outcomes, WM outcomes) over all its policies
  for res in _load(_RESULTS.value):
    config = ml_collections.ConfigDict(res["config"])
    for name, v in res["variants"].items():
      real, wm = _real_outcomes(config, v), v["wm"]["success"]
      a = evaluate.episode_agreement(real, wm)
      rows.append({"task": res["task"], "backbone": res["backbone"], "variant": name, **a})
      task_real, task_wm = pooled.setdefault(res["task"], ([], []))
      task_real.extend(real)
      task_wm.extend(wm)
      print(f"{res['task']} {res['backbone']} {name}: agreement {a['agreement']:.0%}")
  lines = ["| task | backbone | variant | agree | both succeed | WM success, real failure | "
           "WM failure, real success | both fail | real failures the WM calls success |",
           "|---|---|---|---|---|---|---|---|---|"]
  lines += [_row(r["task"], r["backbone"], r["variant"], r) for r in rows]
  lines += [_row(task, "all", "all", evaluate.episode_agreement(*pooled[task]))
            for task in sorted(pooled)]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(_RESULTS.value, "episode_agreement.md"), "w") as f:
    f.write(text)
  checkpoint.write_json(os.path.join(_RESULTS.value, "episode_agreement.json"), rows)
  print(text)


if __name__ == "__main__":
  app.run(main)
