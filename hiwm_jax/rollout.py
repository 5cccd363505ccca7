"""Closed-loop policy rollouts inside the world model: one `lax.scan`, every state cached.

    start = rollout.start(wm, wm_params, first_obs, policy.history)
    out = rollout.run(wm, wm_params, policy, policy_params, start, rng, steps=64)
    carry = rollout.rollback(out.cache, t)            # the exact carry first reached at step t
    outs = rollout.branch(wm, wm_params, policy, policy_params, carry, keys, steps=64,
                          controls=rollout.expert_then_policy(64, k=16, action_dim=A, num=K))

The world model `wm` is anything with the pure carry API (`init`, `step`, `observe`, `judge`),
its `history` length and its `task`; the policy is a `policies.Policy`. The scan runs chunk by
chunk: the policy plans a chunk of H actions, the first n (`policy.execute`) are executed, then it plans
again — as on the robot. `Controls` say, per step, where a person's actions replace the policy's:
given actions (`override`) or the task expert acting from the observed state (`expert`).
"""
from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hiwm_jax.data import rlds
from hiwm_jax.policies.base import Policy


@struct.dataclass
class Carry:
  """What a rollout carries from step to step: the WM state and what the policy last saw."""
  wm_state: Any  # the world model's state pytree
  obs_history: jax.Array  # [h, obs_dim] the policy's observation history, raw units


@struct.dataclass
class Controls:
  """Who acts at each step [T]: the policy unless `override_mask` (use `override_actions`) or
  `expert_mask` (the task expert, acting on the observed state with `expert_noise`)."""
  override_actions: jax.Array  # [T, A]
  override_mask: jax.Array  # [T] bool
  expert_mask: jax.Array  # [T] bool
  expert_noise: jax.Array  # [] Gaussian action noise of the expert


@struct.dataclass
class Rollout:
  """A finished rollout. `cache` leaves are [T+1, ...]: cache[t] is the carry before step t."""
  cache: Carry
  observations: jax.Array  # [T+1, obs_dim] observed (raw units), observations[0] the start
  actions: jax.Array  # [T, A] executed
  policy_actions: jax.Array  # [T, A] what the policy proposed at each step
  labels: jax.Array  # [T] int32: rlds.POLICY or rlds.INTERVENTION
  success: jax.Array  # [T+1] bool, judged by the world model
  progress: jax.Array  # [T+1] float
  risk: jax.Array  # [T+1] float
  valid: jax.Array  # [T+1] bool: finite state
  done: jax.Array  # [T+1] bool: a valid success was reached at or before t


def no_controls(steps: int, action_dim: int) -> Controls:
  """The policy acts at every step."""
  return Controls(override_actions=jnp.zeros((steps, action_dim), jnp.float32),
                  override_mask=jnp.zeros((steps,), bool), expert_mask=jnp.zeros((steps,), bool),
                  expert_noise=jnp.zeros((), jnp.float32))


def override(actions, mask) -> Controls:
  """Given actions [T, A] replace the policy's where mask [T] is True."""
  actions = jnp.asarray(actions, jnp.float32)
  mask = jnp.asarray(mask, bool)
  chex.assert_rank(actions, 2)
  chex.assert_shape(mask, actions.shape[:1])
  return no_controls(*actions.shape).replace(override_actions=actions, override_mask=mask)


def expert_then_policy(steps: int, k: int, action_dim: int, noise: float = 0.0,
                       num: int | None = None) -> Controls:
  """A correction: the expert for the first k steps, then the policy; `num` stacks K copies
  (leading axis) for `branch`. Keep k a multiple of `policy.execute` so the policy resumes
  with a fresh plan."""
  controls = no_controls(steps, action_dim).replace(
      expert_mask=jnp.arange(steps) < k, expert_noise=jnp.asarray(noise, jnp.float32))
  if num is None:
    return controls
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), controls)


def start(wm, wm_params, obs_history, policy_history: int) -> Carry:
  """The carry at a real start: `obs_history` [t, obs_dim] (t >= 1, raw units, oldest first) is
  padded by repeating its first observation, as on the robot at an episode's start."""
  obs_history = jnp.asarray(obs_history, jnp.float32)
  chex.assert_rank(obs_history, 2)
  need = max(wm.history, policy_history)
  pad = jnp.broadcast_to(obs_history[:1], (max(0, need - len(obs_history)),) +
                         obs_history.shape[1:])
  full = jnp.concatenate([pad, obs_history])
  return Carry(wm_state=wm.init(wm_params, full[len(full) - wm.history:]),
               obs_history=full[len(full) - policy_history:])


