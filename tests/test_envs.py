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


def test_a_resting_object_clear_of_the_hand_stays_still_in_the_simulator():
  """`object_stays_still` is push's physics: where it says so, the puck does not move (a
  play-like episode: random first steps, then the noisy expert pushes the puck)."""
  from hiwm_jax.envs import metaworld_env
  env = envs.make("push")
  episode = run_episode(env, expert_controller(env.task, noise_scale=0.3), seed=11,
                        random_prefix=20)
  env.close()
  obs, acts = jnp.asarray(episode.observations), jnp.asarray(episode.actions)
  still = metaworld_env.object_stays_still(obs[:-2], obs[1:-1], acts[1:])  # [T-1]
  moves = np.linalg.norm(np.diff(episode.observations[1:, 4:7], axis=0), axis=-1)  # [T-1]
  assert still.sum() >= 10 and (moves > 1e-3).sum() >= 10  # the rule and pushes both occur
  assert moves[np.asarray(still)].max() < 2e-4, "the rule froze a puck the simulator moved"


def test_an_object_that_moved_or_is_near_the_hand_is_not_still():
  from hiwm_jax.envs import metaworld_env
  obs, _ = envs.make("push").reset(seed=0)
  obs = jnp.asarray(obs)
  action = jnp.zeros(4)
  far = obs.at[0:3].set(obs[4:7] + jnp.array([0.0, 0.0, 0.2]))  # the hand 20 cm above the puck
  assert metaworld_env.object_stays_still(far, far, action)
  moved = far.at[4].add(0.001)  # 1 mm since the last step
  assert not metaworld_env.object_stays_still(far, moved, action)
  near = obs.at[0:3].set(obs[4:7] + jnp.array([0.05, 0.0, 0.0]))  # 5 cm: may touch it
  assert not metaworld_env.object_stays_still(near, near, action)


def test_the_mocap_target_follows_from_the_actions_alone(env):
  """`reset_mocap` and `next_mocap` are Meta-World's controller: integrating the actions from
  the reset observation gives the simulator's mocap target, bounds included."""
  from hiwm_jax.envs import metaworld_env
  obs, _ = env.reset(seed=4)
  target = metaworld_env.reset_mocap(jnp.asarray(obs))
  np.testing.assert_allclose(target, env.mocap_pos, atol=1e-5)
  rng = np.random.default_rng(0)
  for t in range(60):  # a steady push out of bounds, then random actions (clipped at 1)
    action = np.array([1.5, 1.0, 1.0, 0.0]) if t < 40 else rng.uniform(-2.0, 2.0, 4)
    env.step(np.clip(action, -1.0, 1.0).astype(np.float32))
    target = metaworld_env.next_mocap(target, jnp.asarray(action))
    np.testing.assert_allclose(target, env.mocap_pos, atol=1e-5)
  assert np.isclose(env.mocap_pos[1], metaworld_env.MOCAP_HIGH[1])  # the bound was reached
