"""Branching and rollback speed: K continuations as one vmapped call vs K sequential calls, and
rollback (indexing the cache) at two cache sizes.

  python -m benchmarks.branch_speed [--task=push] [--backbone=diffusion] [--k=16] [--steps=64]
Default-config models with untrained weights (speed does not depend on them), jitted, on this
machine's default device; each figure is the median of --repeats timed calls after a warm-up.
"""
import importlib
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from hiwm_jax import rollout, untrained

_TASK = flags.DEFINE_string("task", "push", "Task config.")
_BACKBONE = flags.DEFINE_string("backbone", "diffusion", "Policy backbone.")
_K = flags.DEFINE_integer("k", 16, "Branches from one cached state.")
_STEPS = flags.DEFINE_integer("steps", 64, "Steps per branch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per figure (median reported).")
_CACHE_SIZES = flags.DEFINE_list("cache_sizes", ["100", "10000"], "Cache lengths for rollback.")


def median_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # warm-up (compiles)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def build(task: str, backbone: str):
  config = importlib.import_module(f"experiments.configs.{task}").get_config(
      f"backbone={backbone}")
  return (*untrained.world_model_and_params(config), *untrained.policy_and_params(config))


def main(argv):
  del argv
  k, steps, repeats = _K.value, _STEPS.value, _REPEATS.value
  wm, wm_params, policy, policy_params = build(_TASK.value, _BACKBONE.value)
  carry = rollout.start(wm, wm_params, jnp.zeros((1, wm.obs_dim)), policy.history)
  keys = jax.random.split(jax.random.PRNGKey(2), k)
  controls = rollout.expert_then_policy(steps, 2 * policy.execute, policy.action_dim, 0.3, num=k)
  one = jax.jit(lambda key, c: rollout.run(wm, wm_params, policy, policy_params, carry, key,
                                           steps, c))
  many = jax.jit(lambda: rollout.branch(wm, wm_params, policy, policy_params, carry, keys, steps,
                                        controls))
  pick = lambda i: jax.tree.map(lambda x: x[i], controls)
  sequential = median_seconds(lambda: [one(keys[i], pick(i)) for i in range(k)], repeats)
  vmapped = median_seconds(many, repeats)
  print(f"device: {jax.devices()[0].device_kind}; {_TASK.value} world model "
        f"(ensemble {wm.ensemble_size}) + {_BACKBONE.value} policy")
  print(f"| K={k} branches x {steps} steps | seconds |\n|---|---|")
  print(f"| {k} sequential jitted calls | {sequential:.3f} |")
  print(f"| one vmapped call | {vmapped:.3f} |")
  print(f"| speed-up | {sequential / vmapped:.1f}x |\n")

  print("| cache length (steps) | rollback (µs, median) |\n|---|---|")
  rollback = jax.jit(rollout.rollback)
  for size in map(int, _CACHE_SIZES.value):
    cache = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape).copy(), carry)
    jax.block_until_ready(cache)
    t = jnp.int32(size // 2)
    seconds = median_seconds(lambda: rollback(cache, t), max(repeats, 100))
    print(f"| {size} | {1e6 * seconds:.0f} |")


if __name__ == "__main__":
  app.run(main)
