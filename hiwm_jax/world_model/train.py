"""Training the world model on RLDS episodes, and loading one back for use.

A world-model work directory holds `config.json`, `checkpoints/<step>/` (train state + metadata:
normalization statistics, the typical step change `delta_std`, datasets used), TensorBoard
events, `metrics.jsonl`, and `risk_calibration.json` (the disagreement that reads as risk 1).
"""
from __future__ import annotations

import dataclasses
import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hiwm_jax import checkpoint, data, envs, training
from hiwm_jax.data import normalization
from hiwm_jax.world_model import core
from hiwm_jax.world_model.data import UnrollSampler, delta_std, load_split, mirrored

CALIBRATION_FILE = "risk_calibration.json"
RISK_PERCENTILE = 95.0  # one-step disagreement on training windows at this percentile = risk 1


def noised_dims(wm: core.WorldModel) -> np.ndarray:
  """Dims [N] that training noise moves: the predicted positions (metres) the actions do not
  set exactly."""
  s = wm.structure
  positions = np.concatenate([np.arange(sl.start, sl.stop) for _, sl in s.positions])
  return np.setdiff1d(np.intersect1d(positions, s.predicted), s.commanded_dims)


LOSS_UNITS = ("normalized", "task")


def check_loss_units(units: str) -> str:
  if units not in LOSS_UNITS:
    raise ValueError(f"world_model.loss_units must be one of {LOSS_UNITS}; got {units!r}")
  return units


def dim_weights(wm: core.WorldModel, units: str) -> tuple[np.ndarray, np.ndarray]:
  """Per predicted dim weights [P] of the multi-step and the one-step squared errors.

  "normalized": every dim alike in its own units (data std; typical-step change).
  "task": the position dims' errors in metres, as eval_wm judges them (a squared error per
  metre squared, scaled to mean 1 over those dims), the other dims as in "normalized". Per
  normalized unit a cloth vertex near the carried corner moves 9 cm but one on the table's
  hinge side 0.4 cm vertically: normalized units weigh a millimetre of the second 600 times
  the first, while eval_wm's mean vertex distance weighs them alike.
  """
  p = wm.structure.predicted
  ones = np.ones(p.size, np.float32)
  if check_loss_units(units) == "normalized":
    return ones, ones
  positions = np.isin(p, noised_dims(wm))  # predicted positions the actions do not set

  def in_metres(scale):  # squared error in scaled units -> metres^2, mean 1 over positions
    return np.where(positions, scale ** 2 / np.mean(scale[positions] ** 2), 1.0).astype(
        np.float32)

  std = wm.obs_stats["std"][p]
  return in_metres(std), in_metres(std * wm.delta_std)


