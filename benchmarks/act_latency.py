"""Policy `act` latency: jitted, one observation history, on this machine's default device.

  python -m benchmarks.act_latency [--tasks=push] [--backbones=diffusion,flow] [--calls=200]
Untrained weights (latency does not depend on them); the default config of each task.
"""
import importlib
import time

import jax
import numpy as np
from absl import app, flags

from hiwm_jax import envs, policies
from hiwm_jax.policies.train import example_batch

_TASKS = flags.DEFINE_list("tasks", ["push", "cloth_fold"], "Task configs to time.")
_BACKBONES = flags.DEFINE_list("backbones", ["diffusion", "flow"], "Backbones to time.")
_CALLS = flags.DEFINE_integer("calls", 200, "Timed calls (after warm-up).")


def act_latency_ms(config, obs_dim: int, action_dim: int, calls: int) -> float:
  stats = {"mean": np.zeros(obs_dim, np.float32), "std": np.ones(obs_dim, np.float32)}
  policy = policies.make(config.policy, obs_dim, action_dim, stats)
  params = policy.init(jax.random.PRNGKey(0), example_batch(policy))
  act = jax.jit(policy.act)
  obs = np.zeros((policy.history, obs_dim), np.float32)
  keys = jax.random.split(jax.random.PRNGKey(1), calls + 10)
  for k in keys[:10]:
    act(params, obs, k).block_until_ready()
  start = time.perf_counter()
  for k in keys[10:]:
    act(params, obs, k).block_until_ready()
  return 1e3 * (time.perf_counter() - start) / calls


def main(argv):
  del argv
  print(f"device: {jax.devices()[0].device_kind}")
  print("| task | backbone | act latency (ms, jitted, one observation) |\n|---|---|---|")
  for task in _TASKS.value:
    fns = envs.task_fns(task)
    for backbone in _BACKBONES.value:
      config = importlib.import_module(f"experiments.configs.{task}").get_config(
          f"backbone={backbone}")
      ms = act_latency_ms(config, fns.obs_dim, fns.action_dim, _CALLS.value)
      print(f"| {task} | {backbone} | {ms:.2f} |")


if __name__ == "__main__":
  app.run(main)
