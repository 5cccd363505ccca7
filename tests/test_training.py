"""The shared training machinery: optimizer from config, the loop, resuming, checkpoints."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hiwm_jax import checkpoint, training


def _optim_config(**overrides):
  config = ml_collections.ConfigDict(dict(lr=0.05, warmup_steps=2, steps=200, weight_decay=0.0,
                                          clip_norm=10.0, freeze=(), ema_decay=0.9))
  config.update(overrides)
  return config


def _regression():
  """y = x @ w_true + b_true: a real loss the loop must drive down."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
  params = {"dense": {"kernel": jnp.zeros((3, 1)), "bias": jnp.zeros((1,))}}

  def loss(p, batch, rng):
    del rng
    err = batch["x"] @ p["dense"]["kernel"] + p["dense"]["bias"] - batch["y"]
    return jnp.mean(err ** 2), {"mse": jnp.mean(err ** 2)}

  return params, loss, {"x": x, "y": y}


def test_fit_lowers_loss_logs_and_checkpoints(tmp_path):
  params, loss, batch = _regression()
  config = _optim_config()
  tx = training.make_optimizer(config, params)
  state = training.init_state(params, tx)
  step = training.make_train_step(loss, tx, config.ema_decay)
  initial = float(loss(params, batch, None)[0])
  state = training.fit(state, step, lambda i: batch, steps=200, rng=jax.random.PRNGKey(0),
                       workdir=str(tmp_path), log_every=50, checkpoint_every=100,
                       metadata={"note": "x"})
  assert float(loss(state.params, batch, None)[0]) < 0.01 * initial
  lines = [json.loads(l) for l in open(tmp_path / training.METRICS_FILE)]
  assert [l["step"] for l in lines] == [50, 100, 150, 200]
  assert lines[-1]["loss"] < lines[0]["loss"] and "grad_norm" in lines[0]
  assert os.listdir(tmp_path / "tensorboard")
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.steps() == [100, 200]
  restored, metadata = ckpt.restore(state)
  chex.assert_trees_all_equal(restored, state)
  assert metadata["note"] == "x" and metadata["metrics"]["loss"] == pytest.approx(lines[-1]["loss"])


def test_fit_resumes_from_latest_checkpoint(tmp_path):
  params, loss, batch = _regression()
  config = _optim_config()
  tx = training.make_optimizer(config, params)
  step = training.make_train_step(loss, tx, config.ema_decay)
  run = lambda steps: training.fit(training.init_state(params, tx), step, lambda i: batch,
                                   steps=steps, rng=jax.random.PRNGKey(0), workdir=str(tmp_path),
                                   log_every=10, checkpoint_every=10)
  straight = training.fit(training.init_state(params, tx), step, lambda i: batch, steps=40,
                          rng=jax.random.PRNGKey(0), workdir=str(tmp_path / "straight"),
                          log_every=10, checkpoint_every=10)
  run(20)
  resumed = run(40)  # starts from step 20's checkpoint
  assert int(resumed.step) == 40
  chex.assert_trees_all_close(resumed.params, straight.params, rtol=1e-6)


def test_logged_metrics_are_means_over_the_log_window(tmp_path):
  params, loss, batch = _regression()
  tx = training.make_optimizer(_optim_config(lr=0.0), params)  # params stay put
  scales = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # batch i's targets scaled: a known loss per step
  batches = [dict(batch, y=batch["y"] * s) for s in scales]
  training.fit(training.init_state(params, tx), training.make_train_step(loss, tx, 0.9),
               lambda i: batches[i], steps=6, rng=jax.random.PRNGKey(0), workdir=str(tmp_path),
               log_every=4)
  per_step = [float(loss(params, b, None)[0]) for b in batches]
  lines = [json.loads(l) for l in open(tmp_path / training.METRICS_FILE)]
  assert [l["step"] for l in lines] == [4, 6]
  np.testing.assert_allclose([l["loss"] for l in lines],
                             [np.mean(per_step[:4]), np.mean(per_step[4:])], rtol=1e-5)


def test_non_finite_loss_fails_fast_naming_the_step(tmp_path):
  params, loss, batch = _regression()
  batch = dict(batch, x=np.full_like(batch["x"], np.nan))
  tx = training.make_optimizer(_optim_config(), params)
  step = training.make_train_step(loss, tx, 0.9)
  with pytest.raises(FloatingPointError, match="non-finite loss .* at step 5"):
    training.fit(training.init_state(params, tx), step, lambda i: batch, steps=20,
                 rng=jax.random.PRNGKey(0), workdir=str(tmp_path), log_every=5)
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [], "nothing non-finite is saved"


def test_freeze_keeps_subtree_fixed():
  params, loss, batch = _regression()
  params["dense"]["bias"] = jnp.ones((1,))
  tx = training.make_optimizer(_optim_config(freeze=("dense/bias",)), params)
  state = training.init_state(params, tx)
  step = training.make_train_step(loss, tx, 0.9)
  for _ in range(5):
    state, _ = step(state, batch, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(state.params["dense"]["bias"], np.ones(1))
  assert not np.allclose(state.params["dense"]["kernel"], 0)
  with pytest.raises(ValueError, match="match no parameter; paths look like"):
    training.make_optimizer(_optim_config(freeze=("encoder/.*",)), params)


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoints in"):
    checkpoint.Checkpointer(str(tmp_path / "nothing"), create=False)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, {"w": jnp.ones(3)}, {"a": 1})
  ckpt.wait()
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at step 7"):
    ckpt.restore(step=7)
  for root, _, files in os.walk(tmp_path / "checkpoints" / "1" / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match="may be corrupt"):
    checkpoint.Checkpointer(str(tmp_path)).restore(step=1)
  with pytest.raises(checkpoint.CheckpointError, match="cannot read the run's config"):
    checkpoint.load_config(str(tmp_path))
