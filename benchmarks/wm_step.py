"""World-model `step` speed: one state jitted, and 256 states in one vmapped call.

  python -m benchmarks.wm_step [--tasks=push,cloth_fold] [--workdir=/tmp/hiwm/runs/wm_push]
Untrained weights of each task's default config (speed does not depend on them), or the
trained model in --workdir. Prints latency per call and the batched/single ratio.
"""
import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from hiwm_jax import envs
from hiwm_jax.world_model import core, load_world_model, structure

_TASKS = flags.DEFINE_list("tasks", ["push", "cloth_fold"], "Task configs to time (untrained).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Time this trained world model instead.")
_BATCH = flags.DEFINE_integer("batch", 256, "States stepped in one vmapped call.")
_CALLS = flags.DEFINE_integer("calls", 300, "Timed calls (after warm-up).")


def _latency_ms(fn, *args, calls: int) -> float:
  """Median wall time of one blocking call, ms."""
  for _ in range(10):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def step_latency(wm, params, batch: int, calls: int) -> tuple[float, float]:
  obs = np.zeros((wm.history, wm.obs_dim), np.float32)
  state = wm.init(params, obs)
  action = jnp.full((wm.action_dim,), 0.1)
  single = _latency_ms(jax.jit(wm.step), params, state, action, calls=calls)
  states = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), state)
  actions = jnp.broadcast_to(action, (batch, wm.action_dim))
  batched = _latency_ms(jax.jit(jax.vmap(wm.step, in_axes=(None, 0, 0))), params, states,
                        actions, calls=calls)
  return single, batched


def _untrained(task_name: str):
  config = importlib.import_module(f"experiments.configs.{task_name}").get_config()
  task = envs.task_fns(task_name)
  stats = {"mean": np.zeros(task.obs_dim), "std": np.ones(task.obs_dim)}
  predicted = structure.obs_structure(task).predicted
  wm = core.make(config.world_model, task, stats, np.ones(predicted.size))
  return wm, core.init_params(wm, jax.random.PRNGKey(0))


def main(argv):
  del argv
  models = ([load_world_model(_WORKDIR.value)[:2]] if _WORKDIR.value else
            [_untrained(t) for t in _TASKS.value])
  print(f"device: {jax.devices()[0].device_kind}")
  print(f"| task | members | step, 1 state (ms) | step, {_BATCH.value} states vmapped (ms) | "
        "batched / single | states/s batched |\n|---|---|---|---|---|---|")
  for wm, params in models:
    single, batched = step_latency(wm, params, _BATCH.value, _CALLS.value)
    print(f"| {wm.task.name} | {wm.ensemble_size} | {single:.3f} | {batched:.3f} | "
          f"{batched / single:.1f}x | {1e3 * _BATCH.value / batched:,.0f} |")


if __name__ == "__main__":
  app.run(main)
