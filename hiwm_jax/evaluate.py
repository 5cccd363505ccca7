"""Evaluating policies: real success (simulator episodes at fixed seeds) with Wilson intervals.

Evaluation seeds start at EVAL_SEED_OFFSET, far from the seeds data was collected at, so a
policy is never evaluated on a layout it was trained on.
"""
from __future__ import annotations

import math

import jax
import numpy as np
import tqdm

from hiwm_jax.envs import TaskEnv
from hiwm_jax.envs.episode import EpisodeResult, run_episode
from hiwm_jax.policies.base import Policy

EVAL_SEED_OFFSET = 1_000_000


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The Wilson score interval for a binomial rate (95% for z = 1.96); sane at 0 and n."""
  if n == 0:
    return 0.0, 1.0
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, centre - half), min(1.0, centre + half)


class PolicyController:
  """Runs a chunked policy in the simulator loop: keeps the observation history, decides
  every `policy.execute` steps, executes the chunk's first actions in between."""

  def __init__(self, policy: Policy, params):
    self._policy, self._params = policy, params
    self._act = jax.jit(policy.act)
    self._history: list[np.ndarray] = []
    self._queue: list[np.ndarray] = []

  def __call__(self, obs: np.ndarray, t: int, rng: jax.Array) -> np.ndarray:
    if t == 0:  # a new episode: the history starts as copies of the first observation
      self._history, self._queue = [obs] * self._policy.history, []
    self._history = self._history[1:] + [obs]
    if not self._queue:
      chunk = np.asarray(self._act(self._params, np.stack(self._history), rng))  # [H, A]
      self._queue = list(chunk[:self._policy.execute])
    return self._queue.pop(0)


def evaluate_real(env: TaskEnv, policy: Policy, params, num_episodes: int,
                  seed_offset: int = EVAL_SEED_OFFSET, desc: str = "eval"):
  """Real success over `num_episodes` fixed seeds; returns (summary dict, episode results)."""
  controller = PolicyController(policy, params)
  results: list[EpisodeResult] = [
      run_episode(env, controller, seed)
      for seed in tqdm.trange(seed_offset, seed_offset + num_episodes, desc=desc, unit="ep",
                              leave=False)]
  successes = sum(r.success for r in results)
  low, high = wilson_interval(successes, num_episodes)
  summary = {"task": env.task.name, "episodes": num_episodes, "successes": successes,
             "success_rate": successes / num_episodes, "ci95": [low, high],
             "seeds": [seed_offset, seed_offset + num_episodes],
             "mean_steps": float(np.mean([len(r.actions) for r in results]))}
  return summary, results
