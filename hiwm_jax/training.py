"""The training machinery every model shares: train state, optimizer from config, the loop.

A model brings a pure `loss(params, batch, rng) -> (scalar, metrics)` and a batch sampler; this
module jits one update step (with an EMA of the weights), runs it with a progress bar, logs to
TensorBoard and a JSON-lines file, checkpoints with orbax, and resumes from the latest
checkpoint in the work directory.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorboardX
import tqdm

from hiwm_jax import checkpoint

METRICS_FILE = "metrics.jsonl"


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar
  params: Any
  ema_params: Any  # what evaluation and deployment use
  opt_state: Any


def _path(key_path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)


def make_optimizer(config: ml_collections.ConfigDict, params: Any) -> optax.GradientTransformation:
  """AdamW with warmup + cosine decay and global-norm clipping; weight decay on kernels only.

  config: lr, warmup_steps, steps, weight_decay, clip_norm, freeze (regexes over parameter
  paths such as "params/obs_encoder/.*": those subtrees get zero updates, for post-training).
  """
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.lr, max(config.warmup_steps, 1), max(config.steps, config.warmup_steps + 1),
      end_value=config.lr * 0.1)
  decay_mask = jax.tree.map(lambda p: p.ndim > 1, params)
  tx = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                   optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask))
  if not config.freeze:
    return tx
  patterns = [re.compile(p) for p in config.freeze]
  labels = jax.tree_util.tree_map_with_path(
      lambda kp, _: "frozen" if any(p.fullmatch(_path(kp)) for p in patterns) else "train",
      params)
  if "frozen" not in jax.tree.leaves(labels):
    paths = [_path(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    raise ValueError(f"freeze patterns {list(config.freeze)} match no parameter; paths look "
                     f"like {paths[:4]}")
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def init_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
  """A fresh state; copies `params`, since the train step donates (frees) the state's buffers."""
  copy = lambda tree: jax.tree.map(jnp.array, tree)
  return TrainState(step=jnp.zeros((), jnp.int32), params=copy(params), ema_params=copy(params),
                    opt_state=tx.init(params))


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation, ema_decay: float):
  """A jitted `(state, batch, rng) -> (state, metrics)` that donates the old state."""

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = optax.incremental_update(params, state.ema_params, 1.0 - ema_decay)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads),
                   update_norm=optax.global_norm(updates))
    return TrainState(state.step + 1, params, ema, opt_state), metrics

  return jax.jit(train_step, donate_argnums=0)


class MetricLogger:
  """Scalars to TensorBoard event files and to `<workdir>/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self._writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._file = open(os.path.join(workdir, METRICS_FILE), "a")

  def write(self, step: int, metrics: dict) -> None:
    metrics = {k: float(v) for k, v in metrics.items()}
    for name, value in metrics.items():
      self._writer.add_scalar(name, value, step)
    self._file.write(json.dumps({"step": step, **metrics}) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._writer.close()
    self._file.close()


def fit(state: TrainState, train_step, sample_batch: Callable[[int], Any], *, steps: int,
        rng: jax.Array, workdir: str, log_every: int = 100, checkpoint_every: int = 1000,
        metadata: dict | None = None, desc: str = "train") -> TrainState:
  """Runs `train_step` until `state.step == steps`, resuming from the latest checkpoint.

  Logs each metric's mean over the steps since the last log, not one batch's value: the
  multi-step losses are heavy-tailed, and single batches spike tenfold. Fails fast on a
  non-finite loss, naming the step. Checkpoints carry `metadata` (e.g. normalization stats)
  and the latest logged metrics.
  """
  ckpt = checkpoint.Checkpointer(workdir)
  if ckpt.latest_step() is not None:
    state, _ = ckpt.restore(state)
  logger = MetricLogger(workdir)
  start, last = int(state.step), {}
  window, window_steps = None, 0  # metrics summed on device since the last log
  tic = time.perf_counter()
  with tqdm.tqdm(total=steps, initial=start, desc=desc, unit="step", leave=False) as bar:
    for step in range(start, steps):
      state, metrics = train_step(state, sample_batch(step), rng)
      window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
      window_steps += 1
      log = (step + 1) % log_every == 0 or step + 1 == steps
      save = (step + 1) % checkpoint_every == 0 or step + 1 == steps
      if log or save:  # never checkpoint a state whose loss went non-finite
        last = {k: v / window_steps for k, v in jax.device_get(window).items()}
        window, window_steps = None, 0
        if not np.isfinite(last["loss"]):
          raise FloatingPointError(f"non-finite loss {last['loss']} at step {step + 1} (its "
                                   f"mean since the last log) in {workdir}; lower the "
                                   "learning rate or check the data")
        last["steps_per_second"] = (step + 1 - start) / (time.perf_counter() - tic)
        logger.write(step + 1, last)
        bar.set_postfix(loss=f"{last['loss']:.4f}")
      if save:
        ckpt.save(step + 1, state, dict(metadata or {},
                                        metrics={k: float(v) for k, v in last.items()}))
      bar.update(1)
  ckpt.wait()
  ckpt.close()
  logger.close()
  return state
