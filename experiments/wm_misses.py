"""The real successes a world model calls failures: where its object goes instead.

  python -m experiments.wm_misses --results=results/paper6/push_flow/results.json \
      --variant=hgdagger [--episodes=8]
For one chain's policy, replays up to --episodes evaluation seeds where the simulator succeeded
and the world model (the chain's, same start state, same key as `evaluate.evaluate_wm`) did not,
and prints per episode: the step the real episode succeeded at, how far the object moved in each
by then, and how far apart the two hands and objects are at steps 10, 30 and at that step.
Meta-World observations only (hand at [0:3], object at [4:7], goal in the last 3).
"""
import json

from absl import app, flags
import jax
import ml_collections
import numpy as np

from hiwm_jax import envs, rollout, world_model
from hiwm_jax.envs.episode import run_episode
from hiwm_jax.envs.metaworld_env import OBS_LAYOUT
from hiwm_jax.evaluate import PolicyController
from hiwm_jax.policies.train import load_policy

_RESULTS = flags.DEFINE_string("results", None, "A chain's results.json.")
_VARIANT = flags.DEFINE_string("variant", "hgdagger", "base, wm_closed_loop, hgdagger or hiwm.")
_EPISODES = flags.DEFINE_integer("episodes", 8, "At most this many episodes.")
flags.mark_flag_as_required("results")

HAND, OBJECT = OBS_LAYOUT["hand_pos"], OBS_LAYOUT["object_pos"]


def main(argv):
  del argv
  with open(_RESULTS.value) as f:
    results = json.load(f)
  if _VARIANT.value not in results["variants"]:
    raise app.UsageError(f"--variant must be one of {sorted(results['variants'])}")
  if results["task"] == "cloth_fold":
    raise app.UsageError("cloth_fold has no single object position; use a Meta-World task")
  config = ml_collections.ConfigDict(results["config"])
  variant = results["variants"][_VARIANT.value]
  real_ok, wm_ok = np.array(variant["real"]["success"]), np.array(variant["wm"]["success"])
  missed = np.nonzero(real_ok & ~wm_ok)[0]
  print(f"{results['task']} x {results['backbone']} {_VARIANT.value}: {len(missed)} of "
        f"{int(real_ok.sum())} real successes are world-model failures")
  policy, params, _ = load_policy(variant["workdir"])
  wm, wm_params, _ = world_model.load_world_model(config.hiwm.world_model)
  offset, steps = config.eval.seed_offset, config.max_steps or wm.task.max_steps
  keys = jax.random.split(jax.random.PRNGKey(offset), len(real_ok))  # as evaluate_wm's
  run = jax.jit(lambda obs, key: rollout.run(
      wm, wm_params, policy, params, rollout.start(wm, wm_params, obs[None], policy.history),
      key, steps).observations)
  env = envs.make(results["task"], max_steps=config.max_steps)
  try:
    for i in missed[:_EPISODES.value]:
      seed = offset + int(i)
      real = run_episode(env, PolicyController(policy, params), seed).observations
      imagined = np.asarray(run(real[0], keys[i]))  # from the same real first observation
      t = len(real) - 1
      gap = lambda part, s: 100 * np.linalg.norm(imagined[min(s, t), part] - real[min(s, t), part])
      moved = lambda obs: 100 * np.linalg.norm(obs[t, OBJECT] - obs[0, OBJECT])
      print(f"seed {seed}: real success at step {t}; object moved {moved(real):.1f} cm real, "
            f"{moved(imagined):.1f} cm in the WM; WM - real, hand {gap(HAND, 10):.1f} / "
            f"{gap(HAND, 30):.1f} / {gap(HAND, t):.1f} cm and object {gap(OBJECT, 10):.1f} / "
            f"{gap(OBJECT, 30):.1f} / {gap(OBJECT, t):.1f} cm at steps 10 / 30 / {t}")
  finally:
    env.close()


if __name__ == "__main__":
  app.run(main)
