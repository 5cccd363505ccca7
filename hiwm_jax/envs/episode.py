"""Running a controller in the simulator for one episode: the only loop that touches the real world.

Used to collect demos and play data, and (later) to evaluate policies for real.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from hiwm_jax.envs.base import TaskEnv, TaskFns

# (obs [obs_dim] float32, step index, rng) -> action [action_dim]
Controller = Callable[[np.ndarray, int, jax.Array], np.ndarray]


@dataclasses.dataclass
class EpisodeResult:
  observations: np.ndarray  # [T + 1, obs_dim]
  actions: np.ndarray  # [T, action_dim]
  rewards: np.ndarray  # [T]
  success: bool  # the simulator's own verdict: success reached at any step
  terminated: bool  # ended on success (else ran out of steps)
  seed: int


def expert_controller(task: TaskFns, noise_scale: float = 0.0) -> Controller:
  """The task's scripted expert, jitted once, with optional Gaussian action noise."""
  act = jax.jit(lambda obs, rng: task.expert(obs, rng, noise_scale))
  return lambda obs, t, rng: np.asarray(act(obs, rng))


def run_episode(env: TaskEnv, controller: Controller, seed: int, *,
                random_prefix: int = 0, random_action_prob: float = 0.0,
                past_success: bool = False,
                rng: np.random.Generator | None = None) -> EpisodeResult:
  """One episode from `env.reset(seed=seed)`, ending on success or at the horizon.

  Args:
    random_prefix: the first steps take uniform random actions (to start off-nominal).
    random_action_prob: afterwards, each step's action is replaced by a random one with
      this probability (play data: the controller must recover).
    past_success: run on to the horizon whatever happens (success = reached at any step).
    rng: the random actions' generator (default: seeded with `seed`), for a caller that drew
      from it already.
  """
  obs, _ = env.reset(seed=seed)
  rng = np.random.default_rng(seed) if rng is None else rng
  key = jax.random.PRNGKey(seed)
  observations, actions, rewards = [obs], [], []
  success = terminated = False
  action_dim = env.action_space.shape[0]
  for t in range(env.max_steps):
    if t < random_prefix or rng.random() < random_action_prob:
      action = rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
    else:
      action = np.asarray(controller(obs, t, jax.random.fold_in(key, t)), dtype=np.float32)
    obs, reward, terminated, truncated, info = env.step(action)
    observations.append(obs)
    actions.append(action)
    rewards.append(reward)
    success |= info["success"]
    if truncated or (terminated and not past_success):
      break
  return EpisodeResult(np.stack(observations), np.stack(actions),
                       np.asarray(rewards, np.float32), bool(success), bool(terminated), seed)
