"""Simulator speed per task: control steps per second, random actions, no rendering.

  python benchmarks/sim_speed.py [--tasks=pick_place,push,cloth_fold] [--steps=3000]
"""
import time

import numpy as np
from absl import app, flags

from hiwm_jax import envs

_TASKS = flags.DEFINE_list("tasks", envs.names(), "Tasks to time.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Control steps timed per task (after a warm-up).")


def steps_per_second(name: str, num_steps: int) -> float:
  env = envs.make(name)
  rng = np.random.default_rng(0)
  actions = rng.uniform(-1, 1, (num_steps, env.task.action_dim)).astype(np.float32)
  env.reset(seed=0)
  for a in actions[:50]:  # warm-up
    env.step(a)
  seed, done, start = 1, True, time.perf_counter()
  for a in actions:
    if done:
      env.reset(seed=seed)
      seed += 1
    _, _, terminated, truncated, _ = env.step(a)
    done = terminated or truncated
  elapsed = time.perf_counter() - start  # resets included, as in data collection
  env.close()
  return num_steps / elapsed


def main(argv):
  del argv
  print("| task | control steps/s |\n|---|---|")
  for name in _TASKS.value:
    print(f"| {name} | {steps_per_second(name, _STEPS.value):.0f} |")


if __name__ == "__main__":
  app.run(main)
