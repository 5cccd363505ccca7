"""Inspect a work directory's checkpoints without building the model (policies and world models).

  python -m experiments.inspect_checkpoint --workdir=/tmp/hiwm/runs/push_diffusion [--step=N]
Lists the steps, then one step's tree (paths, shapes, dtypes, parameter counts), its metrics,
and the run's config.
"""
import json

import jax
import numpy as np
from absl import app, flags

from hiwm_jax import checkpoint

_WORKDIR = flags.DEFINE_string("workdir", None, "A work directory of a training run.")
_STEP = flags.DEFINE_integer("step", None, "Which checkpoint (default: the latest).")
_DEPTH = flags.DEFINE_integer("depth", 4, "Group parameter counts at this path depth.")
flags.mark_flags_as_required(["workdir"])


def _path(key_path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


def describe(tree, depth: int) -> list[str]:
  """One line per leaf (path, shape, dtype), then counts per path prefix of `depth` parts."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  lines = [f"  {_path(kp):70s} {str(tuple(np.shape(x))):16s} {np.asarray(x).dtype}"
           for kp, x in leaves]
  counts: dict[str, int] = {}
  for kp, x in leaves:
    prefix = "/".join(_path(kp).split("/")[:depth])
    counts[prefix] = counts.get(prefix, 0) + int(np.size(x))
  lines.append("parameter counts:")
  lines += [f"  {prefix:70s} {n:>12,d}" for prefix, n in counts.items()]
  return lines


def main(argv):
  del argv
  ckpt = checkpoint.Checkpointer(_WORKDIR.value, create=False)
  print(f"checkpoints in {ckpt.directory}: steps {ckpt.steps()}")
  state, metadata = ckpt.restore(step=_STEP.value)
  ckpt.close()
  print(f"step {_STEP.value or max(ckpt.steps())} tree:")
  print("\n".join(describe(state, _DEPTH.value)))
  for name in ("params", "ema_params"):
    if name in state:
      n = sum(int(np.size(x)) for x in jax.tree.leaves(state[name]))
      print(f"{name}: {n:,d} parameters")
  print("metrics:", json.dumps(metadata.get("metrics", {}), indent=2))
  print("metadata keys:", sorted(metadata))
  print("config:", checkpoint.load_config(_WORKDIR.value).to_json(indent=2))


if __name__ == "__main__":
  app.run(main)
