"""The policy interface every backbone implements: three pure functions.

    params = policy.init(rng, example_batch)
    chunk  = policy.act(params, obs_history, rng)      # [h, obs_dim] -> [H, A] in [-1, 1]
    loss, metrics = policy.loss(params, batch, rng)    # batch from data.WindowSampler

Observations are raw (task units); a policy normalizes them with the dataset statistics it was
built with (`obs_stats`, baked in as constants and saved beside every checkpoint). Actions are
in [-1, 1] by the task contract and are modelled as they are.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np

from hiwm_jax import data

Params = Any
Batch = Mapping[str, jax.Array]  # observation [B, h, D], action [B, H, A], action_mask [B, H]


@dataclasses.dataclass(frozen=True)
class Policy:
  """A policy's pure functions and the shapes they work on.

  Attributes:
    history: observations per decision (h).
    chunk: actions predicted per decision (H).
    execute: actions executed from each chunk before deciding again (n <= H).
    obs_stats: observation statistics baked into act/loss (saved with every checkpoint).
  """
  name: str
  obs_dim: int
  action_dim: int
  history: int
  chunk: int
  execute: int
  init: Callable[[jax.Array, Batch], Params]
  act: Callable[[Params, jax.Array, jax.Array], jax.Array]
  loss: Callable[[Params, Batch, jax.Array], tuple[jax.Array, dict]]
  obs_stats: Mapping[str, Any] | None = None  # the statistics `act` normalizes with


def normalize_obs(obs: jax.Array, obs_stats: Mapping[str, Any]) -> jax.Array:
  """Mean/std-normalized observations (any leading axes), as float32."""
  return data.normalize(jnp.asarray(obs, jnp.float32), obs_stats).astype(jnp.float32)


def check_obs_stats(obs_stats: Mapping[str, Any], obs_dim: int) -> dict[str, np.ndarray]:
  """The mean/std a policy normalizes with, as float32 [obs_dim]; ValueError if misshapen."""
  stats = {k: np.asarray(obs_stats[k], np.float32) for k in ("mean", "std")}
  if any(v.shape != (obs_dim,) for v in stats.values()):
    raise ValueError(f"obs_stats mean/std must have shape ({obs_dim},); got "
                     f"{stats['mean'].shape} and {stats['std'].shape}")
  return stats


def check_obs_history(obs_history: jax.Array, history: int, obs_dim: int) -> None:
  """Shape check at trace time: a clear message instead of a broadcasting error deep inside."""
  if obs_history.shape != (history, obs_dim):
    raise ValueError(f"obs_history has shape {tuple(obs_history.shape)}; expected "
                     f"({history}, {obs_dim}) = (history, obs_dim)")


def masked_mean(per_step: jax.Array, mask: jax.Array, weight: jax.Array | None = None):
  """Mean over real (unpadded) chunk steps [B, H], optionally weighted per window [B]."""
  chex.assert_equal_shape([per_step, mask])
  w = mask.astype(jnp.float32)
  if weight is not None:
    w = w * weight[:, None]
  return jnp.sum(per_step * w) / jnp.maximum(jnp.sum(w), 1e-6)
