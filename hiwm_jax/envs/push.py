"""push: Meta-World push-v3 — push a puck along the table to a goal.

Observation: Meta-World's 39-d vector (`metaworld_env.OBS_LAYOUT`). Success: the puck within
5 cm of the goal (Meta-World's own threshold).
"""
import jax.numpy as jnp

from hiwm_jax.envs import metaworld_env

SUCCESS_RADIUS = 0.05


def expert_action(obs, rng):
  """Meta-World's scripted push policy, in jnp: above the puck, down, then push to the goal."""
  del rng  # deterministic; TaskFns.expert adds noise when asked
  hand, goal = obs[0:3], obs[36:39]
  puck = obs[4:7] + jnp.array([-0.005, 0.0, 0.0])
  misaligned = jnp.linalg.norm(hand[:2] - puck[:2]) > 0.02
  too_high = jnp.abs(hand[2] - puck[2]) > 0.04
  target = jnp.where(misaligned, puck + jnp.array([0.0, 0.0, 0.2]),
                     jnp.where(too_high, puck + jnp.array([0.0, 0.0, 0.03]), goal))
  raw_puck = obs[4:7]
  away = (jnp.linalg.norm(hand[:2] - raw_puck[:2]) > 0.02) | (jnp.abs(hand[2] - raw_puck[2]) > 0.10)
  grab = jnp.where(away, 0.0, 0.6)
  move = jnp.clip(metaworld_env.move_towards(hand, target), -1.0, 1.0)
  return jnp.concatenate([move, grab[None]])


TASK = metaworld_env.task_fns("push", SUCCESS_RADIUS, expert_action)


def make_env(**kwargs) -> metaworld_env.MetaWorldEnv:
  return metaworld_env.MetaWorldEnv(TASK, "push-v3", **kwargs)
