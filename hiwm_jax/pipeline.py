"""The whole Hi-WM chain for one (task, backbone) config, and the comparison it is judged by.

    collect -> base policy -> policy rollouts -> world model -> Hi-WM rounds -> post-train
            -> baselines (WM closed loop, real-world HG-DAgger) -> real and WM evaluation

Each stage writes into `<work_dir>/<stage>` and is skipped when its output is already there, so
an interrupted chain resumes where it stopped. Results (with the resolved config) go to
`<out_dir>`: results.json, table.md and plots.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from hiwm_jax import checkpoint, collect, envs, evaluate, hgdagger, hiwm_round, posttrain
from hiwm_jax import world_model
from hiwm_jax.policies.train import load_policy, train_policy

VARIANTS = ("base", "wm_closed_loop", "hgdagger", "hiwm")
RESULTS_FILE = "results.json"


def _json(path: str, value=None):
  if value is None:
    with open(path) as f:
      return json.load(f)
  checkpoint.write_json(path, value)
  return value


def _has_checkpoint(workdir: str) -> bool:
  return os.path.isdir(os.path.join(workdir, "checkpoints"))


def _dataset(config, name: str) -> str:
  return os.path.join(config.data_dir, config.task, name)


def _policy(config, workdir: str, train: Callable[[], object], log) -> str:
  if _has_checkpoint(workdir) and os.path.exists(os.path.join(workdir, "trained")):
    log(f"  reuse {workdir}")
    return workdir
  log(f"  train {workdir}")
  train()
  open(os.path.join(workdir, "trained"), "w").close()
  return workdir


def run_chain(config: ml_collections.ConfigDict, work_dir: str, out_dir: str,
              log=print) -> dict:
  """Runs (or resumes) the chain; returns and writes the results."""
  if config.hiwm.rounds < 1:
    raise ValueError(f"hiwm.rounds must be >= 1 (each round corrects, then post-trains); got "
                     f"{config.hiwm.rounds}")
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.save_config(out_dir, config)
  run = os.path.basename(os.path.normpath(work_dir))
  w = lambda *p: os.path.join(work_dir, *p)

  log(f"[1/6] data for {config.task}")
  if not os.path.exists(_dataset(config, "demos")):
    collect.collect_task(config)
  log("[2/6] base policy")
  base = _policy(config, w("base"), lambda: train_policy(config, w("base")), log)
  log("[3/6] world model (from demos, play and the base policy's real rollouts)")
  wm_dir = config.hiwm.world_model or w("world_model")
  if not _has_checkpoint(wm_dir):
    own = f"policy_{config.policy.backbone}"  # the base policy's real rollouts
    if own in config.wm_data.datasets and not os.path.exists(_dataset(config, own)):
      collect.collect_policy_rollouts(config, base, own)
    world_model.train_world_model(config, wm_dir)

  log(f"[4/6] Hi-WM: {config.hiwm.rounds} round(s) of corrections in the world model")
  hiwm_policy, hiwm_summaries = run_rounds(config, base, wm_dir, work_dir, "hiwm", log)

  log("[5/6] baselines: WM closed loop (as many rounds and rollouts), real-world HG-DAgger "
      "(same corrective-step budget)")
  cl_policy, closed_loop = run_rounds(config, base, wm_dir, work_dir, "wm_closed_loop", log)
  budget = sum(s["corrective_steps"] for s in hiwm_summaries)
  name = f"{run}_hgdagger"
  hg_file = w("hgdagger_summary.json")
  if not os.path.exists(hg_file):
    _json(hg_file, hgdagger.run_hgdagger(config, base, max(1, budget), _dataset(config, name)))
  hg = _json(hg_file)
  if hg["corrective_budget"] != max(1, budget):
    raise ValueError(
        f"{hg_file} holds an HG-DAgger run with a budget of {hg['corrective_budget']} corrective "
        f"steps, but the Hi-WM rounds now spent {budget} (did hiwm.rounds change?). To rerun it "
        f"at the new budget, move {hg_file}, {w('hgdagger_policy')} and {hg['dataset']} aside.")
  hg_config = hgdagger_posttrain_config(config)
  _check_steps(w("hgdagger_policy"), hg_config.posttrain.steps)
  hg_policy = _policy(config, w("hgdagger_policy"), lambda: posttrain.posttrain(
      hg_config, base, tuple(config.policy_data.datasets) + (name,), w("hgdagger_policy")), log)

  log("[6/6] evaluation: real (simulator) and in the world model, same start states")
  policies = dict(zip(VARIANTS, (base, cl_policy, hg_policy, hiwm_policy)))
  demo_steps = _demo_steps(config)
  refresh_steps = lambda summaries: sum(s.get("refresh", {}).get("real_steps", 0)
                                       for s in summaries)  # hiwm.refresh_episodes' rollouts
  cost = {  # real-world steps each variant used beyond the base's demos, and corrective steps
      "base": (0, 0), "wm_closed_loop": (refresh_steps(closed_loop), 0),
      "hgdagger": (hg["real_steps"], hg["corrective_steps"]),
      "hiwm": (refresh_steps(hiwm_summaries), budget)}
  results = {"task": config.task, "backbone": config.policy.backbone, "run": run,
             "demo_steps": demo_steps, "hiwm_rounds": hiwm_summaries,
             "wm_closed_loop_rounds": closed_loop, "hgdagger": hg, "variants": {},
             "config": json.loads(config.to_json_best_effort())}
  for variant, workdir in policies.items():
    results["variants"][variant] = evaluate_policy(config, workdir, wm_dir, variant,
                                                   cost[variant])
    v = results["variants"][variant]
    log(f"  {variant:15s} real {100 * v['real']['success_rate']:.0f}%  "
        f"WM {100 * v['wm']['success_rate']:.0f}%")
  _json(os.path.join(out_dir, RESULTS_FILE), results)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(table([results]) + "\n")
  from hiwm_jax import plots  # matplotlib only where pictures are drawn
  plots.success_bars([results], os.path.join(out_dir, "success.png"))
  plots.wm_vs_real([results], os.path.join(out_dir, "wm_vs_real.png"))
  return results


def run_rounds(config, base: str, wm_dir: str, work_dir: str, mode: str,
               log=print) -> tuple[str, list]:
  """`config.hiwm.rounds` rounds of: roll the current policy out in the world model, keep data
  (mode "hiwm": the person's corrections; "wm_closed_loop": the rollouts the world model judges
  successful, no person), fine-tune the current policy on demos + everything kept so far. Every
  round starts from the same held-out start states, or new ones (`hiwm.new_starts_each_round`);
  returns (final policy dir, round summaries)."""
  current, kept, summaries, refreshed = base, [], [], []
  for r in range(config.hiwm.rounds):
    name, round_dir, policy_dir = round_paths(work_dir, mode, r)
    refresh = None
    if r > 0 and config.hiwm.get("refresh_episodes"):
      wm_dir, refresh = _refresh_world_model(config, current, wm_dir, work_dir, mode, r,
                                             refreshed, log)
    if not os.path.exists(os.path.join(round_dir, hiwm_round.SUMMARY_FILE)):
      hiwm_round.run_round(config, current, wm_dir, round_dir, _dataset(config, name),
                           person=mode == "hiwm", round_index=r)
    summary = _json(os.path.join(round_dir, hiwm_round.SUMMARY_FILE))
    if refresh:
      summary["refresh"] = refresh
    log("  " + hiwm_round.summary_line(summary))
    summaries.append(summary)
    if summary["dataset"]:
      kept.append(name)
    else:
      fix = ("loosen config.corrector (gates, num_branches, keep)" if mode == "hiwm" else
             "raise config.hiwm.num_rollouts")
      log(f"  WARNING: {mode} round {r} kept nothing; it post-trains on the data so far. To keep "
          f"more, {fix} or give the world model more steps (world_model.train.steps).")
    datasets = tuple(config.policy_data.datasets) + tuple(kept)
    current = _policy(config, policy_dir, lambda: posttrain.posttrain(
        config, current, datasets, policy_dir), log)
  return current, summaries


REFRESH_SEED_OFFSET = 400_000  # real rollouts that refresh the world model: round r, r * 1000 on


def _refresh_world_model(config, policy_dir: str, wm_dir: str, work_dir: str, mode: str,
                         r: int, refreshed: list, log) -> tuple[str, dict]:
  """Rolls `policy_dir` out hiwm.refresh_episodes times in the real world, adds the episodes
  (and those of earlier refreshes, listed in `refreshed`, which grows) to the world model's
  data and fine-tunes `wm_dir` on it; returns (the refreshed world model's dir, its cost)."""
  run = os.path.basename(os.path.normpath(work_dir))
  name = f"{run}_{mode}_real_r{r}"
  out_dir = os.path.join(work_dir, f"{mode}_world_model_r{r}")
  cost_file = os.path.join(out_dir, "refresh.json")
  c = copy.deepcopy(config)
  if not os.path.exists(_dataset(config, name)):
    log(f"  refresh: {config.hiwm.refresh_episodes} real rollouts of {policy_dir}")
    c.collect.update(num_policy=config.hiwm.refresh_episodes,
                     policy_seed_offset=REFRESH_SEED_OFFSET + 1000 * r)
    stats = collect.collect_policy_rollouts(c, policy_dir, name)[name]
    os.makedirs(out_dir, exist_ok=True)
    _json(cost_file, {"dataset": name, "real_steps": stats["steps"], **stats})
  refreshed.append(name)
  c.wm_data.datasets = tuple(config.wm_data.datasets) + tuple(refreshed)
  c.world_model.train.update(init_from=os.path.abspath(wm_dir),
                             steps=config.hiwm.refresh_wm_steps)
  if not os.path.exists(os.path.join(out_dir, "trained")):
    log(f"  refresh: fine-tune the world model on them, {config.hiwm.refresh_wm_steps} steps")
    world_model.train_world_model(c, out_dir)
    open(os.path.join(out_dir, "trained"), "w").close()
  return out_dir, _json(cost_file)


def hgdagger_posttrain_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config HG-DAgger's policy is fine-tuned with: posttrain.hgdagger_steps steps, or by
  default as many as Hi-WM's rounds take together (each round fine-tunes the last round's
  policy for posttrain.steps), so the baseline is not under-trained against Hi-WM."""
  out = copy.deepcopy(config)
  steps = config.posttrain.get("hgdagger_steps") or config.hiwm.rounds * config.posttrain.steps
  out.posttrain.steps = int(steps)
  return out


def _check_steps(workdir: str, steps: int) -> None:
  """Refuses a trained policy in `workdir` fine-tuned for another number of steps."""
  if os.path.exists(os.path.join(workdir, "trained")):
    trained = checkpoint.load_config(workdir).train.steps
    if trained != steps:
      raise ValueError(f"{workdir} was fine-tuned for {trained} steps; the config now asks for "
                       f"{steps} (posttrain.hgdagger_steps, or hiwm.rounds x posttrain.steps). "
                       f"To fine-tune it again, move {workdir} aside.")


def round_paths(work_dir: str, mode: str, r: int) -> tuple[str, str, str]:
  """(dataset name, round dir, post-trained policy dir) of round r of `mode` in a chain."""
  run = os.path.basename(os.path.normpath(work_dir))
  return (f"{run}_{mode}_r{r}", os.path.join(work_dir, f"{mode}_round{r}"),
          os.path.join(work_dir, f"{mode}_policy_r{r}"))


def evaluate_policy(config, policy_dir: str, wm_dir: str, variant: str, cost,
                    file: str = "eval.json") -> dict:
  """Real success (simulator, held-out eval seeds) and WM success from the same start states,
  cached in <policy_dir>/<file>."""
  out_file = os.path.join(policy_dir, file)
  if os.path.exists(out_file):
    cached = _json(out_file)
    if cached["real"]["episodes"] != config.eval.num_episodes:
      raise ValueError(
          f"{out_file} holds an evaluation at {cached['real']['episodes']} episodes, but "
          f"config.eval.num_episodes is {config.eval.num_episodes}: set it to "
          f"{cached['real']['episodes']}, or move the file aside to evaluate again")
    return cached
  policy, params, _ = load_policy(policy_dir)
  env = envs.make(config.task, max_steps=config.max_steps)
  try:
    real, _ = evaluate.evaluate_real(env, policy, params, config.eval.num_episodes,
                                     config.eval.seed_offset, desc=f"{config.task} {variant}")
  finally:
    env.close()
  wm, wm_params, _ = world_model.load_world_model(wm_dir)
  return _json(out_file, {"variant": variant, "workdir": policy_dir, "real": real,
                          "wm": _wm_success(config, wm, wm_params, policy, params),
                          "real_steps": cost[0], "corrective_steps": cost[1]})


def _wm_success(config, wm, wm_params, policy, params) -> dict:
  """WM success from the real evaluation's start states (its seeds), over the task's horizon."""
  seeds = range(config.eval.seed_offset, config.eval.seed_offset + config.eval.num_episodes)
  return evaluate.evaluate_wm(wm, wm_params, policy, params,
                              hiwm_round.start_observations(config.task, seeds),
                              jax.random.PRNGKey(config.eval.seed_offset),
                              config.max_steps or wm.task.max_steps)


def judge_in_world_model(results: dict, wm_dir: str) -> dict:
  """A chain's results with every variant's WM success measured again in another world model
  (say, one trained later on more data): the same policies from the same real start states.
  Real success is untouched; `judged_by` names the world model."""
  config = ml_collections.ConfigDict(results["config"])
  wm, wm_params, _ = world_model.load_world_model(wm_dir)
  if wm.task.name != config.task:
    raise ValueError(f"{wm_dir} is a {wm.task.name} world model; the chain is {config.task}")
  judged = json.loads(json.dumps(results))  # a deep copy
  judged["judged_by"] = os.path.abspath(wm_dir)
  for v in judged["variants"].values():
    policy, params, _ = load_policy(v["workdir"])
    v["wm"] = _wm_success(config, wm, wm_params, policy, params)
  return judged


def evaluate_again(results: dict, num_episodes: int) -> dict:
  """A chain's results with every variant evaluated again, real and in its world model, at the
  first `num_episodes` evaluation seeds (a superset of the chain's own), for tighter intervals.

  Cached per policy in eval_<num_episodes>.json. Where the chain recorded per-episode real
  outcomes, the new evaluation must reproduce them on the shared seeds.
  """
  config = ml_collections.ConfigDict(results["config"])
  if num_episodes < config.eval.num_episodes:
    raise ValueError(f"num_episodes={num_episodes} is below the chain's own "
                     f"{config.eval.num_episodes}; evaluating again only adds episodes")
  config.eval.num_episodes = num_episodes
  base_dir = results["variants"]["base"]["workdir"]
  wm_dir = config.hiwm.world_model or os.path.join(os.path.dirname(base_dir), "world_model")
  again = json.loads(json.dumps(results))  # a deep copy
  again["config"]["eval"]["num_episodes"] = num_episodes
  for name, v in again["variants"].items():
    new = evaluate_policy(config, v["workdir"], wm_dir, name,
                          (v["real_steps"], v["corrective_steps"]), f"eval_{num_episodes}.json")
    shared = stored_outcomes(v)
    if shared is not None and new["real"]["success"][:len(shared)] != shared:
      raise RuntimeError(f"{v['workdir']}: evaluated again, the real outcomes at the chain's "
                         f"own {len(shared)} seeds differ from the stored ones; real "
                         "evaluation is not reproducible here")
    v.update(real=new["real"], wm=new["wm"])
  return again


def stored_outcomes(variant: dict) -> list[bool] | None:
  """A variant's per-episode real outcomes: in its results, else in the policy's eval.json if
  that evaluated the same seeds; None if neither has them."""
  if "success" in variant["real"]:
    return variant["real"]["success"]
  path = os.path.join(variant["workdir"], "eval.json")
  if not os.path.exists(path):
    return None
  real = _json(path)["real"]
  return real.get("success") if real["seeds"] == variant["real"]["seeds"] else None


def _demo_steps(config) -> int:
  from hiwm_jax.policies.train import load_training_episodes
  return int(sum(len(e["steps"]["action"]) - 1 for e in load_training_episodes(config)))


def _pct(v: dict) -> str:
  low, high = v["ci95"]
  return f"{100 * v['success_rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def table(all_results: list[dict]) -> str:
  """Per task x backbone: real success of each variant with 95% intervals, WM success beside
  it, and the real-world and corrective steps each used."""
  lines = ["| task | backbone | variant | real success [95% CI] | WM success [95% CI] | "
           "real steps (extra) | corrective steps |", "|---|---|---|---|---|---|---|"]
  for res in all_results:
    for variant in VARIANTS:
      v = res["variants"][variant]
      lines.append(f"| {res['task']} | {res['backbone']} | {variant} | {_pct(v['real'])} | "
                   f"{_pct(v['wm'])} | {v['real_steps']} | {v['corrective_steps']} |")
  return "\n".join(lines)


def gains(all_results: list[dict]) -> dict:
  """Mean real-success gain of Hi-WM over base and over WM closed loop, in points."""
  rate = lambda r, v: 100 * r["variants"][v]["real"]["success_rate"]
  return {"over_base": float(np.mean([rate(r, "hiwm") - rate(r, "base") for r in all_results])),
          "over_wm_closed_loop": float(np.mean([rate(r, "hiwm") - rate(r, "wm_closed_loop")
                                                for r in all_results]))}


def gains_interval(all_results: list[dict], num_resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict | None:
  """Bootstrap intervals for `gains` (start states resampled, the same draw for every policy:
  a paired comparison); None without per-episode real outcomes (see `outcomes`)."""
  per_episode = outcomes(all_results)
  if per_episode is None:
    return None
  real = per_episode[0].reshape(len(all_results), len(VARIANTS), -1)  # [runs, variants, E]
  draws = evaluate.resample_start_states(real.shape[-1], num_resamples, seed)
  rates = 100 * real[:, :, draws].mean(-1)  # [runs, variants, resamples]
  hiwm = rates[:, VARIANTS.index("hiwm")]
  return {f"over_{v}": evaluate.percentile_interval(
      (hiwm - rates[:, VARIANTS.index(v)]).mean(0), level) for v in ("base", "wm_closed_loop")}


def points(all_results: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(real rates, WM rates, labels) over every (task, backbone, variant) point."""
  real, wm, labels = [], [], []
  for res in all_results:
    for variant in VARIANTS:
      v = res["variants"][variant]
      real.append(v["real"]["success_rate"])
      wm.append(v["wm"]["success_rate"])
      labels.append(f"{res['task']}/{res['backbone']}/{variant}")
  return np.array(real), np.array(wm), labels


def outcomes(all_results: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
  """Per-episode (real, WM) outcomes bool [points, episodes], in `points` order; None unless
  every point recorded them at the same number of evaluation seeds."""
  real, wm = [], []
  for res in all_results:
    for variant in VARIANTS:
      v = res["variants"][variant]
      real.append(v["real"].get("success"))
      wm.append(v["wm"].get("success"))
  if any(x is None for x in real + wm) or len({len(x) for x in real + wm}) != 1:
    return None
  return np.array(real, bool), np.array(wm, bool)


def ablate_branches(config: ml_collections.ConfigDict, work_dir: str, ks) -> list[dict]:
  """Hi-WM with K corrections per failure state, for each K, from one finished chain's base
  policy and world model. The rollouts, the gate and so the corrected failure states are the
  same for every K (same policy, WM, seeds and keys); only the branches differ."""
  run = os.path.basename(os.path.normpath(work_dir))
  w = lambda *p: os.path.join(work_dir, *p)
  base, wm_dir = w("base"), config.hiwm.world_model or w("world_model")
  if not (_has_checkpoint(base) and _has_checkpoint(wm_dir)):
    raise FileNotFoundError(f"the ablation needs the chain in {work_dir} run first (its base "
                            "policy and world model): python -m experiments.hiwm ...")
  rows = []
  for k in ks:
    c = config.copy_and_resolve_references()
    c.corrector.num_branches = int(k)
    name, round_dir, policy_dir = (f"{run}_k{k}", w(f"ablate_k{k}_round"),
                                   w(f"ablate_k{k}_policy"))
    if k == config.corrector.num_branches:  # the chain's own first round: reuse it
      name, round_dir, policy_dir = round_paths(work_dir, "hiwm", 0)
    if not os.path.exists(os.path.join(round_dir, hiwm_round.SUMMARY_FILE)):
      hiwm_round.run_round(c, base, wm_dir, round_dir, _dataset(c, name))
    s = _json(os.path.join(round_dir, hiwm_round.SUMMARY_FILE))
    datasets = tuple(c.policy_data.datasets) + ((name,) if s["dataset"] else ())
    policy_dir = _policy(c, policy_dir, lambda: posttrain.posttrain(c, base, datasets, policy_dir),
                         print)
    ev = evaluate_policy(c, policy_dir, wm_dir, f"hiwm_k{k}", (0, s["corrective_steps"]))
    rows.append({"k": int(k), **{key: s[key] for key in ("corrected_states", "branches", "kept",
                                                        "corrective_steps")},
                 "real": ev["real"], "wm": ev["wm"]})
  return rows


def ablation_table(task: str, backbone: str, rows: list[dict]) -> str:
  lines = [f"Branches per failure state ({task}, {backbone}), equal corrected failure states:",
           "", "| K | corrected states | branches | kept | corrective steps | real success "
           "[95% CI] | WM success [95% CI] |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['k']} | {r['corrected_states']} | {r['branches']} | {r['kept']} | "
                 f"{r['corrective_steps']} | {_pct(r['real'])} | {_pct(r['wm'])} |")
  return "\n".join(lines)


def chain_config(results: dict) -> ml_collections.ConfigDict:
  """A finished chain's resolved config, completed with today's defaults for the keys added
  since it ran (the chain's own values win), so that today's code can go on from it."""
  import importlib  # the task configs live with the experiments
  task_config = importlib.import_module(f"experiments.configs.{results['task']}")
  defaults = task_config.get_config(f"backbone={results['backbone']}").to_dict()

  def merge(default, own):
    if isinstance(default, dict) and isinstance(own, dict):
      return {**default, **{k: merge(default.get(k), v) for k, v in own.items()}}
    return own
  return ml_collections.ConfigDict(merge(defaults, results["config"]))


def kept_datasets(results: dict, variant: str) -> list[str]:
  """The dataset names (under <data_dir>/<task>/) a finished chain's `variant` was fine-tuned on
  beyond the demos: each round's kept data (hiwm, wm_closed_loop; rounds that kept nothing
  add none) or the real HG-DAgger sessions (hgdagger), named as the chain named them."""
  run = results["run"]
  if variant == "hgdagger":
    return [f"{run}_hgdagger"]
  if variant not in ("hiwm", "wm_closed_loop"):
    raise ValueError(f"variant {variant!r} has no kept data; one of hiwm, wm_closed_loop, "
                     "hgdagger")
  return [f"{run}_{variant}_r{r}" for r, s in enumerate(results[f"{variant}_rounds"])
          if s["dataset"]]


def refit(results: dict, steps: int, lr: float, work_dir: str, num_episodes: int,
          variants=("wm_closed_loop", "hgdagger", "hiwm"), data_dir: str | None = None,
          log=print) -> dict:
  """A finished chain's results with `variants` fine-tuned again: each once, from the base, on
  the demos and all the data it kept, for `steps` at peak rate `lr`, into
  <work_dir>/<variant>_policy. The data stay the chain's; only the fine-tune differs.

  With num_episodes > 0, every variant, the base too, is evaluated real and in the chain's world
  model at the first `num_episodes` evaluation seeds (cached in eval_<num_episodes>.json);
  with 0, the fine-tuned variants' evaluations are None."""
  config = chain_config(results)
  config.posttrain.update(steps=int(steps), lr=float(lr))
  if data_dir:
    config.data_dir = data_dir
  base = results["variants"]["base"]["workdir"]
  wm_dir = config.hiwm.world_model or os.path.join(os.path.dirname(base), "world_model")
  out = json.loads(json.dumps(results))  # a deep copy
  out["refit"] = {"steps": int(steps), "lr": float(lr), "variants": list(variants),
                  "chain_posttrain": dict(results["config"]["posttrain"])}
  out["config"] = json.loads(config.to_json_best_effort())
  for name in variants:
    workdir = os.path.join(work_dir, f"{name}_policy")
    datasets = tuple(config.policy_data.datasets) + tuple(kept_datasets(results, name))
    _check_steps(workdir, int(steps))
    _policy(config, workdir, lambda: posttrain.posttrain(config, base, datasets, workdir), log)
    out["variants"][name].update(workdir=workdir, real=None, wm=None)
  if num_episodes:
    config.eval.num_episodes = num_episodes
    out["config"]["eval"]["num_episodes"] = num_episodes
    for name, v in out["variants"].items():
      new = evaluate_policy(config, v["workdir"], wm_dir, name,
                            (v["real_steps"], v["corrective_steps"]), f"eval_{num_episodes}.json")
      v.update(real=new["real"], wm=new["wm"])
      log(f"  {name:15s} real {100 * v['real']['success_rate']:.1f}%  "
          f"WM {100 * v['wm']['success_rate']:.1f}%")
  return out
