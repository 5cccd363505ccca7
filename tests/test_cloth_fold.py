"""cloth_fold: determinism, stability, the pure predicate against the simulator, the expert."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import envs
from hiwm_jax.envs import cloth_fold

TASK = envs.task_fns("cloth_fold")
_expert = jax.jit(TASK.expert_action)


@pytest.fixture(scope="module")
def env():
  env = envs.make("cloth_fold")
  yield env
  env.close()


def _random_actions(seed: int, n: int) -> np.ndarray:
  """[n, 4] uniform actions whose grip is held closed for 10 steps in every 20, so pinched
  vertices get dragged around (the hard case for the solver)."""
  actions = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 4))
  actions[np.arange(n) % 20 < 10, 3] = 1.0
  return actions


def _run_expert(env, seed: int, prefix: int = 0):
  """Observations [T + 1, 196], the simulator's success flags [T] and the actions [T, 4] of
  one episode."""
  obs, _ = env.reset(seed=seed)
  all_obs, sim_success, actions = [obs], [], []
  for action in _random_actions(seed, prefix):
    obs, *_, info = env.step(action)
    all_obs.append(obs)
    sim_success.append(info["success"])
    actions.append(action)
  for t in range(TASK.max_steps - prefix):
    action = np.asarray(_expert(obs, jax.random.PRNGKey(t)))
    obs, _, terminated, _, info = env.step(action)
    all_obs.append(obs)
    sim_success.append(info["success"])
    actions.append(action)
    if terminated:
      break
  return np.stack(all_obs), np.array(sim_success), np.stack(actions)


def test_layout_covers_the_observation():
  covered = sorted(i for s in TASK.obs_layout.values() for i in range(TASK.obs_dim)[s])
  assert covered == list(range(TASK.obs_dim)) and TASK.obs_dim == 196
  assert (cloth_fold.CORNER_A, cloth_fold.CORNER_B) == (0, 63)


def test_same_seed_is_bit_identical_and_seeds_differ(env):
  def episode(seed):
    obs, _ = env.reset(seed=seed)
    return np.stack([obs] + [env.step(a)[0] for a in _random_actions(0, 40)])

  first = episode(5)
  np.testing.assert_array_equal(first, episode(5))
  other = episode(6)
  assert not np.allclose(first[0], other[0])  # randomized cloth pose and gripper start.


def test_random_actions_stay_finite_and_bounded(env):
  edges = env.model.flex_edge  # [E, 2]
  for seed in range(5):
    obs, _ = env.reset(seed=seed)
    verts = TASK.field(obs, "cloth_verts").reshape(-1, 3)
    rest = np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1)  # [E]
    for action in _random_actions(seed, 400):
      obs, *_ = env.step(action)
      assert np.isfinite(obs).all()
      verts = TASK.field(obs, "cloth_verts").reshape(-1, 3)
      assert np.abs(verts[:, :2]).max() < 0.6
      assert -0.03 < verts[:, 2].min() and verts[:, 2].max() < 0.5
      stretch = np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1) / rest
      assert stretch.max() < 1.3
    assert np.abs(env.data.qvel).max() < 10.0


@pytest.mark.parametrize("seed,prefix", [(0, 0), (1, 0), (2, 30)])
def test_success_agrees_with_simulator_and_expert_folds(env, seed, prefix):
  all_obs, sim_success, _ = _run_expert(env, seed, prefix)
  pure = np.asarray(jax.vmap(TASK.success)(jnp.asarray(all_obs[1:])))
  np.testing.assert_array_equal(pure, sim_success)
  assert sim_success[-1] and not sim_success[:-1].any()  # ends on success, not before.
  progress = np.asarray(jax.vmap(TASK.progress)(jnp.asarray(all_obs[1:])))
  assert ((progress >= 0.0) & (progress <= 1.0)).all()
  np.testing.assert_array_equal(progress == 1.0, sim_success)


def test_expert_is_jittable_and_vmappable(env):
  all_obs, *_ = _run_expert(env, 3, prefix=20)  # approach, grasp, carry, release phases.
  obs = jnp.asarray(all_obs)
  keys = jax.random.split(jax.random.PRNGKey(0), len(obs))
  batched = jax.jit(jax.vmap(TASK.expert_action))(obs, keys)  # [T, 4]
  single = np.stack([np.asarray(_expert(o, k)) for o, k in zip(obs, keys)])
  np.testing.assert_allclose(np.asarray(batched), single, atol=1e-6)
  assert batched.shape == (len(obs), 4) and np.abs(single).max() <= 1.0
  assert (single[:, 3] > 0).any() and (single[:, 3] < 0).any()  # it both grips and lets go.


@pytest.mark.parametrize("action,message", [
    (np.zeros(3), "shape"),
    (np.zeros((1, 4)), "shape"),
    (np.array([0.0, np.nan, 0.0, 1.0]), "non-finite"),
])
def test_bad_action_raises(env, action, message):
  env.reset(seed=0)
  with pytest.raises(ValueError, match=message):
    env.step(action)


def test_render_and_render_obs_agree(env):
  obs, _ = env.reset(seed=4)
  for action in _random_actions(4, 15):
    obs, *_ = env.step(action)
  qpos = env.data.qpos.copy()
  live, posed = env.render(), env.render_obs(obs)
  assert live.dtype == posed.dtype == np.uint8
  assert live.shape == posed.shape == (128, 128, 3)
  assert np.abs(live.astype(int) - posed.astype(int)).mean() < 2.0
  np.testing.assert_array_equal(env.data.qpos, qpos)  # the live scene is untouched.
  moved = obs.copy()
  moved[TASK.obs_layout["cloth_verts"]] += np.tile([0.08, 0.0, 0.0], 64).astype(np.float32)
  assert np.abs(env.render_obs(moved).astype(int) - posed.astype(int)).mean() > 2.0


@pytest.mark.parametrize("obs,message", [
    (np.zeros(195), "shape"),
    (np.full(196, np.nan), "non-finite"),
])
def test_render_obs_bad_obs_raises(env, obs, message):
  with pytest.raises(ValueError, match=message):
    env.render_obs(obs)


def test_a_resting_cloth_that_nothing_holds_stays_still_in_the_simulator(env):
  """`stays_still` is the simulator's physics: where it says so, the cloth does not move."""
  obs, _ = env.reset(seed=3)
  away = np.array([0.3, -0.2, 0.5, -1.0], np.float32)  # open gripper, moving: it is visual-only
  previous = obs
  for t in range(12):
    nxt, *_ = env.step(away)
    if t >= 2:  # the cloth settles over the first steps after a reset
      assert cloth_fold.stays_still(jnp.asarray(previous), jnp.asarray(obs), jnp.asarray(away))
      np.testing.assert_allclose(cloth_fold.vertices(nxt), cloth_fold.vertices(obs), atol=1e-4)
    previous, obs = obs, nxt


