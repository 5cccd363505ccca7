"""Held-out real episodes that run the full horizon, for judging the world model's success.

Collected episodes stop at the first successful step, so their last state sits exactly on the
success boundary: a WM a millimetre short would be called wrong. Here episodes run to the
horizon (success = reached at any step, the simulator's own verdict), with the expert plain
or knocked off-nominal as in play data, so successes and failures both occur.
"""
from __future__ import annotations

import jax
import numpy as np
import tqdm

from hiwm_jax import data, envs
from hiwm_jax.envs.episode import expert_controller


def full_horizon_episodes(config, count: int, seed_offset: int) -> list[dict]:
  """`count` RLDS episodes at seeds seed_offset + i: even i the plain expert, odd i play-style
  (config.collect's noise, random prefix and random actions)."""
  env = envs.make(config.task, max_steps=config.max_steps)
  c = config.collect
  plain, noisy = expert_controller(env.task), expert_controller(env.task, c.play_noise)
  episodes = []
  for i in tqdm.trange(count, desc=f"{config.task} held-out real episodes", leave=False):
    seed = seed_offset + i
    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
    play = i % 2 == 1
    prefix = int(rng.integers(0, c.play_random_prefix_max + 1)) if play else 0
    obs, _ = env.reset(seed=seed)
    observations, actions, success = [obs], [], False
    for t in range(env.max_steps):
      if t < prefix or (play and rng.random() < c.play_random_action_prob):
        action = rng.uniform(-1.0, 1.0, env.task.action_dim).astype(np.float32)
      else:
        action = (noisy if play else plain)(obs, t, jax.random.fold_in(key, t))
      obs, _, _, _, info = env.step(action)  # not stopping at success: run the horizon
      observations.append(obs)
      actions.append(np.asarray(action, np.float32))
      success |= info["success"]
    episodes.append(data.make_episode(np.stack(observations), np.stack(actions),
                                      task=config.task, seed=seed,
                                      source="play" if play else "demo", success=success,
                                      terminated=False))
  env.close()
  return episodes
