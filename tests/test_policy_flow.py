"""The flow-matching backbone: it memorizes chunks, samples deterministically, vmaps, jits once."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hiwm_jax import policies
from hiwm_jax.policies import flow

OBS_DIM, ACTION_DIM, HISTORY, CHUNK, NUM_CHUNKS = 5, 3, 2, 8, 4
STATS = {"mean": np.full(OBS_DIM, 1.0, np.float32), "std": np.full(OBS_DIM, 2.0, np.float32),
         "min": np.full(OBS_DIM, -5.0, np.float32), "max": np.full(OBS_DIM, 7.0, np.float32)}


def _config(**flow_overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(history=HISTORY, chunk=CHUNK, execute=4,
                                          flow=flow.default_config()))
  config.flow.update(dict(width=32, depth=2, heads=2, mlp_ratio=2), **flow_overrides)
  return config


def _chunks():
  """NUM_CHUNKS distinct raw observation histories and smooth action chunks in [-0.8, 0.8]."""
  rng = np.random.default_rng(0)
  obs = rng.normal(1.0, 2.0, size=(NUM_CHUNKS, HISTORY, OBS_DIM)).astype(np.float32)
  phase = np.linspace(0, 1, CHUNK)[None, :, None] + rng.uniform(size=(NUM_CHUNKS, 1, ACTION_DIM))
  return obs, (0.8 * np.sin(2 * np.pi * phase)).astype(np.float32)  # [N, h, D], [N, H, A]


def _batch(obs, actions, repeat=1, mask=None, weight=None):
  batch = {"observation": np.tile(obs, (repeat, 1, 1)), "action": np.tile(actions, (repeat, 1, 1)),
           "action_mask": np.ones((len(obs) * repeat, CHUNK), bool) if mask is None else mask}
  if weight is not None:
    batch["weight"] = weight
  return batch


@pytest.fixture(scope="module")
def trained():
  """A tiny policy overfit to the fixed chunks; (policy, params, obs, actions, losses)."""
  policy = flow.make(_config(), OBS_DIM, ACTION_DIM, STATS)
  obs, actions = _chunks()
  batch, eval_batch = _batch(obs, actions, repeat=16), _batch(obs, actions, repeat=64)
  params = jax.jit(policy.init)(jax.random.PRNGKey(0), _batch(obs, actions))  # faster than eager
  steps = 400
  tx = optax.adam(optax.cosine_decay_schedule(5e-3, steps, alpha=0.05))

  def train_step(carry, rng):
    params, opt_state = carry
    grads, _ = jax.grad(policy.loss, has_aux=True)(params, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  @jax.jit
  def fit(params):  # one program: no per-step dispatch
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    return jax.lax.scan(train_step, (params, tx.init(params)), keys)[0][0]

  evaluate = jax.jit(lambda p: policy.loss(p, eval_batch, jax.random.PRNGKey(99))[0])
  initial = float(evaluate(params))
  params = fit(params)
  return policy, params, obs, actions, (initial, float(evaluate(params)))


def test_overfits_fixed_chunks_and_samples_them_back(trained):
  policy, params, obs, actions, (initial, final) = trained
  assert final < 0.05 * initial, (initial, final)
  keys = jax.random.split(jax.random.PRNGKey(5), NUM_CHUNKS)
  sampled = jax.jit(jax.vmap(policy.act, in_axes=(None, 0, 0)))(params, obs, keys)  # [N, H, A]
  errors = np.abs(np.asarray(sampled) - actions)
  assert errors.mean() < 0.05 and errors.max() < 0.2, (errors.mean(), errors.max())
  distance = np.abs(np.asarray(sampled)[:, None] - actions[None]).mean(axis=(2, 3))  # [N, N]
  np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(NUM_CHUNKS))


def test_act_shape_range_and_vmap_matches_single_calls(trained):
  policy, params, obs, _, _ = trained
  act = jax.jit(policy.act)
  far_obs = obs[0] * 50  # far outside the data: raw velocities leave the box, clipping holds
  keys = jax.random.split(jax.random.PRNGKey(1), 6)
  single = np.stack([act(params, far_obs, k) for k in keys])
  assert single.shape == (6, CHUNK, ACTION_DIM) and np.all(np.abs(single) <= 1)
  over_keys = jax.jit(jax.vmap(policy.act, in_axes=(None, None, 0)))(params, far_obs, keys)
  np.testing.assert_allclose(over_keys, single, atol=1e-5)
  histories = np.stack([obs[i % NUM_CHUNKS] for i in range(6)])  # [K, h, D]
  over_both = jax.jit(jax.vmap(policy.act, in_axes=(None, 0, 0)))(params, histories, keys)
  np.testing.assert_allclose(over_both, [act(params, o, k) for o, k in zip(histories, keys)],
                             atol=1e-5)


def test_same_key_same_actions_other_key_other_actions(trained):
  policy, params, obs, _, _ = trained
  init = jax.jit(policy.init)
  fresh = init(jax.random.PRNGKey(3), _batch(*_chunks()))
  chex.assert_trees_all_equal(fresh, init(jax.random.PRNGKey(3), _batch(*_chunks())))
  act, key = jax.jit(policy.act), jax.random.PRNGKey(7)
  for p in (fresh, params):
    np.testing.assert_array_equal(act(p, obs[0], key), act(p, obs[0], key))
    assert not np.allclose(act(p, obs[0], key), act(p, obs[0], jax.random.PRNGKey(8)))
  loss, batch = jax.jit(policy.loss), _batch(*_chunks())
  chex.assert_trees_all_equal(loss(params, batch, key), loss(params, batch, key))


def test_wrong_observation_shape_names_the_expected_one(trained):
  policy, params, obs, _, _ = trained
  with pytest.raises(ValueError, match=r"expected \(2, 5\) = \(history, obs_dim\)"):
    policy.act(params, np.zeros((HISTORY, OBS_DIM + 1), np.float32), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"expected \(2, 5\)"):
    jax.jit(policy.act)(params, obs, jax.random.PRNGKey(0))  # a batch of histories


def test_jitted_act_compiles_once(trained):
  policy, params, obs, _, _ = trained
  act = jax.jit(chex.assert_max_traces(policy.act, n=1))
  for i in range(4):
    act(params, obs[i], jax.random.PRNGKey(i)).block_until_ready()
  act(params, jnp.asarray(obs[0]) + 1.0, jax.random.PRNGKey(9)).block_until_ready()


def test_loss_honours_action_mask_and_weight(trained):
  """With one rng, every loss is the mask- and weight-weighted mean of the same per-step errors,
  which one-hot masks read off one at a time."""
  policy, params, _, _, _ = trained
  obs, actions = _chunks()
  key = jax.random.PRNGKey(11)
  full_loss = jax.jit(lambda batch: policy.loss(params, batch, key))
  loss = lambda batch: full_loss(batch)[0]
  per_step = np.zeros((NUM_CHUNKS, CHUNK))
  for i in range(NUM_CHUNKS):
    for j in range(CHUNK):
      one_hot = np.zeros((NUM_CHUNKS, CHUNK), bool)
      one_hot[i, j] = True
      per_step[i, j] = loss(_batch(obs, actions, mask=one_hot))
  mask = np.arange(CHUNK)[None] < np.array([[8], [5], [1], [3]])  # padded chunk ends
  weight = np.array([1.0, 4.0, 0.0, 2.0], np.float32)
  expected = (per_step * mask * weight[:, None]).sum() / (mask * weight[:, None]).sum()
  np.testing.assert_allclose(loss(_batch(obs, actions, mask=mask, weight=weight)), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(loss(_batch(obs, actions, mask=mask)), per_step[mask].mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(loss(_batch(obs, actions)), per_step.mean(), rtol=1e-5)
  unweighted = full_loss(_batch(obs, actions))
  assert set(unweighted[1]) >= {"loss"} and unweighted[1]["loss"] == unweighted[0]


def test_time_sampling_follows_the_config():
  key = jax.random.PRNGKey(0)
  beta = np.asarray(flow.sample_time(key, 20_000, flow.default_config()))
  assert 0 <= beta.min() and beta.max() < 0.999
  assert abs(beta.mean() - 0.999 * 0.4) < 0.01, "1 - Beta(1.5, 1): favours noisy (small) t"
  uniform = np.asarray(flow.sample_time(key, 20_000, _config(time_sampling="uniform").flow))
  assert abs(uniform.mean() - 0.5) < 0.01


def test_registry_builds_flow_with_default_sizes():
  config = policies.default_config()
  config.backbone = "flow"
  policy = policies.make(config, OBS_DIM, ACTION_DIM, STATS)
  assert (policy.name, policy.history, policy.chunk, policy.execute) == ("flow", 2, 16, 8)
  shapes = jax.eval_shape(policy.init, jax.random.PRNGKey(0),
                          _batch(np.zeros((1, 2, OBS_DIM)), np.zeros((1, 16, ACTION_DIM))))
  assert set(shapes["params"]) == {"obs_encoder", "action_expert"}  # freezable by path
  assert shapes["params"]["action_expert"]["head"]["kernel"].shape == (128, ACTION_DIM)


@pytest.mark.parametrize("overrides, message", [
    (dict(num_inference_steps=11), r"num_inference_steps must be in \[1, 10\]; got 11"),
    (dict(num_inference_steps=0), r"num_inference_steps must be in \[1, 10\]; got 0"),
    (dict(heads=3), r"heads=3 and 2 must divide flow.width=32"),
    (dict(time_sampling="logit_normal"), r"unknown flow.time_sampling 'logit_normal'"),
    (dict(time_beta_a=0.0), r"time_beta_a must be > 0 and flow.time_max in \(0, 1\]; got 0.0"),
])
def test_bad_config_is_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    flow.make(_config(**overrides), OBS_DIM, ACTION_DIM, STATS)


def test_bad_obs_stats_are_refused():
  with pytest.raises(ValueError, match=r"must have shape \(5,\); got \(4,\)"):
    flow.make(_config(), OBS_DIM, ACTION_DIM, {"mean": np.zeros(4), "std": np.ones(4)})


def test_loss_refuses_a_batch_of_other_shapes(trained):
  policy, params, obs, actions, _ = trained
  with pytest.raises(AssertionError, match=r"\(None, 8, 3\)"):
    policy.loss(params, _batch(obs, actions[:, :4], mask=np.ones((4, 4), bool)),
                jax.random.PRNGKey(0))
