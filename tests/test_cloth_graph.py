"""The cloth world model's grid network: neighbours, the held vertex, translation invariance."""
import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import cloth_fold as cloth_config
from hiwm_jax import envs, world_model
from hiwm_jax.envs import cloth_fold
from hiwm_jax.world_model import cloth_graph

N = cloth_fold.N_SIDE


def test_neighbours_are_the_grid_offsets_and_zero_past_the_border():
  x = jnp.arange(N * N, dtype=jnp.float32)[:, None] + 1.0  # vertex id + 1 (0 marks "none")
  got = np.asarray(cloth_graph.neighbours(x))[..., 0]  # [V, K]
  for v in range(N * N):
    ix, iy = divmod(v, N)
    for k, (dx, dy) in enumerate(cloth_graph._OFFSETS):
      inside = 0 <= ix + dx < N and 0 <= iy + dy < N
      assert got[v, k] == ((ix + dx) * N + iy + dy + 1 if inside else 0)
      assert cloth_graph.NEIGHBOUR_MASK[v, k] == inside


def _obs(gripper, closed, verts):
  return jnp.concatenate([jnp.asarray(gripper), jnp.array([closed]), jnp.asarray(verts).ravel()])


def test_held_vertex_follows_the_simulators_pinch_rule():
  verts = np.stack(np.meshgrid(np.arange(N), np.arange(N), indexing="ij"), -1).reshape(-1, 2)
  verts = np.concatenate([verts * cloth_fold.SPACING, np.full((N * N, 1), 0.01)], -1)
  corner = verts[0]
  still_close = jnp.array([0.0, 0.0, 0.0, 1.0])
  # Closing 1 cm above corner A pinches it; closing far from the cloth pinches nothing.
  held = cloth_fold.held_vertex(_obs(corner + [0, 0, 0.01], 0.0, verts), still_close)
  np.testing.assert_array_equal(held, np.eye(N * N)[0])
  far = cloth_fold.held_vertex(_obs(corner + [0, 0, 0.2], 0.0, verts), still_close)
  np.testing.assert_array_equal(far, np.zeros(N * N))
  # Closed with the vertex at its centre: still held; opening lets go.
  np.testing.assert_array_equal(
      cloth_fold.held_vertex(_obs(verts[9] + [0, 0, 0.007], 1.0, verts), still_close),
      np.eye(N * N)[9])
  opened = cloth_fold.held_vertex(_obs(verts[9], 1.0, verts), jnp.array([0.0, 0.0, 0.0, -1.0]))
  np.testing.assert_array_equal(opened, np.zeros(N * N))


def test_cloth_world_model_is_translation_invariant_in_the_plane():
  """Shifting cloth and gripper sideways shifts the prediction and changes nothing else: the
  network sees only relative geometry (an MLP over absolute positions cannot promise this)."""
  task = envs.task_fns("cloth_fold")
  env = envs.make("cloth_fold")
  obs, _ = env.reset(seed=3)
  env.close()
  config = cloth_config.get_config("smoke,graph").world_model
  assert config.network == "cloth_graph"
  stats = {"mean": np.zeros(task.obs_dim, np.float32), "std": np.ones(task.obs_dim, np.float32)}
  predicted = world_model.core.obs_structure(task).predicted
  wm = world_model.make(config, task, stats, np.full(predicted.shape, 0.01, np.float32))
  params = world_model.init_params(wm, jax.random.PRNGKey(0))
  leaves, tree = jax.tree.flatten(params)  # untrained heads are zero: perturb every weight
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys)])
  shift = np.zeros(task.obs_dim, np.float32)
  shift[0:2] = [0.02, -0.01]
  shift[4:].reshape(-1, 3)[:, :2] = [0.02, -0.01]
  action = jnp.array([0.5, -0.3, -0.8, 1.0])
  step = jax.jit(lambda history: wm.observe(params, wm.step(params, wm.init(params, history),
                                                            action)))
  moved = np.asarray(step(wm.initial_history(obs + shift)))
  base = np.asarray(step(wm.initial_history(obs)))
  assert np.abs(base - obs).max() > 1e-4, "the perturbed network must move the cloth"
  np.testing.assert_allclose(moved - shift, base, atol=2e-5)
