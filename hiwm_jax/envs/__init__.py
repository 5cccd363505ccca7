"""The real world's stand-ins: a registry of simulated tasks.

    env = envs.make("push")          # Gymnasium env (the simulator: collect and evaluate only)
    task = envs.task_fns("push")     # pure JAX success / progress / expert on observations
"""
from __future__ import annotations

import importlib
import os

# Headless offscreen rendering; must be chosen before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

from hiwm_jax.envs.base import TaskEnv, TaskFns, check_action  # noqa: E402

_MODULES = {
    "pick_place": "hiwm_jax.envs.pick_place",
    "push": "hiwm_jax.envs.push",
    "cloth_fold": "hiwm_jax.envs.cloth_fold",
}


def names() -> list[str]:
  return sorted(_MODULES)


def _module(name: str):
  if name not in _MODULES:
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
  return importlib.import_module(_MODULES[name])


def task_fns(name: str) -> TaskFns:
  """The task's pure functions (no simulator is built)."""
  return _module(name).TASK


def make(name: str, **kwargs) -> TaskEnv:
  """A fresh simulator for the task; kwargs go to its constructor (e.g. max_steps)."""
  return _module(name).make_env(**kwargs)


__all__ = ["TaskEnv", "TaskFns", "check_action", "make", "names", "task_fns"]