def run(wm, wm_params, policy: Policy, policy_params, carry: Carry, rng: jax.Array,
        steps: int, controls: Controls | None = None, t0: int | jax.Array = 0) -> Rollout:
  """Rolls `policy` out for `steps` control steps in the world model from `carry`.

  Pure and jittable (steps static). Randomness: the plan at global step t0 + i uses
  fold_in(rng, t0 + i), so a rollout resumed from rollback(cache, t) with t0=t (t a multiple of
  policy.execute) repeats the original exactly. The expert is the world model's task's
  (`wm.task.expert`), acting on the observed state.
  """
  n = policy.execute
  action_dim = policy.action_dim
  controls = no_controls(steps, action_dim) if controls is None else controls
  chex.assert_shape(controls.override_actions, (steps, action_dim))
  num_chunks = -(-steps // n)
  padded = jax.tree.map(lambda x: _pad_steps(x, num_chunks * n) if x.ndim else x, controls)
  per_chunk = jax.tree.map(lambda x: x.reshape((num_chunks, n) + x.shape[1:]) if x.ndim else x,
                           padded)
  t_chunks = t0 + n * jnp.arange(num_chunks)

  def chunk_body(carry: Carry, xs):
    t_start, override_actions, override_mask, expert_mask = xs
    plan = policy.act(policy_params, carry.obs_history, jax.random.fold_in(rng, t_start))

    def step_body(carry: Carry, xs):
      i, action_given, given, by_expert = xs
      obs = carry.obs_history[-1]
      proposed = plan[i]
      key = jax.random.fold_in(jax.random.fold_in(rng, t_start + i), 1)
      expert = wm.task.expert(obs, key, controls.expert_noise)
      action = jnp.where(given, action_given, jnp.where(by_expert, expert, proposed))
      wm_state = wm.step(wm_params, carry.wm_state, action)
      new_obs = wm.observe(wm_params, wm_state)
      new = Carry(wm_state, jnp.concatenate([carry.obs_history[1:], new_obs[None]]))
      label = jnp.where(given | by_expert, rlds.INTERVENTION, rlds.POLICY).astype(jnp.int32)
      return new, (new, action, proposed, label, wm.judge(wm_params, wm_state))

    return jax.lax.scan(step_body, carry, (jnp.arange(n), override_actions, override_mask,
                                           expert_mask))

  _, (carries, actions, proposed, labels, judged) = jax.lax.scan(
      chunk_body, carry, (t_chunks, per_chunk.override_actions, per_chunk.override_mask,
                          per_chunk.expert_mask))
  flat = lambda x: x.reshape((num_chunks * n,) + x.shape[2:])[:steps]
  carries, actions, proposed, labels, judged = jax.tree.map(
      flat, (carries, actions, proposed, labels, judged))
  first = wm.judge(wm_params, carry.wm_state)
  cache = jax.tree.map(lambda x0, xs: jnp.concatenate([x0[None], xs]), carry, carries)
  judged = jax.tree.map(lambda x0, xs: jnp.concatenate([jnp.asarray(x0)[None], xs]), first,
                        judged)
  success = judged["success"] & judged["valid"]
  return Rollout(cache=cache, observations=cache.obs_history[:, -1], actions=actions,
                 policy_actions=proposed, labels=labels, success=success,
                 progress=judged["progress"], risk=judged["risk"], valid=judged["valid"],
                 done=jnp.cumsum(success) > 0)


def rollback(cache: Carry, t: int | jax.Array) -> Carry:
  """The carry before step t: indexing the cache, no recomputation (a snapshot is a reference)."""
  return jax.tree.map(lambda x: x[t], cache)


def branch(wm, wm_params, policy: Policy, policy_params, carry: Carry, keys: jax.Array,
           steps: int, controls: Controls | None = None, t0: int | jax.Array = 0) -> Rollout:
  """K continuations from one carry as one vmap: keys [K] (and controls with leading K, if
  given); every Rollout leaf gains a leading K axis. Branch i equals run(...) with keys[i]."""
  if controls is None:
    controls = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(keys),) + x.shape),
                            no_controls(steps, policy.action_dim))
  one = lambda key, c: run(wm, wm_params, policy, policy_params, carry, key, steps, c, t0)
  return jax.vmap(one)(keys, controls)


def _pad_steps(x: jax.Array, length: int) -> jax.Array:
  return jnp.concatenate([x, jnp.zeros((length - len(x),) + x.shape[1:], x.dtype)])


def as_numpy(tree) -> Any:
  """Host copies of a rollout's arrays (for gating, journaling and export)."""
  return jax.tree.map(np.asarray, tree)
