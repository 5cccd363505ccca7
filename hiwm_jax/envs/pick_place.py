"""pick_place: Meta-World pick-place-v3 — grasp a puck and carry it to a goal in the air.

Observation: Meta-World's 39-d vector (`metaworld_env.OBS_LAYOUT`). Success: the puck within
7 cm of the goal (Meta-World's own threshold).
"""
import jax.numpy as jnp

from hiwm_jax.envs import metaworld_env

SUCCESS_RADIUS = 0.07


def expert_action(obs, rng):
  """Meta-World's scripted pick-place policy, in jnp: above the puck, down, close, to goal."""
  del rng  # deterministic; TaskFns.expert adds noise when asked
  hand, opening, goal = obs[0:3], obs[3], obs[36:39]
  puck = obs[4:7] + jnp.array([-0.005, 0.0, 0.0])
  above_puck = puck + jnp.array([0.0, 0.0, 0.1])
  at_puck = puck + jnp.array([0.0, 0.0, 0.03])
  misaligned = jnp.linalg.norm(hand[:2] - puck[:2]) > 0.02
  too_high = (jnp.abs(hand[2] - puck[2]) > 0.05) & (puck[2] < 0.04)
  still_closing = opening > 0.73
  target = jnp.where(misaligned, above_puck,
                     jnp.where(too_high, at_puck, jnp.where(still_closing, hand, goal)))
  grab = jnp.where(jnp.linalg.norm(hand - obs[4:7]) < 0.07, 1.0, 0.0)
  move = jnp.clip(metaworld_env.move_towards(hand, target), -1.0, 1.0)
  return jnp.concatenate([move, grab[None]])


TASK = metaworld_env.task_fns("pick_place", SUCCESS_RADIUS, expert_action)


def make_env(**kwargs) -> metaworld_env.MetaWorldEnv:
  return metaworld_env.MetaWorldEnv(TASK, "pick-place-v3", **kwargs)
