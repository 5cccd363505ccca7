"""Evaluating policies: real success (simulator episodes at fixed seeds) with Wilson intervals,
WM success (the same start states, rolled out in the world model), and how well the two agree
across policies (Pearson, Spearman, MMRV).

Evaluation seeds start at EVAL_SEED_OFFSET, far from the seeds data was collected at, so a
policy is never evaluated on a layout it was trained on.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from hiwm_jax import rollout
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
             "mean_steps": float(np.mean([len(r.actions) for r in results])),
             "success": [bool(r.success) for r in results]}  # per seed, as evaluate_wm's
  return summary, results


def evaluate_wm(wm, wm_params, policy: Policy, policy_params, first_obs, rng: jax.Array,
                steps: int) -> dict:
  """WM success of `policy` from real first observations [N, obs_dim] (the real evaluation's
  start states: `hiwm_round.start_observations(task, seeds)`): all N rollouts as one jitted
  vmap of `rollout.run`, success = the WM judged success by the last step (Rollout.done[-1])."""
  first_obs = np.asarray(first_obs, np.float32)
  if first_obs.ndim != 2 or first_obs.shape[1] != wm.obs_dim or not len(first_obs):
    raise ValueError(f"first_obs must be [N >= 1, obs_dim={wm.obs_dim}] real first "
                     f"observations; got shape {first_obs.shape}")
  if steps < 1:
    raise ValueError(f"steps must be >= 1; got {steps}")
  n = len(first_obs)

  def one(obs, key):  # [obs_dim] -> (done [], steps to success [])
    carry = rollout.start(wm, wm_params, obs[None], policy.history)
    out = rollout.run(wm, wm_params, policy, policy_params, carry, key, steps)
    return out.done[-1], jnp.argmax(out.done)  # first step judged done (0 if never)

  done, first = jax.device_get(jax.jit(jax.vmap(one))(jnp.asarray(first_obs),
                                                      jax.random.split(rng, n)))
  successes = int(done.sum())
  low, high = wilson_interval(successes, n)
  return {"episodes": n, "successes": successes, "success_rate": successes / n,
          "ci95": [low, high], "steps": steps, "success": done.astype(bool).tolist(),
          "mean_steps_to_success": float(first[done].mean()) if successes else None}


def agreement(real_rates, wm_rates) -> dict:
  """How well WM success ranks N policies as the real world does: Pearson r, Spearman rho, and
  MMRV (mean maximum rank violation, SIMPLER): (1/N) sum_i max_j |r_i - r_j| * 1[(s_i < s_j) !=
  (r_i < r_j)], 0 for a perfect ranking. r/rho are NaN when either side is constant."""
  r = np.asarray(real_rates, np.float64)
  s = np.asarray(wm_rates, np.float64)
  if r.ndim != 1 or r.shape != s.shape or len(r) < 2:
    raise ValueError(f"real_rates and wm_rates must be two 1-D lists of the same length >= 2 "
                     f"(one rate per policy); got shapes {r.shape} and {s.shape}")
  if not (np.all(np.isfinite(r)) and np.all(np.isfinite(s))):
    raise ValueError(f"success rates must be finite; got real {r.tolist()}, wm {s.tolist()}")
  violated = (s[:, None] < s[None, :]) != (r[:, None] < r[None, :])  # [N, N]
  mmrv = float(np.mean(np.max(np.abs(r[:, None] - r[None, :]) * violated, axis=1)))
  return {"pearson": _pearson(r, s), "spearman": _pearson(_ranks(r), _ranks(s)), "mmrv": mmrv}


def agreement_interval(real_success, wm_success, num_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> dict:
  """Bootstrap intervals for `agreement`, resampling start states.

  real_success, wm_success: bool [policies, episodes], every policy evaluated from the same
  start states (column j is one start state, real and in the world model). Each resample draws
  start states with replacement, the same draw for every policy, and recomputes the rates;
  so the interval shows how much of a shortfall in r finite evaluation alone explains.
  Returns {metric: (low, high)}; resamples where r is undefined (constant rates) are dropped.
  """
  r = np.asarray(real_success, bool)
  w = np.asarray(wm_success, bool)
  if r.ndim != 2 or r.shape != w.shape or r.shape[0] < 2 or r.shape[1] < 1:
    raise ValueError(f"real_success and wm_success must be two bool arrays of the same shape "
                     f"[policies >= 2, episodes >= 1]; got {r.shape} and {w.shape}")
  stats = {"pearson": [], "spearman": [], "mmrv": []}
  for draw in resample_start_states(r.shape[1], num_resamples, seed):
    for k, v in agreement(r[:, draw].mean(1), w[:, draw].mean(1)).items():
      stats[k].append(v)
  return {k: percentile_interval(np.asarray(v)[np.isfinite(v)], level) for k, v in stats.items()}


def resample_start_states(episodes: int, num_resamples: int, seed: int) -> np.ndarray:
  """Bootstrap draws [num_resamples, episodes] of start-state indices, with replacement."""
  return np.random.default_rng(seed).integers(0, episodes, (num_resamples, episodes))


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
  """The central `level` interval of bootstrap values [...]; (nan, nan) when there are none."""
  values = np.asarray(values, np.float64)
  if not values.size:
    return float("nan"), float("nan")
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def episode_agreement(real_success, wm_success) -> dict:
  """Per start state, did the world model call it as the real world did? For one policy's
  episodes from the same seeds. `wm_false_success` (the WM says success, the real episode
  failed) is what hides a failure from the person, so it is never corrected."""
  r = np.asarray(real_success, bool)
  w = np.asarray(wm_success, bool)
  if r.ndim != 1 or r.shape != w.shape or not len(r):
    raise ValueError(f"real_success and wm_success must be two 1-D lists of the same length "
                     f">= 1 (one per start state); got shapes {r.shape} and {w.shape}")
  counts = {"episodes": len(r), "both_succeed": int(np.sum(r & w)),
            "wm_false_success": int(np.sum(~r & w)), "wm_false_failure": int(np.sum(r & ~w)),
            "both_fail": int(np.sum(~r & ~w))}
  real_failures = int(np.sum(~r))
  return {**counts, "agreement": float(np.mean(r == w)),
          "wm_false_success_rate": counts["wm_false_success"] / real_failures
          if real_failures else None}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x - x.mean(), y - y.mean()
  norm = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
  return float(np.sum(x * y) / norm) if norm > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
  """Ranks 1..N, ties sharing their average rank (as scipy.stats.rankdata)."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(1, len(x) + 1)
  for value in np.unique(x):
    tied = x == value
    ranks[tied] = ranks[tied].mean()
  return ranks
