"""Collecting real-world (simulator) episodes into RLDS datasets: expert demos and play.

Play episodes are the expert knocked off-nominal (a random-action prefix, action noise,
occasional random actions) and recovering, failures included: a world model trained on them
has seen the states that corrections start from.

Layout written under `workdir/<task>/`: `demos/` and `play/` (RLDS datasets, see
`hiwm_jax.data.rlds`) and `collect_config.json` (the resolved config).
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


def collect_task(config, workdir: str) -> dict:
  """Collects demos and play for `config.task`; returns a summary (counts, rates, speed)."""
  env = envs.make(config.task, max_steps=config.max_steps)
  task = env.task
  out = os.path.join(workdir, config.task)
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
  with open(os.path.join(out, "collect_summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


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
