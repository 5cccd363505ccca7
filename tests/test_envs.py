"""The registry and the Meta-World tasks: determinism, pure predicates, JAX experts, rendering."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import envs
from hiwm_jax.envs.episode import expert_controller, run_episode

METAWORLD_TASKS = ["pick_place", "push"]


def test_unknown_task_lists_known_ones():
  with pytest.raises(ValueError, match="known tasks: cloth_fold, pick_place, push"):
    envs.make("pick-place")
  with pytest.raises(ValueError, match="unknown task 'fold'"):
    envs.task_fns("fold")


@pytest.fixture(scope="module", params=METAWORLD_TASKS)
def env(request):
  env = envs.make(request.param)
  yield env
  env.close()


def test_same_seed_same_episode(env):
  controller = expert_controller(env.task, noise_scale=0.3)
  first = run_episode(env, controller, seed=7, random_prefix=5)
  again = run_episode(env, controller, seed=7, random_prefix=5)
  np.testing.assert_array_equal(first.observations, again.observations)
  np.testing.assert_array_equal(first.actions, again.actions)
  other, _ = env.reset(seed=8)
  assert not np.array_equal(other, first.observations[0]), "layouts must differ across seeds"


def test_observation_layout(env):
  obs, _ = env.reset(seed=0)
  assert obs.shape == (env.task.obs_dim,) and obs.dtype == np.float32
  covered = sorted(i for s in env.task.obs_layout.values() for i in range(env.task.obs_dim)[s])
  assert covered == list(range(env.task.obs_dim))
  np.testing.assert_array_equal(env.task.field(obs, "goal_pos"), obs[36:39])


@pytest.mark.parametrize("bad, message", [
    (np.zeros(3), r"shape \(3,\); expected \(4,\)"),
    (np.zeros((1, 4)), r"shape \(1, 4\); expected \(4,\)"),
    (np.array([0.0, np.nan, 0.0, 0.0]), r"non-finite values .* indices \[1\]"),
])
def test_bad_action_raises(env, bad, message):
  env.reset(seed=0)
  with pytest.raises(ValueError, match=message):
    env.step(bad)


def test_success_predicate_agrees_with_simulator(env):
  success = jax.jit(env.task.success)
  verdicts = []
  for seed in range(3):
    obs, _ = env.reset(seed=seed)
    for t in range(env.max_steps):
      obs, _, terminated, truncated, info = env.step(np.asarray(env.task.expert(obs, None)))
      verdicts.append((bool(success(obs)), info["success"]))
      if terminated or truncated:
        break
  pure, sim = zip(*verdicts)
  assert pure == sim
  assert any(sim) and not all(sim), "the check must see both outcomes"


def _metaworld_policy(name):
  from metaworld import policies
  return {"pick_place": policies.SawyerPickPlaceV3Policy,
          "push": policies.SawyerPushV3Policy}[name]()


def test_jax_expert_matches_metaworld_policy(env):
  reference = _metaworld_policy(env.task.name)
  expert = jax.jit(env.task.expert_action)
  rng = np.random.default_rng(0)
  compared = 0
  for seed in range(4):
    obs, _ = env.reset(seed=seed)
    for t in range(60):
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.clip(reference.get_action(obs.astype(np.float64)), -1, 1)
      got = np.asarray(expert(obs, None))
      np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"seed {seed} step {t}")
      compared += 1
      # Random actions now and then put the expert in off-nominal states too.
      action = rng.uniform(-1, 1, 4) if rng.random() < 0.2 else want
      obs, _, terminated, _, _ = env.step(action)
      if terminated:
        break
  assert compared > 150


def test_expert_jits_and_vmaps(env):
  obs = np.stack([env.reset(seed=s)[0] for s in range(4)])
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  batched = jax.jit(jax.vmap(lambda o, k: env.task.expert(o, k, 0.1)))(obs, keys)
  single = np.stack([np.asarray(env.task.expert(o, k, 0.1)) for o, k in zip(obs, keys)])
  np.testing.assert_allclose(batched, single, atol=1e-6)
  assert batched.shape == (4, env.task.action_dim)
  assert np.all(np.abs(batched) <= 1.0)
  progress = jax.vmap(env.task.progress)(jnp.asarray(obs))
  assert np.all((progress >= 0) & (progress <= 1))


def test_expert_solves_a_few_episodes(env):
  controller = expert_controller(env.task)
  assert all(run_episode(env, controller, seed).success for seed in range(3))


def test_render_and_render_obs(env):
  obs, _ = env.reset(seed=1)
  for _ in range(20):
    obs, *_ = env.step(np.asarray(env.task.expert(obs, None)))
  live = env.render()
  drawn = env.render_obs(obs)
  assert live.shape == drawn.shape == (128, 128, 3) and drawn.dtype == np.uint8
  assert np.abs(live.astype(int) - drawn).mean() < 10, "a drawn observation should look like the scene"
  with pytest.raises(ValueError, match=r"expected \(39,\)"):
    env.render_obs(obs[:10])