def test_set_vertex_velocities_moves_the_cloth_as_set(env):
  """A resting cloth set to rest steps as before; set moving upwards, it rises."""
  away = np.array([0.3, -0.2, 0.5, -1.0], np.float32)

  def settled():
    env.reset(seed=3)
    for _ in range(5):
      env.step(away)

  settled()
  plain = env.step(away)[0]
  settled()
  env.set_vertex_velocities(np.zeros((cloth_fold.N_VERTS, 3)))
  np.testing.assert_allclose(env.step(away)[0], plain, atol=1e-6)
  settled()
  env.set_vertex_velocities(np.tile([0.0, 0.0, 0.5], (cloth_fold.N_VERTS, 1)))  # m/s
  thrown = env.step(away)[0]
  assert (cloth_fold.vertices(thrown)[:, 2].mean() >
          cloth_fold.vertices(plain)[:, 2].mean() + 0.005)


def test_a_cloth_that_moved_or_is_held_is_not_still():
  obs = jnp.asarray(envs.make("cloth_fold").reset(seed=0)[0])
  open_away = jnp.array([0.0, 0.0, 1.0, -1.0])
  assert cloth_fold.stays_still(obs, obs, open_away)
  moved = obs.at[TASK.obs_layout["cloth_verts"]].add(0.001)  # 1 mm since the last step
  assert not cloth_fold.stays_still(moved, obs, open_away)
  corner = cloth_fold.vertices(obs)[cloth_fold.CORNER_A]
  over_corner = obs.at[TASK.obs_layout["gripper_pos"]].set(corner + jnp.array([0, 0, 0.01]))
  close = jnp.array([0.0, 0.0, 0.0, 1.0])  # closing 1 cm above corner A pinches it
  assert not cloth_fold.stays_still(over_corner, over_corner, close)
  assert cloth_fold.stays_still(over_corner, over_corner, open_away)


def test_a_mirrored_episode_is_one_the_simulator_records(env):
  """The mirror (world x <-> y, grid axes swapped) maps the simulator's episodes onto its own:
  replaying the mirrored actions from the mirrored start gives the mirrored observations,
  exactly until the fold lays the cloth on itself (contact order then differs by float
  round-off), and the same outcome."""
  obs, sim_success, actions = _run_expert(env, seed=1, prefix=5)
  mirror = envs.make("cloth_fold")
  mirror.reset(seed=0)
  replay = [mirror.place(obs[0][cloth_fold.MIRROR_OBS_INDEX])]
  replay += [mirror.step(a[cloth_fold.MIRROR_ACTION_INDEX])[0] for a in actions]
  mirror.close()
  error = np.abs(np.stack(replay) - obs[:, cloth_fold.MIRROR_OBS_INDEX]).max(-1)  # [T + 1] m
  assert sim_success[-1]
  assert error[:40].max() < 1e-6, error[:40].max()
  assert error.max() < 2e-3, error.max()
  assert TASK.success(jnp.asarray(replay[-1]))
  np.testing.assert_array_equal(cloth_fold.MIRROR_OBS_INDEX[cloth_fold.MIRROR_OBS_INDEX],
                                np.arange(TASK.obs_dim))  # mirroring twice is the identity


def test_place_refuses_a_closed_gripper(env):
  obs = env.reset(seed=0)[0].copy()
  obs[3] = 1.0
  with pytest.raises(ValueError, match="gripper_closed"):
    env.place(obs)
