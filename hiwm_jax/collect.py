"""Collecting real-world (simulator) episodes into RLDS datasets: expert demos and play.

Play episodes are the expert knocked off-nominal (a random-action prefix, action noise,
occasional random actions) and recovering, failures included: a world model trained on them
has seen the states that corrections start from.

Full-horizon episodes run on past the first success to the horizon (the expert plain or
play-style, alternately). Collected episodes stop at the first successful step, so without them
a world model never sees what follows a success: the cloth's fold laid down and settling. They
are also what the world model's success is judged on (eval_wm: new ones at other seeds).

Layout written under `<config.data_dir>/<task>/`: `demos/`, `play/` and, where
`collect.num_full_horizon` > 0, `full_horizon/` (RLDS datasets, see `hiwm_jax.data.rlds`),
`collect_config.json` (the resolved config) and `collect_summary.json`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterator

import numpy as np
import tqdm

from hiwm_jax import data, envs
from hiwm_jax.envs.episode import EpisodeResult, expert_controller, run_episode


def to_rlds(result: EpisodeResult, task: str, source: str) -> dict:
  return data.make_episode(result.observations, result.actions, rewards=result.rewards,
                           task=task, seed=result.seed, source=source,
                           success=result.success, terminated=result.terminated)


def _episodes(env, controller, seeds, *, source, stats, desc, keep_failures=True,
              random_prefix_max=0, random_action_prob=0.0) -> Iterator[dict]:
  """Runs and yields episodes as RLDS dicts, counting into `stats` as it goes."""
  rng = np.random.default_rng(seeds[0] if len(seeds) else 0)
  for seed in tqdm.tqdm(seeds, desc=desc, unit="ep", leave=False):
    prefix = int(rng.integers(0, random_prefix_max + 1)) if random_prefix_max else 0
    result = run_episode(env, controller, seed, random_prefix=prefix,
                         random_action_prob=random_action_prob)
    stats["episodes"] += 1
    stats["successes"] += result.success
    stats["steps"] += len(result.actions)
    if result.success or keep_failures:
      stats["kept"] += 1
      yield to_rlds(result, env.task.name, source)


def full_horizon_episodes(config, count: int, seed_offset: int,
                          desc: str = "full-horizon episodes") -> list[dict]:
  """`count` RLDS episodes at seeds seed_offset + i that run the whole horizon (success =
  reached at any step, the simulator's own verdict): even i the plain expert, odd i
  play-style (config.collect's noise, random prefix and random actions)."""
  env = envs.make(config.task, max_steps=config.max_steps)
  c = config.collect
  plain, noisy = expert_controller(env.task), expert_controller(env.task, c.play_noise)
  episodes = []
  for i in tqdm.trange(count, desc=f"{config.task} {desc}", leave=False):
    seed, play = seed_offset + i, i % 2 == 1
    rng = np.random.default_rng(seed)  # the prefix's draw, then the random actions'
    prefix = int(rng.integers(0, c.play_random_prefix_max + 1)) if play else 0
    result = run_episode(env, noisy if play else plain, seed, random_prefix=prefix,
                         random_action_prob=c.play_random_action_prob if play else 0.0,
                         past_success=True, rng=rng)
    episodes.append(data.make_episode(result.observations, result.actions, task=config.task,
                                      seed=seed, source="play" if play else "demo",
                                      success=result.success, terminated=False))
  env.close()
  return episodes


def collect_task(config) -> dict:
  """Collects demos, play and full-horizon episodes for `config.task` into `config.data_dir`;
  returns a summary."""
  env = envs.make(config.task, max_steps=config.max_steps)
  task = env.task
  out = os.path.join(config.data_dir, config.task)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "collect_config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  c = config.collect
  summary = {"task": config.task}
  jobs = {
      "demos": dict(controller=expert_controller(task), source="demo", keep_failures=False,
                    seeds=range(c.demo_seed_offset, c.demo_seed_offset + c.num_demos)),
      "play": dict(controller=expert_controller(task, c.play_noise), source="play",
                   seeds=range(c.play_seed_offset, c.play_seed_offset + c.num_play),
                   random_prefix_max=c.play_random_prefix_max,
                   random_action_prob=c.play_random_action_prob),
  }
  for name, job in jobs.items():
    stats = {"episodes": 0, "successes": 0, "steps": 0, "kept": 0}
    start = time.perf_counter()
    data.write_dataset(os.path.join(out, name),
                       _episodes(env, desc=f"{config.task} {name}", stats=stats, **job),
                       obs_dim=task.obs_dim, action_dim=task.action_dim,
                       description=f"{config.task} {name}", overwrite=True)
    stats["seconds"] = time.perf_counter() - start
    summary[name] = stats
  env.close()
  if c.num_full_horizon:
    start = time.perf_counter()
    episodes = full_horizon_episodes(config, c.num_full_horizon, c.full_horizon_seed_offset)
    data.write_dataset(os.path.join(out, "full_horizon"), episodes, obs_dim=task.obs_dim,
                       action_dim=task.action_dim, overwrite=True,
                       description=f"{config.task} full-horizon episodes (past success)")
    successes = sum(bool(e["episode_metadata"]["success"]) for e in episodes)
    steps = sum(len(e["steps"]["action"]) - 1 for e in episodes)
    summary["full_horizon"] = {"episodes": len(episodes), "successes": successes,
                               "steps": steps, "kept": len(episodes),
                               "seconds": time.perf_counter() - start}
  with open(os.path.join(out, "collect_summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def collect_policy_rollouts(config, policy_workdir: str, name: str | None = None) -> dict:
  """Records a trained policy's episodes in the simulator, failures included (source=policy),
  as `<data_dir>/<task>/<name>` (default policy_<backbone>): the world model learns what the
  policy actually does."""
  from hiwm_jax.evaluate import PolicyController  # the policy stack is only needed here
  from hiwm_jax.policies.train import load_policy

  policy, params, policy_config = load_policy(policy_workdir)
  if policy_config.task != config.task:
    raise ValueError(f"{policy_workdir} holds a {policy_config.task} policy; this config is "
                     f"for {config.task}")
  name = name or f"policy_{policy_config.policy.backbone}"
  env = envs.make(config.task, max_steps=config.max_steps)
  c = config.collect
  stats = {"episodes": 0, "successes": 0, "steps": 0, "kept": 0}
  start = time.perf_counter()
  path = data.write_dataset(
      os.path.join(config.data_dir, config.task, name),
      _episodes(env, PolicyController(policy, params), source="policy", stats=stats,
                seeds=range(c.policy_seed_offset, c.policy_seed_offset + c.num_policy),
                desc=f"{config.task} {name}"),
      obs_dim=env.task.obs_dim, action_dim=env.task.action_dim, overwrite=True,
      description=f"{config.task} rollouts of the policy in {os.path.abspath(policy_workdir)}")
  env.close()
  stats["seconds"] = time.perf_counter() - start
  return {"task": config.task, "dataset": path, name: stats}


def summary_table(summaries: list[dict]) -> str:
  """A markdown table of collection summaries: success rates, data kept, speed."""
  rows = ["| task | demo success | demos kept | play success | play kept | steps | steps/s |",
          "|---|---|---|---|---|---|---|"]
  for s in summaries:
    d, p = s["demos"], s["play"]
    steps = d["steps"] + p["steps"]
    rate = lambda x: f"{x['successes']}/{x['episodes']} ({100 * x['successes'] / max(x['episodes'], 1):.0f}%)"
    rows.append(f"| {s['task']} | {rate(d)} | {d['kept']} | {rate(p)} | {p['kept']} | {steps} | "
                f"{steps / max(d['seconds'] + p['seconds'], 1e-9):.0f} |")
  return "\n".join(rows)
