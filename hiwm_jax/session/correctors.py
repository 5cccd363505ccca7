"""The simulated person: a scripted expert that sees only what the world model shows.

It watches a policy's rollout in the world model through `observe` and `judge` (the rollout's
observations, progress and risk — never the simulator), decides where the rollout went wrong,
rolls back r steps before that point, and tries K different corrective continuations from there
(the task expert with different noise for k steps, then the policy again) as one vmapped call.

Watching a finished rollout is the same as watching it live: what happens before the person
steps in does not depend on when they will, so the gate runs over the cached rollout at once.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hiwm_jax import rollout as rollout_lib
from hiwm_jax.envs.base import TaskFns

GATES = ("stall", "risk", "expert_gap")
KEEP_RULES = ("wm_success", "all")


def default_config() -> ml_collections.ConfigDict:
  """The `corrector` section of an experiment config."""
  return ml_collections.ConfigDict(dict(
      gates=("stall", "expert_gap"),  # any of GATES; the first step any fires is the failure
      stall_steps=24,  # stall: progress rose by less than stall_min_gain over this many steps
      stall_min_gain=0.02,
      risk_threshold=3.0,  # risk: ensemble disagreement (normalized) above this
      gap_threshold=1.0,  # expert_gap: |policy action - expert action| (L2) above this ...
      gap_steps=4,  # ... for this many consecutive steps (HG-DAgger's gate)
      rollback_steps=8,  # r: roll back this far before the failure step
      num_branches=4,  # K corrective continuations per failure state
      correction_steps=16,  # k: expert steps per correction (a multiple of policy.execute)
      expert_noise=0.1,  # the expert's action noise: what makes the K corrections differ
      keep="wm_success",  # which corrections are kept: KEEP_RULES
  ))


def check_config(config: ml_collections.ConfigDict, execute: int) -> None:
  unknown = set(config.gates) - set(GATES)
  if unknown or not config.gates:
    raise ValueError(f"corrector.gates must be a non-empty subset of {GATES}; got "
                     f"{tuple(config.gates)}")
  if config.keep not in KEEP_RULES:
    raise ValueError(f"corrector.keep must be one of {KEEP_RULES}; got {config.keep!r}")
  if config.correction_steps % execute:
    raise ValueError(f"corrector.correction_steps ({config.correction_steps}) must be a "
                     f"multiple of policy.execute ({execute}) so the policy resumes with a "
                     "fresh plan")
  if config.num_branches < 1 or config.rollback_steps < 0:
    raise ValueError("corrector.num_branches must be >= 1 and rollback_steps >= 0")


@dataclasses.dataclass(frozen=True)
class SimulatedPerson:
  """Gates a rollout, picks the rollback step, and makes K corrections in one vmap."""
  task: TaskFns
  config: ml_collections.ConfigDict

  def gate(self, out: rollout_lib.Rollout) -> np.ndarray:
    """[T] bool: where the person would call the rollout wrong, before it is done."""
    c = self.config
    out = rollout_lib.as_numpy(out)
    steps = len(out.actions)
    fired = np.zeros(steps, bool)
    if "stall" in c.gates:
      progress = out.progress[:steps]
      past = np.concatenate([np.full(c.stall_steps, -np.inf), progress])[:steps]
      fired |= (np.arange(steps) >= c.stall_steps) & (progress - past < c.stall_min_gain)
    if "risk" in c.gates:
      fired |= out.risk[:steps] > c.risk_threshold
    if "expert_gap" in c.gates:
      expert = np.asarray(self._expert_actions(out.observations[:steps]))
      far = np.linalg.norm(out.policy_actions - expert, axis=-1) > c.gap_threshold
      run = np.convolve(far, np.ones(c.gap_steps), "full")[:steps] >= c.gap_steps
      fired |= run
    fired |= ~out.valid[:steps]
    return fired & ~out.done[:steps]

  @functools.cached_property
  def _expert_actions(self):
    """The noise-free expert's action at each observation: [T, obs_dim] -> [T, A], jitted."""
    return jax.jit(jax.vmap(lambda obs: self.task.expert(obs, jax.random.PRNGKey(0))))

  def failure_step(self, out: rollout_lib.Rollout) -> int | None:
    """The first step the gate fires; None if the person lets the rollout run."""
    fired = np.flatnonzero(self.gate(out))
    return int(fired[0]) if len(fired) else None

  def rollback_step(self, failure_step: int, execute: int) -> int:
    """r steps before the failure, on a plan boundary (so resuming repeats the original)."""
    t = max(0, failure_step - self.config.rollback_steps)
    return t - t % execute

  def correct(self, wm, wm_params, policy, policy_params, carry: rollout_lib.Carry,
              rng: jax.Array, steps: int, t0: int) -> rollout_lib.Rollout:
    """K corrective continuations from `carry` (one vmap): expert for k steps, then policy."""
    c = self.config
    keys = jax.random.split(rng, c.num_branches)
    controls = rollout_lib.expert_then_policy(steps, min(c.correction_steps, steps),
                                              policy.action_dim, c.expert_noise,
                                              num=c.num_branches)
    return rollout_lib.branch(wm, wm_params, policy, policy_params, carry, keys, steps,
                              controls, t0)

  def keep(self, branches: rollout_lib.Rollout) -> np.ndarray:
    """[K] bool: the corrections kept by the config's rule."""
    done = np.asarray(branches.done[:, -1])
    return done if self.config.keep == "wm_success" else np.ones_like(done)
