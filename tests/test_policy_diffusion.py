"""The diffusion policy: it memorizes, samples in the action box, is pure, and checks inputs."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hiwm_jax.policies import diffusion

OBS_DIM, ACTION_DIM, HISTORY, CHUNK = 3, 2, 2, 8


def _config(**overrides):
  """A tiny network: the tests are about behaviour, not capacity."""
  config = ml_collections.ConfigDict(dict(history=HISTORY, chunk=CHUNK, execute=4,
                                          diffusion=diffusion.default_config()))
  config.diffusion.update(dict(down_dims=(16, 32), kernel_size=3, num_groups=4,
                               timestep_embed_dim=16), **overrides)
  return config


def _memory():
  """Four observation histories [4, h, D] and the distinct chunks [4, H, A] they map to."""
  rng = np.random.default_rng(0)
  obs = (rng.normal(size=(4, HISTORY, OBS_DIM)) * 2 + 1).astype(np.float32)
  t = np.linspace(0, 1, CHUNK)
  chunks = np.stack([np.stack([0.8 * np.sin(2 * np.pi * (t + i / 4)),
                               0.8 * np.cos(np.pi * t * (i + 1))], -1) for i in range(4)])
  return obs, chunks.astype(np.float32)


def _stats(obs):
  flat = obs.reshape(-1, OBS_DIM)
  return {"mean": flat.mean(0), "std": flat.std(0)}


def _batch(obs, actions, mask=None, weight=None):
  batch = {"observation": obs, "action": actions,
           "action_mask": np.ones(actions.shape[:2], bool) if mask is None else mask}
  if weight is not None:
    batch["weight"] = np.asarray(weight, np.float32)
  return batch


@pytest.fixture(scope="module")
def policy_and_params():
  obs, chunks = _memory()
  policy = diffusion.make(_config(), OBS_DIM, ACTION_DIM, _stats(obs))
  return policy, policy.init(jax.random.PRNGKey(0), _batch(obs, chunks))


def test_overfits_a_few_chunks_and_samples_them_back():
  obs, chunks = _memory()
  policy = diffusion.make(_config(), OBS_DIM, ACTION_DIM, _stats(obs))
  batch = _batch(np.repeat(obs, 32, 0), np.repeat(chunks, 32, 0))  # [128, ...]
  params = policy.init(jax.random.PRNGKey(0), batch)
  steps = 600
  tx = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05))

  @jax.jit
  def train_step(params, opt_state, i):
    grads, _ = jax.grad(policy.loss, has_aux=True)(params, batch, jax.random.PRNGKey(i))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  keys = jax.random.split(jax.random.PRNGKey(123), 16)
  mean_loss = jax.jit(lambda p: jnp.mean(jax.vmap(lambda k: policy.loss(p, batch, k)[0])(keys)))
  initial = float(mean_loss(params))
  opt_state = tx.init(params)
  for i in range(steps):
    params, opt_state = train_step(params, opt_state, i)
  final = float(mean_loss(params))
  assert final < 0.05 * initial, (initial, final)

  samples = 16  # per observation; a barely trained sampler has rare outliers, so no max bound
  act = jax.jit(jax.vmap(policy.act, in_axes=(None, 0, 0)))
  keys = jax.random.split(jax.random.PRNGKey(7), 4 * samples)
  out = act(params, np.repeat(obs, samples, 0), keys)
  out = np.asarray(out).reshape(4, samples, CHUNK, ACTION_DIM)
  err = np.abs(out - chunks[:, None]).max((-1, -2))  # [4, samples] worst step of each sample
  assert np.median(err) < 0.1 and np.mean(err < 0.3) >= 0.9, np.sort(err.ravel())
  dist = np.abs(out[:, :, None] - chunks[None, None]).mean((-1, -2))  # [4, samples, 4]
  np.testing.assert_array_equal(dist.argmin(-1), np.arange(4)[:, None].repeat(samples, 1))


def test_act_shape_range_and_vmap_equals_single_calls(policy_and_params):
  policy, params = policy_and_params
  obs, _ = _memory()
  keys = jax.random.split(jax.random.PRNGKey(1), 4)
  act = jax.jit(policy.act)
  single = np.stack([act(params, obs[i], keys[i]) for i in range(4)])
  assert single.shape == (4, CHUNK, ACTION_DIM)
  assert np.all(np.abs(single) <= 1.0)
  branched = jax.jit(jax.vmap(policy.act, in_axes=(None, 0, 0)))(params, obs, keys)
  np.testing.assert_allclose(branched, single, atol=1e-5)
  same_obs = jax.jit(jax.vmap(policy.act, in_axes=(None, None, 0)))(params, obs[0], keys)
  np.testing.assert_allclose(same_obs[0], single[0], atol=1e-5)


def test_a_key_fixes_the_actions_and_other_keys_change_them(policy_and_params):
  policy, params = policy_and_params
  obs = _memory()[0][0]
  act = jax.jit(policy.act)
  a, b = act(params, obs, jax.random.PRNGKey(3)), act(params, obs, jax.random.PRNGKey(3))
  np.testing.assert_array_equal(a, b)
  c = act(params, obs, jax.random.PRNGKey(4))
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3
  again = policy.init(jax.random.PRNGKey(0), _batch(*_memory()))
  chex.assert_trees_all_equal(again, params)


def test_act_compiles_once(policy_and_params):
  policy, params = policy_and_params
  obs = _memory()[0]

  @jax.jit
  @chex.assert_max_traces(n=1)
  def act(params, obs_history, rng):
    return policy.act(params, obs_history, rng)

  for i in range(3):
    act(params, obs[i], jax.random.PRNGKey(i)).block_until_ready()


def test_wrong_shapes_name_the_expected_ones(policy_and_params):
  policy, params = policy_and_params
  with pytest.raises(ValueError, match=r"expected \(2, 3\) = \(history, obs_dim\)"):
    policy.act(params, np.zeros((2, 4), np.float32), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
    jax.jit(policy.act)(params, np.zeros((3,), np.float32), jax.random.PRNGKey(0))
  obs, chunks = _memory()
  with pytest.raises(ValueError, match=r"\[B, 8, 2\] = .*\[B, chunk, action_dim\]"):
    policy.loss(params, _batch(obs, chunks[:, :4]), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"\[B, 2, 3\]"):
    policy.init(jax.random.PRNGKey(0), _batch(obs[:, :, :2], chunks))


def test_bad_configs_are_refused():
  stats = _stats(_memory()[0])
  with pytest.raises(ValueError, match="num_inference_steps must be in"):
    diffusion.make(_config(num_inference_steps=20), OBS_DIM, ACTION_DIM, stats)
  config = _config()
  config.chunk = 7
  with pytest.raises(ValueError, match="chunk=7 must be divisible by 2"):
    diffusion.make(config, OBS_DIM, ACTION_DIM, stats)
  with pytest.raises(ValueError, match="num_groups=5 must divide"):
    diffusion.make(_config(num_groups=5), OBS_DIM, ACTION_DIM, stats)
  with pytest.raises(ValueError, match="unknown beta_schedule"):
    diffusion.make(_config(beta_schedule="cosine"), OBS_DIM, ACTION_DIM, stats)
  with pytest.raises(ValueError, match=r"obs_stats mean/std must have shape \(3,\)"):
    diffusion.make(_config(), OBS_DIM, ACTION_DIM, {"mean": np.zeros(2), "std": np.ones(2)})


def test_loss_is_the_masked_weighted_mean_of_step_errors(policy_and_params):
  """The network sees the whole chunk (padding is the repeated last action), but only real
  steps' errors count: with one key, the loss is a mask- and weight-weighted mean of per-step
  errors, each read off with a one-hot mask."""
  policy, params = policy_and_params
  obs, chunks = _memory()
  rng = jax.random.PRNGKey(5)
  loss = jax.jit(lambda mask, weight: policy.loss(
      params, dict(_batch(obs, chunks, mask), weight=weight), rng))
  ones = np.ones(4, np.float32)
  one_hot = np.eye(4 * CHUNK, dtype=bool).reshape(-1, 4, CHUNK)
  errors = np.array([float(loss(m, ones)[0]) for m in one_hot]).reshape(4, CHUNK)
  mask = np.ones((4, CHUNK), bool)
  mask[1, 5:] = mask[3, 2:] = False
  value, metrics = loss(mask, ones)
  assert float(value) == pytest.approx(errors[mask].mean(), rel=1e-5)
  assert float(metrics["loss"]) == float(value)
  weight = np.array([3.0, 1.0, 0.5, 0.0], np.float32)
  w = mask * weight[:, None]
  assert float(loss(mask, weight)[0]) == pytest.approx((errors * w).sum() / w.sum(), rel=1e-5)
  assert float(loss(mask, 2 * ones)[0]) == pytest.approx(float(value), rel=1e-6)
  unweighted = policy.loss(params, _batch(obs, chunks, mask), rng)[0]
  assert float(unweighted) == pytest.approx(float(value), rel=1e-6)


def test_noise_schedule_and_ddim_steps():
  config = diffusion.default_config()
  abar = diffusion.alphas_cumprod(config)
  assert abar.shape == (100,) and np.all(np.diff(abar) < 0) and 0 < abar[-1] < abar[0] < 1
  t, prev = diffusion.ddim_timesteps(config)
  np.testing.assert_array_equal(t, np.arange(90, -1, -10))
  np.testing.assert_array_equal(prev, np.append(np.arange(80, -1, -10), -1))
  config.timestep_spacing = "trailing"
  t, _ = diffusion.ddim_timesteps(config)
  np.testing.assert_array_equal(t, np.arange(99, 0, -10))


@pytest.mark.parametrize("length,kernel,stride", [(4, 5, 1), (2, 5, 1), (3, 5, 2), (16, 5, 1),
                                                  (8, 3, 2)])
def test_conv_matches_xla_convolution(length, kernel, stride):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, length, 6))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, 6, 5))
  want = jax.lax.conv_general_dilated(x, w, (stride,), [((kernel - 1) // 2, kernel // 2)],
                                      dimension_numbers=("NWC", "WIO", "NWC"))
  np.testing.assert_allclose(diffusion._conv1d(x, w, stride), want, atol=1e-4)
