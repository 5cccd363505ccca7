r"""Hi-WM with the world model refreshed between rounds, against a finished chain's Hi-WM.

A chain's world model rates its own Hi-WM policies far above their real success (results/
paper3_200): the person corrects the failures the old data show, and misses those the policy
now makes. Here, before each round after the first, the current policy runs
`--refresh_episodes` times in the real world, unsupervised, and the world model is fine-tuned
on those episodes too (hiwm.refresh_episodes, hiwm.refresh_wm_steps). Round 0 does not depend
on it, so it is the chain's own round 0 (linked, with its data and policy).

  python -m experiments.hiwm_refresh --results=/tmp/paper3_200/push_diffusion/results.json \
      --work_root=/tmp/hiwm/refresh --out=/tmp/refresh

writes <out>/<run>/results.json: the chain's results at --eval_episodes evaluation seeds with
its Hi-WM variant replaced by the refreshed one (real success, and WM success in the chain's
world model, as for every other variant), for `paper_table --only_table --out=<out>`.
"""
import json
import os

from absl import app, flags

from hiwm_jax import checkpoint, hiwm_round, pipeline

_RESULTS = flags.DEFINE_string("results", None, "A finished chain's results.json.", required=True)
_REFRESH_EPISODES = flags.DEFINE_integer("refresh_episodes", 50, "Real rollouts per refresh.")
_REFRESH_WM_STEPS = flags.DEFINE_integer("refresh_wm_steps", 2000, "World-model fine-tune steps "
                                         "per refresh.")
_WORK_ROOT = flags.DEFINE_string("work_root", "/tmp/hiwm/refresh", "Where rounds and models go.")
_OUT = flags.DEFINE_string("out", "/tmp/refresh", "Where results go.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 200, "Evaluation seeds per policy.")


def link_round_zero(chain: dict, config, work_dir: str) -> bool:
  """Links the chain's Hi-WM round 0 (round dir, policy, kept data) into `work_dir`, where a
  refreshed chain would compute the same; False if the chain's round 0 is not on disk."""
  chain_dir = os.path.dirname(os.path.normpath(chain["variants"]["hiwm"]["workdir"]))
  _, round_dir, policy_dir = pipeline.round_paths(chain_dir, "hiwm", 0)
  data = os.path.join(config.data_dir, config.task, f"{chain['run']}_hiwm_r0")
  if not all(os.path.exists(p) for p in (round_dir, policy_dir)):
    return False
  name, new_round, new_policy = pipeline.round_paths(work_dir, "hiwm", 0)
  links = {new_round: round_dir, new_policy: policy_dir}
  if chain["hiwm_rounds"][0]["dataset"]:
    links[os.path.join(config.data_dir, config.task, name)] = os.path.realpath(data)
  for link, target in links.items():
    if not os.path.lexists(link):
      os.symlink(target, link)
  return True


def main(argv):
  del argv
  with open(_RESULTS.value) as f:
    chain = json.load(f)
  config = pipeline.chain_config(chain)
  config.hiwm.refresh_episodes = _REFRESH_EPISODES.value
  config.hiwm.refresh_wm_steps = _REFRESH_WM_STEPS.value
  work_dir = os.path.join(_WORK_ROOT.value, f"{chain['run']}_refresh")
  os.makedirs(work_dir, exist_ok=True)
  checkpoint.save_config(work_dir, config)
  if link_round_zero(chain, config, work_dir):
    print(f"round 0: the chain's own, linked into {work_dir}")
  base = chain["variants"]["base"]["workdir"]
  wm_dir = config.hiwm.world_model or os.path.join(os.path.dirname(base), "world_model")
  policy, summaries = pipeline.run_rounds(config, base, wm_dir, work_dir, "hiwm")
  budget = sum(s["corrective_steps"] for s in summaries)
  real_steps = sum(s.get("refresh", {}).get("real_steps", 0) for s in summaries)
  results = pipeline.evaluate_again(chain, _EVAL_EPISODES.value)
  config.eval.num_episodes = _EVAL_EPISODES.value
  new = pipeline.evaluate_policy(config, policy, wm_dir, "hiwm", (real_steps, budget),
                                 f"eval_{_EVAL_EPISODES.value}.json")
  old = results["variants"]["hiwm"]
  results["variants"]["hiwm"] = new
  results["hiwm_rounds"] = summaries
  results["refresh"] = {"episodes": _REFRESH_EPISODES.value,
                        "wm_steps": _REFRESH_WM_STEPS.value, "chain_hiwm": old}
  results["config"] = json.loads(config.to_json_best_effort())
  out_dir = os.path.join(_OUT.value, chain["run"])
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.write_json(os.path.join(out_dir, pipeline.RESULTS_FILE), results)
  checkpoint.write_text(os.path.join(out_dir, "table.md"), pipeline.table([results]) + "\n")
  pct = lambda v, k: 100 * v[k]["success_rate"]
  print(f"{chain['run']}: Hi-WM real {pct(old, 'real'):.1f}% -> {pct(new, 'real'):.1f}% with "
        f"refresh (WM {pct(old, 'wm'):.1f}% -> {pct(new, 'wm'):.1f}%); {real_steps} real "
        f"steps of refresh rollouts, {budget} corrective steps (chain: "
        f"{old['corrective_steps']}); base {pct(results['variants']['base'], 'real'):.1f}%")


if __name__ == "__main__":
  app.run(main)
