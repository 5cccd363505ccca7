"""What every real-world stand-in shares: the pure task functions and the Gymnasium shell.

A task is split in two on purpose. `TaskFns` holds pure JAX functions of an *observation*
(success, progress, expert): they run unchanged on a world model's predicted observation,
where no simulator exists. `TaskEnv` is the simulator — the "real world" — and is only
touched to collect data and to evaluate.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TaskFns:
  """A task's pure functions; each takes one observation [obs_dim] and is jit/vmap-able.

  Attributes:
    name: registry name.
    obs_dim: length of the flat float32 observation.
    action_dim: length of the action; actions live in [-1, 1].
    max_steps: episode horizon in control steps.
    obs_layout: name -> slice into the observation (the documented layout).
    success: obs -> bool scalar; the same predicate judges simulator and world model.
    progress: obs -> float scalar in [0, 1] (1 = done), for judging partial rollouts.
    expert_action: (obs, rng) -> action [action_dim], the scripted expert, noise-free.
  """
  name: str
  obs_dim: int
  action_dim: int
  max_steps: int
  obs_layout: Mapping[str, slice]
  success: Callable[[Array], Array]
  progress: Callable[[Array], Array]
  expert_action: Callable[[Array, Array], Array]

  def expert(self, obs: Array, rng: Array, noise_scale: float | Array = 0.0) -> Array:
    """The scripted expert, plus Gaussian noise of `noise_scale`, clipped to [-1, 1].

    With noise_scale=0 it is deterministic; different keys with noise give the different
    corrective continuations a person would try from one state.
    """
    action = self.expert_action(obs, rng)
    if isinstance(noise_scale, (int, float)) and noise_scale == 0:
      return jnp.clip(action, -1.0, 1.0)
    noise = noise_scale * jax.random.normal(jax.random.fold_in(rng, 1), action.shape)
    return jnp.clip(action + noise, -1.0, 1.0)

  def field(self, obs: Array, name: str) -> Array:
    """The named part of an observation (works on [..., obs_dim])."""
    return obs[..., self.obs_layout[name]]


def _check_vector(name: str, x: Any, dim: int) -> np.ndarray:
  """Returns x as float64 [dim], or raises ValueError naming the problem."""
  x = np.asarray(x, dtype=np.float64)
  if x.shape != (dim,):
    raise ValueError(f"{name} has shape {x.shape}; expected ({dim},)")
  bad = np.flatnonzero(~np.isfinite(x))
  if bad.size:
    raise ValueError(f"{name} has non-finite values (NaN or inf) at indices {bad.tolist()}: "
                     f"{x.tolist()}" if name == "action" else
                     f"{name} has non-finite values (NaN or inf) at indices {bad.tolist()}")
  return x


def check_action(action: Any, action_dim: int) -> np.ndarray:
  return _check_vector("action", action, action_dim)


def check_observation(obs: Any, obs_dim: int) -> np.ndarray:
  return _check_vector("observation", obs, obs_dim)


class TaskEnv(gymnasium.Env):
  """Gymnasium shell over a simulator: validates actions, tracks the horizon.

  Subclasses implement `_reset(seed) -> obs`, `_step(action) -> (obs, sim_success)`,
  `render()` and `render_obs(obs)`. `terminated` is the simulator's own success signal
  (episodes end when the task is done); `truncated` is the horizon.
  """
  metadata = {"render_modes": ["rgb_array"]}

  def __init__(self, task: TaskFns, max_steps: int | None = None):
    self.task = task
    self.max_steps = max_steps or task.max_steps
    self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (task.obs_dim,), np.float32)
    self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (task.action_dim,), np.float32)
    self._t = 0

  def reset(self, *, seed: int | None = None, options: dict | None = None):
    super().reset(seed=seed)
    if seed is None:
      seed = int(self.np_random.integers(2**31 - 1))
    self._t = 0
    obs = self._reset(int(seed))
    return obs.astype(np.float32), {"success": False, "seed": int(seed)}

  def step(self, action):
    action = np.clip(check_action(action, self.task.action_dim), -1.0, 1.0)
    obs, success = self._step(action)
    self._t += 1
    obs = obs.astype(np.float32)
    info = {"success": bool(success)}
    return obs, float(success), bool(success), self._t >= self.max_steps, info

  def _reset(self, seed: int) -> np.ndarray:
    raise NotImplementedError

  def _step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
    raise NotImplementedError

  def render_obs(self, obs) -> np.ndarray:
    """An RGB image [H, W, 3] uint8 of an observation (e.g. a world model's prediction)."""
    raise NotImplementedError
