"""One small module over orbax: every checkpoint is a state pytree plus JSON beside it.

A work directory looks like:

  <workdir>/config.json                 the resolved config that made the run
  <workdir>/checkpoints/<step>/state    the pytree (orbax StandardSave)
  <workdir>/checkpoints/<step>/metadata JSON: metrics, normalization stats, anything small

Resume order (`restore`): the latest step in the work directory, else nothing (the caller then
initializes, e.g. from a base policy for post-training).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
  """A work directory has no readable checkpoint where one was asked for."""


def write_text(path: str, text: str) -> None:
  """Writes `text` atomically: a crash leaves the old file, never half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, value) -> None:
  """Writes `value` as indented JSON, atomically."""
  write_text(path, json.dumps(value, indent=2))


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read the run's config {path} ({e}); is {workdir} a work "
                          "directory written by an hiwm_jax training run?") from e


def _on_this_host(tree: Any) -> Any:
  """ShapeDtypeStructs of `tree`'s leaves (arrays, eval_shape outputs, orbax metadata), on
  this host's first device unless a leaf already carries a jax sharding: a checkpoint written
  on a GPU or TPU then restores on a CPU-only machine, and vice versa."""
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def leaf(x):
    sharding = getattr(x, "sharding", None)  # orbax metadata has its own kind: not placed
    placed = isinstance(sharding, jax.sharding.Sharding)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding if placed else default)
  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves and restores (state pytree, JSON metadata) per step under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, max_to_keep: int | None = 3, create: bool = True):
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not create and not os.path.isdir(directory):
      raise CheckpointError(f"no checkpoints in {workdir} (no directory {directory})")
    self.directory = directory
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create))

  def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata or {})))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any = None, step: int | None = None) -> tuple[Any, dict]:
    """(state, metadata) at `step` (default: latest). With `abstract_state` (e.g. from
    `jax.eval_shape`) the tree comes back with that structure and dtypes; without it, as
    saved (nested dicts of arrays), which is enough to inspect a checkpoint. Arrays land on
    this host's first device unless `abstract_state` places them (its leaves' shardings)."""
    self.wait()
    step = self.latest_step() if step is None else step
    if step is None or step not in self.steps():
      raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; "
                            f"steps there: {self.steps()}")
    try:
      target = self._saved_tree(step) if abstract_state is None else _on_this_host(abstract_state)
      restore = ocp.args.StandardRestore(target)
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=restore, metadata=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for a damaged checkpoint
      raise CheckpointError(f"cannot restore step {step} from {self.directory} "
                            f"({type(e).__name__}: {e}); the checkpoint may be corrupt — "
                            "delete that step's directory to fall back to an earlier one") from e
    return out.state, dict(out.metadata or {})

  def _saved_tree(self, step: int) -> Any:
    """The structure, shapes and dtypes of the state saved at `step`, placed on this host."""
    path = os.path.join(self.directory, str(step), "state")
    return _on_this_host(ocp.StandardCheckpointer().metadata(path).item_metadata)

  def close(self) -> None:
    self._manager.close()
