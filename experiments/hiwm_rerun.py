r"""Re-runs a finished chain's Hi-WM rounds with one thing changed, against the chain's Hi-WM.

What limits Hi-WM's real gain? Two levers on the world model the person corrects in:
  --world_model=DIR       another (say, more faithful) world model for the rounds;
  --refresh_episodes=N    before each round after the first, the current policy runs N times in
                          the real world, unsupervised, and the world model is fine-tuned on
                          those episodes too (hiwm.refresh_episodes, hiwm.refresh_wm_steps): the
                          person then sees the failures the policy now makes.
Everything else is the chain's: base, data, config, seeds. Where round 0 cannot differ (same
world model, refresh starts after it), it is the chain's own round 0, linked.

  python -m experiments.hiwm_rerun --results=/tmp/paper3_200/push_diffusion/results.json \
      --refresh_episodes=50 --name=refresh --work_root=/tmp/hiwm/rerun --out=/tmp/rerun_refresh

writes <out>/<run>/results.json: the chain's results at --eval_episodes evaluation seeds with
its Hi-WM variant replaced by the re-run one, judged, like every other variant, in the chain's
world model (`wm`); `wm_rounds` holds its success in the world model its rounds used. Feed it
to `paper_table --only_table --out=<out>`.
"""
import json
import os

from absl import app, flags

from hiwm_jax import checkpoint, pipeline

_RESULTS = flags.DEFINE_string("results", None, "A finished chain's results.json.", required=True)
_NAME = flags.DEFINE_string("name", "rerun", "Suffix of the work directory: <run>_<name>.")
_WORLD_MODEL = flags.DEFINE_string("world_model", "", "World model for the rounds (default: "
                                   "the chain's).")
_REFRESH_EPISODES = flags.DEFINE_integer("refresh_episodes", 0, "Real rollouts per refresh.")
_REFRESH_WM_STEPS = flags.DEFINE_integer("refresh_wm_steps", 2000, "World-model fine-tune steps "
                                         "per refresh.")
_WORK_ROOT = flags.DEFINE_string("work_root", "/tmp/hiwm/rerun", "Where rounds and models go.")
_OUT = flags.DEFINE_string("out", "/tmp/rerun", "Where results go.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 200, "Evaluation seeds per policy.")


def link_round_zero(chain: dict, config, work_dir: str) -> bool:
  """Links the chain's Hi-WM round 0 (round dir, policy, kept data) into `work_dir`, where the
  re-run would compute the same; False if the chain's round 0 is not on disk."""
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
  base = chain["variants"]["base"]["workdir"]
  chain_wm = config.hiwm.world_model or os.path.join(os.path.dirname(base), "world_model")
  rounds_wm = os.path.abspath(_WORLD_MODEL.value) if _WORLD_MODEL.value else chain_wm
  config.hiwm.update(world_model=rounds_wm, refresh_episodes=_REFRESH_EPISODES.value,
                     refresh_wm_steps=_REFRESH_WM_STEPS.value)
  work_dir = os.path.join(_WORK_ROOT.value, f"{chain['run']}_{_NAME.value}")
  os.makedirs(work_dir, exist_ok=True)
  checkpoint.save_config(work_dir, config)
  if rounds_wm == chain_wm and link_round_zero(chain, config, work_dir):
    print(f"round 0: the chain's own, linked into {work_dir}")
  policy, summaries = pipeline.run_rounds(config, base, rounds_wm, work_dir, "hiwm")
  budget = sum(s["corrective_steps"] for s in summaries)
  real_steps = sum(s.get("refresh", {}).get("real_steps", 0) for s in summaries)
  results = pipeline.evaluate_again(chain, _EVAL_EPISODES.value)
  config.eval.num_episodes = _EVAL_EPISODES.value
  file = f"eval_{_EVAL_EPISODES.value}.json"
  new = pipeline.evaluate_policy(config, policy, chain_wm, "hiwm", (real_steps, budget), file)
  if rounds_wm != chain_wm:
    new["wm_rounds"] = pipeline.evaluate_policy(
        config, policy, rounds_wm, "hiwm", (real_steps, budget),
        f"eval_{_EVAL_EPISODES.value}_rounds_wm.json")["wm"]
  old = results["variants"]["hiwm"]
  results["variants"]["hiwm"] = new
  results["hiwm_rounds"] = summaries
  results["rerun"] = {"world_model": rounds_wm, "refresh_episodes": _REFRESH_EPISODES.value,
                      "refresh_wm_steps": _REFRESH_WM_STEPS.value, "chain_hiwm": old}
  results["config"] = json.loads(config.to_json_best_effort())
  out_dir = os.path.join(_OUT.value, chain["run"])
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.write_json(os.path.join(out_dir, pipeline.RESULTS_FILE), results)
  checkpoint.write_text(os.path.join(out_dir, "table.md"), pipeline.table([results]) + "\n")
  pct = lambda v, k: 100 * v[k]["success_rate"]
  print(f"{chain['run']}: Hi-WM real {pct(old, 'real'):.1f}% -> {pct(new, 'real'):.1f}% "
        f"(in the chain's world model {pct(old, 'wm'):.1f}% -> {pct(new, 'wm'):.1f}%); "
        f"{real_steps} real steps of refresh rollouts, {budget} corrective steps (chain: "
        f"{old['corrective_steps']}); base {pct(results['variants']['base'], 'real'):.1f}%")


if __name__ == "__main__":
  app.run(main)
