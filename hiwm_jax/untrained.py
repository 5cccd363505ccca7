"""Untrained models with identity normalization, built from a config section.

Speed and the pure-function contracts do not depend on the weights, so benchmarks and tests
build models this way instead of training them.
"""
from __future__ import annotations

import jax
import ml_collections
import numpy as np

from hiwm_jax import envs, policies, world_model
from hiwm_jax.policies.train import example_batch


def identity_stats(dim: int) -> dict:
  return {"mean": np.zeros(dim, np.float32), "std": np.ones(dim, np.float32)}


def world_model_and_params(config: ml_collections.ConfigDict, seed: int = 0):
  """(wm, params) for config.task with config.world_model; a typical step of 0.01."""
  task = envs.task_fns(config.task)
  predicted = world_model.core.obs_structure(task).predicted
  wm = world_model.make(config.world_model, task, identity_stats(task.obs_dim),
                        np.full(predicted.shape, 0.01, np.float32))
  return wm, world_model.init_params(wm, jax.random.PRNGKey(seed))


def policy_and_params(config: ml_collections.ConfigDict, seed: int = 1):
  """(policy, params) for config.task with config.policy."""
  task = envs.task_fns(config.task)
  policy = policies.make(config.policy, task.obs_dim, task.action_dim,
                         identity_stats(task.obs_dim))
  return policy, policy.init(jax.random.PRNGKey(seed), example_batch(policy))
