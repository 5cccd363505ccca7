"""The cloth's written-out physics (world_model/cloth_physics.py) against the simulator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import envs
from hiwm_jax.envs import cloth_fold
from hiwm_jax.envs.episode import expert_controller
from hiwm_jax.world_model import cloth_physics

_step = jax.jit(cloth_physics.next_observation)


@pytest.fixture(scope="module")
def carry():
  """Observations [T+1, D], actions [T, A] and the simulator's pinch [T] of an expert grasp
  and carry of corner A, then random moves with the grip held (the cloth dragged about)."""
  task = envs.task_fns("cloth_fold")
  env = envs.make("cloth_fold")
  obs, _ = env.reset(seed=3)
  expert = expert_controller(task)
  rng = np.random.default_rng(0)
  observations, actions, pinched = [obs], [], []
  for t in range(70):
    action = (np.asarray(expert(obs, t, jax.random.PRNGKey(t))) if t < 50 else
              np.append(rng.uniform(-1, 1, 3), 1.0))
    obs = env.step(np.asarray(action, np.float32))[0]
    observations.append(obs), actions.append(action), pinched.append(env.pinched_vertex())
  env.close()
  return np.stack(observations), np.stack(actions).astype(np.float32), np.array(pinched)


def test_the_edges_are_the_simulators():
  model = cloth_fold.load_model()
  simulator = {tuple(sorted(map(int, e))) for e in model.flex_edge.reshape(-1, 2)}
  assert {tuple(sorted(e)) for e in cloth_physics.edges()} == simulator


def test_a_flat_cloth_at_rest_stays_put_and_an_unheld_one_is_left_to_the_network():
  obs, _ = envs.make("cloth_fold").reset(seed=0)
  obs = np.asarray(obs).copy()
  verts = obs[cloth_fold.OBS_LAYOUT["cloth_verts"]].reshape(-1, 3)
  verts[:, 2] = cloth_physics.Physics().rest_height  # on the table, as it settles
  obs[cloth_fold.OBS_LAYOUT["cloth_verts"]] = verts.ravel()
  nothing, move = jnp.zeros(cloth_fold.N_VERTS), jnp.array([0.5, 0.0, 0.0, -1.0])
  np.testing.assert_allclose(cloth_physics.next_vertices(obs, obs, move, nothing), verts,
                             atol=1e-6)
  lifted = obs.copy()
  lifted[cloth_fold.OBS_LAYOUT["cloth_verts"]] += np.tile([0.0, 0.0, 0.05], cloth_fold.N_VERTS)
  falls = cloth_physics.next_vertices(lifted, lifted, move, nothing)
  assert float(jnp.max(cloth_fold.vertices(lifted)[:, 2] - falls[:, 2])) > 5e-3  # gravity
  nxt = _step(lifted, lifted, move, nothing)  # nothing held: the cloth as it is
  np.testing.assert_array_equal(nxt[4:], lifted[4:])
  np.testing.assert_allclose(nxt[:3], obs[:3] + [0.5 * cloth_fold.MAX_STEP, 0, 0], atol=1e-7)


def test_the_physics_steps_the_simulators_carried_cloth_far_closer_than_standing_still(carry):
  """One step from the simulator's own states, with its own pinch: on the steps where the
  gripper holds the cloth and it moves (a carry), the physics lands within a third of the
  copy-last error, keeps the held vertex at the gripper, and keeps every edge near its
  length."""
  observations, actions, pinched = carry
  assert (pinched == cloth_fold.CORNER_A).sum() > 10
  pinch = np.zeros((len(actions), cloth_fold.N_VERTS), np.float32)
  pinch[pinched >= 0, pinched[pinched >= 0]] = 1.0
  prev = observations[np.maximum(np.arange(len(actions)) - 1, 0)]
  pred = np.asarray(jax.vmap(_step)(prev, observations[:-1], actions, pinch))
  real, last = observations[1:], observations[:-1]
  err = lambda a: np.linalg.norm(cloth_fold.vertices(a) - cloth_fold.vertices(real), axis=-1)
  moving = (err(last).mean(-1) > 2e-3) & (pinched >= 0)  # held, moving over 2 mm a vertex
  assert moving.sum() > 20
  assert err(pred).mean(-1)[moving].mean() < err(last).mean(-1)[moving].mean() / 3
  held = pinched >= 0
  verts = cloth_fold.vertices(pred)
  gap = np.linalg.norm(verts[held, pinched[held]] - pred[held, :3], axis=-1)
  assert gap.max() < cloth_fold.HOLD_RADIUS
  edges = np.array(cloth_physics.edges())
  rest = np.linalg.norm(cloth_fold.vertices(observations[0])[edges[:, 0]] -
                        cloth_fold.vertices(observations[0])[edges[:, 1]], axis=-1)
  length = np.linalg.norm(verts[:, edges[:, 0]] - verts[:, edges[:, 1]], axis=-1)
  assert np.abs(length / rest - 1).max() < 0.1


def test_batched_steps_equal_single_ones(carry):
  observations, actions, pinched = carry
  pinch = jnp.asarray(jax.nn.one_hot(np.maximum(pinched, 0), cloth_fold.N_VERTS)
                      * (pinched >= 0)[:, None])
  prev, obs = observations[10:16].reshape(2, 3, -1), observations[11:17].reshape(2, 3, -1)
  acts, held = actions[11:17].reshape(2, 3, -1), pinch[11:17].reshape(2, 3, -1)
  batched = np.asarray(_step(prev, obs, acts, held))
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(batched[i, j], _step(prev[i, j], obs[i, j], acts[i, j],
                                                      held[i, j]), atol=1e-6)
