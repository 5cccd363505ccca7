"""Policy backbones behind one interface (`base.Policy`): "diffusion" and "flow".

    policy = policies.make(config.policy, obs_dim, action_dim, obs_stats)
"""
from __future__ import annotations

import dataclasses
import importlib

import ml_collections

from hiwm_jax.policies.base import Policy

_BACKBONES = {"diffusion": "hiwm_jax.policies.diffusion", "flow": "hiwm_jax.policies.flow"}


def backbone_module(name: str):
  if name not in _BACKBONES:
    raise ValueError(f"unknown policy backbone {name!r}; known: {', '.join(sorted(_BACKBONES))}")
  return importlib.import_module(_BACKBONES[name])


def default_config() -> ml_collections.ConfigDict:
  """The policy section of an experiment config: shared shapes plus each backbone's own."""
  config = ml_collections.ConfigDict(dict(backbone="diffusion", history=2, chunk=16, execute=8))
  for name in _BACKBONES:
    config[name] = backbone_module(name).default_config()
  return config


def make(config: ml_collections.ConfigDict, obs_dim: int, action_dim: int, obs_stats) -> Policy:
  if not 1 <= config.execute <= config.chunk:
    raise ValueError(f"policy.execute must be in [1, chunk={config.chunk}]; got {config.execute}")
  policy = backbone_module(config.backbone).make(config, obs_dim, action_dim, obs_stats)
  return dataclasses.replace(policy, obs_stats=obs_stats)


__all__ = ["Policy", "backbone_module", "default_config", "make"]
