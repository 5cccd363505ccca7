"""Batch branching: K continuations from one state in one vmapped call, and what the WM judges.

From a real first observation (a simulator seed), or from a node of a saved session:
  python -m experiments.branch --config=experiments/configs/push.py \
      --policy=/tmp/hiwm/runs/push_diffusion_base --world_model=/tmp/hiwm/runs/wm_push \
      --seed=300000 --k=16 --steps=64 [--expert_steps=16 --noise=0.3]
  python -m experiments.branch ... --session=/tmp/hiwm/runs/hiwm_push_r1/session --node=3
--expert_steps=0 branches the policy alone (different sampling keys); k > 0 lets the task expert
act for k steps first, with --noise. Prints the outcome distribution and writes it to --out.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import rollout, world_model
from hiwm_jax.hiwm_round import start_observations
from hiwm_jax.policies.train import load_policy
from hiwm_jax.session import Session

_CONFIG = config_flags.DEFINE_config_file("config", None, "A task config file.")
_POLICY = flags.DEFINE_string("policy", None, "The policy's work directory.")
_WORLD_MODEL = flags.DEFINE_string("world_model", None, "The world model's work directory.")
_SEED = flags.DEFINE_integer("seed", None, "Branch from the real first observation at this seed.")
_SESSION = flags.DEFINE_string("session", None, "... or from a node of this session directory.")
_NODE = flags.DEFINE_integer("node", None, "The session node to branch from.")
_K = flags.DEFINE_integer("k", 16, "Number of continuations.")
_STEPS = flags.DEFINE_integer("steps", 64, "Steps per continuation.")
_EXPERT_STEPS = flags.DEFINE_integer("expert_steps", 0, "Expert steps before the policy.")
_NOISE = flags.DEFINE_float("noise", 0.3, "The expert's action noise.")
_RNG = flags.DEFINE_integer("rng", 0, "Random seed of the continuations.")
_OUT = flags.DEFINE_string("out", "branch_outcomes.json", "Where to write the outcomes (JSON).")
flags.mark_flags_as_required(["config", "policy", "world_model"])


def start_carry(wm, wm_params, policy) -> tuple[rollout.Carry, int, str]:
  """The carry to branch from, its step index, and a description of where it came from."""
  if (_SEED.value is None) == (_SESSION.value is None):
    raise app.UsageError("give exactly one of --seed (a real start) or --session with --node")
  if _SEED.value is not None:
    obs = start_observations(wm.task.name, [_SEED.value])
    return rollout.start(wm, wm_params, obs, policy.history), 0, f"seed {_SEED.value}"
  if _NODE.value is None:
    raise app.UsageError("--session needs --node (list them with Session.open(dir).nodes())")
  session = Session.open(_SESSION.value)
  example = rollout.start(wm, wm_params, jnp.zeros((1, wm.obs_dim)), policy.history)
  node = session.node(_NODE.value, like=example)
  return node.state, int(node.step or 0), f"session {_SESSION.value} node {_NODE.value}"


def main(argv):
  del argv
  config = _CONFIG.value
  policy, policy_params, _ = load_policy(_POLICY.value)
  wm, wm_params, _ = world_model.load_world_model(_WORLD_MODEL.value)
  carry, t0, origin = start_carry(wm, wm_params, policy)
  k, steps = _K.value, _STEPS.value
  controls = rollout.expert_then_policy(steps, _EXPERT_STEPS.value, policy.action_dim,
                                        _NOISE.value, num=k)
  keys = jax.random.split(jax.random.PRNGKey(_RNG.value), k)
  out = rollout.as_numpy(jax.jit(lambda c: rollout.branch(
      wm, wm_params, policy, policy_params, c, keys, steps, controls, t0))(carry))
  success = out.done[:, -1]
  result = {
      "task": config.task, "from": origin, "k": k, "steps": steps,
      "expert_steps": _EXPERT_STEPS.value, "noise": _NOISE.value,
      "wm_success_rate": float(success.mean()),
      "final_progress": out.progress[:, -1].tolist(),
      "max_risk": out.risk.max(axis=1).tolist(), "success": success.tolist(),
      "steps_to_success": [int(np.argmax(d)) if d.any() else None for d in out.done]}
  print(f"{config.task}, {k} continuations of {steps} steps from {origin} "
        f"({_EXPERT_STEPS.value} expert steps first):")
  print(f"  WM success {int(success.sum())}/{k} = {100 * success.mean():.0f}%")
  p = out.progress[:, -1]
  print(f"  final progress: mean {p.mean():.2f}, min {p.min():.2f}, median {np.median(p):.2f}, "
        f"max {p.max():.2f}")
  print(f"  max risk per branch: mean {out.risk.max(1).mean():.2f}, max {out.risk.max():.2f}")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=2)
  print(f"outcomes written to {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
