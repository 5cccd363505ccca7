"""Closed-loop rollouts in the world model: rollback, branching, override, determinism."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import envs, rollout
from hiwm_jax.data import rlds

STEPS = 32


@pytest.fixture(scope="module")
def parts(tiny_push_models):
  """A real (untrained, small) push world model and flow policy."""
  wm, wm_params, policy, policy_params = tiny_push_models
  env = envs.make("push")
  first_obs, _ = env.reset(seed=3)
  env.close()
  carry = rollout.start(wm, wm_params, first_obs[None], policy.history)
  run = jax.jit(lambda carry, key, controls=None, t0=0: rollout.run(
      wm, wm_params, policy, policy_params, carry, key, STEPS, controls, t0),
                static_argnames=())
  return wm, wm_params, policy, policy_params, carry, run


def test_shapes_and_cache(parts):
  wm, _, policy, _, carry, run = parts
  out = run(carry, jax.random.PRNGKey(0))
  chex.assert_shape(out.actions, (STEPS, policy.action_dim))
  chex.assert_shape(out.observations, (STEPS + 1, wm.obs_dim))
  chex.assert_shape([out.success, out.progress, out.risk, out.valid, out.done], (STEPS + 1,))
  chex.assert_trees_all_equal(rollout.rollback(out.cache, 0), carry)
  np.testing.assert_array_equal(out.labels, rlds.POLICY)
  # the policy acted: executed actions are its proposals, inside the action bounds
  np.testing.assert_array_equal(out.actions, out.policy_actions)
  assert np.all(np.abs(np.asarray(out.actions)) <= 1.0)


def test_fixed_key_is_deterministic(parts):
  *_, carry, run = parts
  chex.assert_trees_all_equal(run(carry, jax.random.PRNGKey(5)), run(carry, jax.random.PRNGKey(5)))


def test_rollback_is_bit_identical_and_resumes_exactly(parts):
  _, _, policy, _, carry, run = parts
  key = jax.random.PRNGKey(7)
  out = run(carry, key)
  t = 2 * policy.execute
  # the state at t is the one first reached: a rollout that stops at t reaches the same
  short = jax.jit(lambda c: rollout.run(parts[0], parts[1], policy, parts[3], c, key, t))(carry)
  chex.assert_trees_all_equal(rollout.rollback(out.cache, t), rollback_last(short.cache))
  # resuming from the rolled-back state with the same key repeats the original tail exactly
  resumed = run(rollout.rollback(out.cache, t), key, None, t)
  np.testing.assert_array_equal(resumed.actions[:STEPS - t], out.actions[t:])
  np.testing.assert_array_equal(resumed.observations[:STEPS - t + 1], out.observations[t:])


def rollback_last(cache):
  return jax.tree.map(lambda x: x[-1], cache)


def test_override_mask_places_exactly_the_given_actions(parts):
  _, _, policy, _, carry, run = parts
  given = jax.random.uniform(jax.random.PRNGKey(2), (STEPS, policy.action_dim), minval=-1,
                             maxval=1)
  mask = np.zeros(STEPS, bool)
  mask[[0, 5, 6, 17, STEPS - 1]] = True
  out = run(carry, jax.random.PRNGKey(3), rollout.override(given, mask))
  np.testing.assert_array_equal(np.asarray(out.actions)[mask], np.asarray(given)[mask])
  np.testing.assert_array_equal(np.asarray(out.actions)[~mask],
                                np.asarray(out.policy_actions)[~mask])
  np.testing.assert_array_equal(out.labels, np.where(mask, rlds.INTERVENTION, rlds.POLICY))


def test_vmapped_branches_equal_branches_run_alone(parts):
  wm, wm_params, policy, policy_params, carry, run = parts
  k = 4
  keys = jax.random.split(jax.random.PRNGKey(11), k)
  controls = rollout.expert_then_policy(STEPS, policy.execute * 2, policy.action_dim, noise=0.3,
                                        num=k)
  branches = jax.jit(lambda c: rollout.branch(wm, wm_params, policy, policy_params, c, keys,
                                              STEPS, controls))(carry)
  chex.assert_shape(branches.actions, (k, STEPS, policy.action_dim))
  for i in range(k):
    alone = run(carry, keys[i], jax.tree.map(lambda x: x[i], controls))
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], branches), alone, rtol=1e-5,
                                atol=1e-6)
  # the corrections differ (different noise), and the expert acted for exactly k steps
  assert not np.allclose(branches.actions[0], branches.actions[1])
  np.testing.assert_array_equal(
      branches.labels[0], np.where(np.arange(STEPS) < 2 * policy.execute, rlds.INTERVENTION,
                                   rlds.POLICY))


def test_start_rejects_wrong_observation_shape(parts):
  wm, wm_params, policy, *_ = parts
  with pytest.raises(ValueError, match="expected"):
    rollout.start(wm, wm_params, jnp.zeros((1, wm.obs_dim + 1)), policy.history)