def make_loss(wm: core.WorldModel, one_step_weight: float, input_noise: float = 0.0,
              recorded_latent: bool = False, loss_units: str = "normalized"):
  """`loss(params, batch, rng)` on a batch [E, B, ...] (one bootstrapped batch per member).

  `loss_units`: how the predicted dims' squared errors are weighed (`dim_weights`).

  `recorded_latent`: each unrolled step takes the hidden state the recording had after its
  action (the simulator's own pinch), not the one the model's predicted state implies. A
  grasp picks the vertex nearest the gripper, a choice a millimetre of error can flip; a
  window whose model picks another vertex than the recording carries a loss no network can
  lower, and fitting it anyway teaches the network to let a held vertex stray. At use the
  model still picks its own (the robot's grip is only known where it was recorded).

  `input_noise` > 0: each window starts from its history shifted by Gaussian noise of that
  std (metres; the same shift in every history frame, so velocities stay true) in the
  predicted positions, while the targets stay the recorded ones: the model learns to steer
  states a little off the data back onto it, instead of letting its own errors compound
  (Sanchez-Gonzalez et al. 2020 add such noise for the same reason).

  Each member unrolls its own predictions through the window's actions (`lax.scan`), so the
  loss sees how its errors compound; plus a one-step term in typical-step units.

  With a physics prior whose gradient is stopped (`physics_gradient` off) the unroll's states
  still come from the model, but each step's loss trains that step alone (the states are
  constants to the gradient: the "pushforward trick" of Brandstetter et al. 2022):
  gradients that pass a model's later steps as if its physics were the identity drove the
  cloth's training unstable (its 50-step loss rose 30-fold by step 1500). With
  `physics_gradient` the prior's surrogate carries it (core.prior_change), and the loss
  passes it through the whole unroll.
  """
  pred = wm.structure.predicted
  through_time = wm.structure.prior is None or wm.structure.prior_surrogate is not None

  noised = noised_dims(wm)
  multi_weight, one_weight = (jnp.asarray(w) for w in dim_weights(wm, loss_units))

  def loss(params, batch, rng):
    history = batch["history"]
    if input_noise > 0:
      shift = input_noise * jax.random.normal(rng, history.shape[:-2] + (1, noised.size))
      history = history.at[..., noised].add(shift.astype(history.dtype))
    hist = wm.normalize(history)  # [E, B, h, D]
    target = wm.normalize(batch["next_obs"])  # [E, B, K, D]
    mask = batch["mask"].astype(jnp.float32)  # [E, B, K]
    chex.assert_rank([hist, target, mask], [4, 4, 3])

    def body(carry, step):  # action [E, B, A], the recorded latent after it [E, B, C]
      h, latent, memory = carry
      action, recorded = step
      h = h if through_time else jax.lax.stop_gradient(h)
      latent = (recorded if recorded_latent else
                wm.next_latent(latent, wm.unnormalize(h[..., -1, :]), action))  # [E, B, C]
      out, memory = wm.apply_members(params, h, action, latent, memory=memory)  # [E, B, P]
      nxt = wm.advance(h, out, action, latent)  # [E, B, D]
      return ((jnp.concatenate([h[..., 1:, :], nxt[..., None, :]], axis=-2), latent, memory),
              (nxt, out))

    # Rematerialized: the backward pass recomputes each step rather than storing every
    # step's activations (the cloth graph's edge activations would not fit).
    memory = jnp.zeros(mask.shape[:2] + (wm.memory,), hist.dtype)  # [E, B, memory]: init's zeros
    _, (preds, outs) = jax.lax.scan(jax.checkpoint(body), (hist, batch["latent"], memory),
                                    (jnp.moveaxis(batch["action"], 2, 0),
                                     jnp.moveaxis(batch["next_latent"], 2, 0)))
    preds = jnp.moveaxis(preds, 0, 2)  # [E, B, K, D]
    sq = jnp.mean(multi_weight * (preds - target)[..., pred] ** 2, axis=-1)  # [E, B, K]
    multi = jnp.sum(sq * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    true_delta = (target[..., 0, pred] - hist[..., -1, pred]) / wm.delta_std  # [E, B, P]
    one = jnp.sum(jnp.mean(one_weight * (outs[0] - true_delta) ** 2, -1) * mask[..., 0]
                  ) / jnp.maximum(jnp.sum(mask[..., 0]), 1.0)
    final = jnp.sum(sq[..., -1] * mask[..., -1]) / jnp.maximum(jnp.sum(mask[..., -1]), 1.0)
    return multi + one_step_weight * one, {"multi_step_mse": multi, "one_step_mse": one,
                                           "last_step_mse": final}

  return loss


def _kept_by_growing(wm_config) -> dict:
  """What a grown network shares with its source (grow_params): all but the memory and the
  hidden widths (checked by _growable_widths)."""
  keys = ("network", "history", "ensemble_size", "pinch_latent", "command_latent",
          "canonical_frame", "physics_prior")
  return {k: tuple(v) if isinstance(v, (list, tuple)) else v
          for k in keys for v in [wm_config.get(k)]}


def _growable_widths(source_hidden, hidden) -> bool:
  """A grown network keeps the source's depth and widens each hidden layer by a whole factor."""
  return (len(source_hidden) == len(hidden) and
          all(n >= o and n % o == 0 for o, n in zip(source_hidden, hidden)))


GROW_SCALE = 0.01  # new memory weights of a grown network: its fresh init times this
SPLIT_SPREAD = 0.1  # how unevenly a widened unit's outgoing weights split among its copies


def grow_params(source, fresh, key=None):
  """`fresh` (a new network's init) filled from `source`, so the grown model predicts as the
  source did: a trained MLP world model grown by a memory, or widened, or both.

  A memory: its inputs are appended to the first layer's kernel rows and its outputs to the
  head's columns (core.apply_members keeps them last). The memory is zero at init, so the
  model predicts as before until it learns to write one. Those new weights are the fresh init
  times GROW_SCALE, not zeros: a memory read through zero weights and written by zero weights
  gets no gradient at all.

  Wider hidden layers (a whole factor k, Net2WiderNet): each unit is copied k times, with its
  LayerNorm scale and bias. Every copy sees the same pre-activation, so a LayerNorm over the
  widened layer has the source's mean and variance, and the copies' outgoing weights, split
  unevenly (SPLIT_SPREAD, drawn from `key`) but summing to the source's, give the next layer
  the same input. Even copies would get equal gradients and never part; uneven ones part.
  """
  if jax.tree.structure(source) != jax.tree.structure(fresh):
    raise ValueError("cannot grow the source network into this one: their layers differ "
                     f"({jax.tree.structure(source)} against {jax.tree.structure(fresh)})")
  old, new = source["params"]["members"], fresh["params"]["members"]
  depth = sum(name.startswith("Dense_") for name in old)
  key = jax.random.PRNGKey(0) if key is None else key

  def factor(o, n, what):
    if n < o or n % o:
      raise ValueError(f"cannot grow {what} of width {o} into {n}: a grown network widens "
                       "each hidden layer by a whole factor and only appends inputs and outputs")
    return n // o

  def append(value, into):  # value in the leading block of GROW_SCALE * into
    if value.ndim != into.ndim or any(o > n for o, n in zip(value.shape, into.shape)):
      raise ValueError(f"cannot grow a weight of shape {value.shape} into {into.shape}: a "
                       "grown network only appends inputs and outputs")
    return (GROW_SCALE * into).at[tuple(slice(0, o) for o in value.shape)].set(value)

  grown = {}
  copies = 1  # how many times the previous layer's units were copied
  for i in range(depth):
    dense, fresh_dense = old[f"Dense_{i}"], new[f"Dense_{i}"]
    kernel, bias = dense["kernel"], dense["bias"]  # [E, in, out], [E, out]
    if i > 0:  # its inputs are the previous layer's copied units: split their weights
      width = kernel.shape[-2]
      share = 1.0 / copies + SPLIT_SPREAD / copies * jax.random.normal(
          jax.random.fold_in(key, i), kernel.shape[:1] + (copies - 1, width, 1), kernel.dtype)
      share = jnp.concatenate([1.0 - share.sum(1, keepdims=True), share], axis=1)
      kernel = (share * kernel[:, None]).reshape(kernel.shape[0], copies * width,
                                                  kernel.shape[-1])
    if i < depth - 1:  # a hidden layer: its units copied
      copies = factor(kernel.shape[-1], fresh_dense["kernel"].shape[-1], f"hidden layer {i}")
      kernel, bias = jnp.tile(kernel, (1, 1, copies)), jnp.tile(bias, (1, copies))
      norm = old[f"LayerNorm_{i}"]
      grown[f"LayerNorm_{i}"] = {n: jnp.tile(v, (1, copies)) for n, v in norm.items()}
    grown[f"Dense_{i}"] = {"kernel": append(kernel, fresh_dense["kernel"]),
                           "bias": append(bias, fresh_dense["bias"])}
  return {"params": {"members": grown}}


def bootstrap_sampler(sampler: UnrollSampler, ensemble_size: int, seed: int):
  """`sample(step) -> batch [E, B, ...]`: member e draws from its own bootstrap resample."""
  boot = np.random.default_rng([seed, 7]).integers(0, len(sampler), (ensemble_size, len(sampler)))

  def sample(step: int, batch_size: int):
    idx = np.random.default_rng([seed, step]).integers(0, len(sampler), (ensemble_size, batch_size))
    return sampler.batch(np.take_along_axis(boot, idx, axis=1))

  return sample


def calibrate_risk(wm: core.WorldModel, params, sampler: UnrollSampler, seed: int,
                   count: int = 4096) -> float:
  """The one-step disagreement on training windows at RISK_PERCENTILE (risk 1 above it)."""
  windows = np.random.default_rng([seed, 11]).integers(0, len(sampler), min(count, len(sampler)))
  batch = sampler.batch(windows)
  e = wm.ensemble_size

  @jax.jit
  def disagreement(history, action, latent):
    out, _ = wm.apply_members(params, core.broadcast_members(wm.normalize(history), e),
                              core.broadcast_members(action, e),
                              core.broadcast_members(wm.next_latent(latent, history[..., -1, :],
                                                                    action), e))
    return wm.disagreement(out)  # out [E, B, P]

  values = np.asarray(disagreement(batch["history"], batch["action"][:, 0], batch["latent"]))
  return float(max(np.percentile(values, RISK_PERCENTILE), 1e-6))


def train_world_model(config: ml_collections.ConfigDict, workdir: str):
  """Trains the world model from config.wm_data (or, with world_model.train.init_from, fine-tunes
  that world model, keeping its normalization); returns (wm, EMA params)."""
  cfg = config.world_model
  if cfg.unroll < 1:
    raise ValueError(f"world_model.unroll must be >= 1; got {cfg.unroll}")
  input_noise = cfg.get("input_noise", 0.0)  # configs saved before it existed have none
  loss_units = check_loss_units(cfg.get("loss_units", "normalized"))  # older configs lack it
  if not input_noise >= 0:
    raise ValueError(f"world_model.input_noise is a std in metres, >= 0; got {input_noise}")
  episodes, held_out, used = load_split(config)
  if cfg.get("mirror_augment", False):  # configs saved before it existed have none
    episodes = episodes + mirrored(episodes, config.task)
  task = envs.task_fns(config.task)
  obs_dim = episodes[0]["steps"]["observation"].shape[1]
  if obs_dim != task.obs_dim:
    raise ValueError(f"the {config.task} datasets have {obs_dim}-d observations; the task "
                     f"has {task.obs_dim}")
  rng = jax.random.PRNGKey(cfg.train.seed)
  init_from = cfg.train.get("init_from")
  if init_from:  # fine-tune: keep the source's units, or its weights would mean nothing
    wm, params, source_cfg, source = _load(init_from)
    if wm.task.name != config.task:
      raise ValueError(f"world_model.train.init_from={init_from} is a {wm.task.name} world "
                       f"model; this config is for {config.task}")
    wm = core.make(cfg, task, wm.obs_stats, wm.delta_std)
    if cfg.train.get("init_grow", False):  # configs saved before it existed have none
      kept, wanted = _kept_by_growing(source_cfg.world_model), _kept_by_growing(cfg)
      widths = tuple(source_cfg.world_model.hidden), tuple(cfg.hidden)
      if kept != wanted or cfg.network != "mlp" or not _growable_widths(*widths):
        raise ValueError(f"world_model.train.init_grow only adds a memory to the MLP world "
                         f"model in {init_from} or widens its hidden layers by whole factors "
                         f"(hidden {widths[0]} -> {widths[1]}); the rest must match it. "
                         f"Source: {kept}; this config: {wanted}")
      params = grow_params(params, core.init_params(wm, jax.random.fold_in(rng, 0)),
                           jax.random.fold_in(rng, 2))
    expected = jax.eval_shape(lambda key: core.init_params(wm, key), rng)
    try:
      chex.assert_trees_all_equal_shapes_and_dtypes(params, expected)
    except AssertionError as e:
      raise ValueError(f"the world model in {init_from} does not fit this config's "
                       f"world_model (history, ensemble_size, network sizes must match; to "
                       f"add a memory to it or widen it, set world_model.train.init_grow="
                       f"True): {e}") from e
    obs_stats = normalization.stats_from_json({"observation": source["obs_stats"]})["observation"]
  else:
    obs_stats = data.compute_stats(episodes)["observation"]
    structure = core.obs_structure(task)
    wm = core.make(cfg, task, obs_stats, delta_std(episodes, obs_stats, structure.predicted))
    params = core.init_params(wm, jax.random.fold_in(rng, 0))
  sampler = UnrollSampler(episodes, history=cfg.history, unroll=cfg.unroll,
                          latents=[wm.episode_latents(ep["steps"]["observation"],
                                                        ep["steps"]["action"])
                                    for ep in episodes])
  tx = training.make_optimizer(cfg.train, params)
  state = training.init_state(params, tx)
  checkpoint.save_config(workdir, config)
  sample = bootstrap_sampler(sampler, wm.ensemble_size, cfg.train.seed)
  metadata = {"kind": "world_model", "task": config.task, "obs_dim": task.obs_dim,
              "action_dim": task.action_dim, "datasets": used,
              "obs_stats": normalization.stats_to_json({"observation": obs_stats})["observation"],
              "delta_std": wm.delta_std.tolist(), "num_episodes": len(episodes),
              "num_held_out_episodes": len(held_out), "num_windows": len(sampler)}
  loss = make_loss(wm, cfg.one_step_weight, input_noise,
                   bool(cfg.get("recorded_latent", False)), loss_units)  # older configs lack it
  state = training.fit(state, training.make_train_step(loss, tx,
                                                       cfg.train.ema_decay),
                       lambda step: sample(step, cfg.train.batch_size), steps=cfg.train.steps,
                       rng=jax.random.fold_in(rng, 1), workdir=workdir,
                       log_every=cfg.train.log_every,
                       checkpoint_every=cfg.train.checkpoint_every, metadata=metadata,
                       desc=f"{config.task} world model")
  risk_scale = calibrate_risk(wm, state.ema_params, sampler, cfg.train.seed)
  checkpoint.write_json(os.path.join(workdir, CALIBRATION_FILE),
                        {"risk_scale": risk_scale, "percentile": RISK_PERCENTILE,
                         "step": int(state.step)})
  return dataclasses.replace(wm, risk_scale=risk_scale), state.ema_params


def load_world_model(workdir: str, step: int | None = None):
  """(wm, EMA params, config) from a world-model work directory; step defaults to the latest."""
  return _load(workdir, step)[:3]


def _load(workdir: str, step: int | None = None):
  """load_world_model's (wm, EMA params, config), and the checkpoint's metadata."""
  config = checkpoint.load_config(workdir)
  ckpt = checkpoint.Checkpointer(workdir, create=False)
  state, metadata = ckpt.restore(step=step)  # as saved: nested dicts, checked below
  ckpt.close()
  if metadata.get("kind") != "world_model":
    raise checkpoint.CheckpointError(f"{workdir} is not a world-model work directory (its "
                                     "checkpoint metadata has no kind=world_model)")
  obs_stats = normalization.stats_from_json({"observation": metadata["obs_stats"]})["observation"]
  risk_scale = 1.0
  calibration = os.path.join(workdir, CALIBRATION_FILE)
  if os.path.exists(calibration):
    with open(calibration) as f:
      risk_scale = json.load(f)["risk_scale"]
  wm = core.make(config.world_model, envs.task_fns(config.task), obs_stats,
                 metadata["delta_std"], risk_scale)
  params = state["ema_params"]
  expected = jax.eval_shape(lambda rng: core.init_params(wm, rng), jax.random.PRNGKey(0))
  try:
    chex.assert_trees_all_equal_shapes_and_dtypes(params, expected)
  except AssertionError as e:
    raise ValueError(f"the parameters in {workdir} do not fit the world model its config "
                     f"builds: {e}") from e
  return wm, params, config, metadata

