"""The world model's pure carry API: init / step / observe / judge (and a scanned rollout).

    state = wm.init(params, obs_history)       # real observations [h, obs_dim], task units
    state = wm.step(params, state, action)     # one control step; jit/vmap/scan-able
    obs   = wm.observe(params, state)          # [obs_dim], task units: what policy and person see
    out   = wm.judge(params, state)            # {success, progress, risk, valid}

`WMState` holds arrays only, so a snapshot is a reference, rollback is indexing a scan's
stacked states, and K branches are the state broadcast along a new leading axis.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hiwm_jax.envs.base import TaskFns
from hiwm_jax.world_model import cloth_graph
from hiwm_jax.world_model.model import Ensemble, broadcast_members
from hiwm_jax.world_model.structure import (ObsStructure, has_prior, obs_structure,
                                            rotate_positions)

Params = Any


@flax.struct.dataclass
class WMState:
  obs_history: jax.Array  # [h, obs_dim] float32, normalized units; [-1] is the current obs
  risk: jax.Array  # [] float32, ensemble disagreement of the step that made obs_history[-1]
  step: jax.Array  # [] int32, control steps taken since init
  latent: jax.Array  # [C] float32: hidden simulator state the actions set (structure.Latent:
  #                    Meta-World's mocap target, the cloth's pinch); [0] where none is kept
  memory: jax.Array  # [E, K] float32: each member's learned memory of what the observations
  #                    do not show (the cloth's velocities at the step's end); [E, 0]: none


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashable by identity, for jax.jit
class WorldModel:
  """A task's world model: its network and the constants its pure functions close over.

  Attributes:
    obs_stats: {"mean", "std"} float32 [obs_dim] that states are normalized with.
    delta_std: float32 [P] a typical step's change of each predicted dim, normalized units.
    risk_scale: disagreement that counts as risk 1 (calibrated on training data).
    still_rule: keep what the simulator provably leaves still (structure.py). Off unless the
      config turns it on (experiments/configs/common.py does), so models trained before the
      rule load as they were trained.
    command_latent: carry the controller target the actions set (structure.py), and show the
      network its pull on the hand. Off unless the config turns it on, likewise.
    pinch_latent: carry which cloth vertex the gripper has pinched (structure.py), and show
      the network the vertex and the gripper's pull on it. Off unless the config turns it on.
    canonical_frame: the network works in a frame read off each observation (the cloth's
      fold line, structure.py), where the physics is the same whatever the cloth's yaw and
      shift. Off unless the config turns it on.
    physics: the constants of the task's physics written out (the cloth's,
      cloth_physics.Physics), whose step the network then only corrects; None: no prior, the
      network predicts the whole step (and always for a task without one).
    physics_gradient: with a prior, pass a gradient through it (from its cheaper surrogate,
      structure.py), so a training unroll trains against errors that compound, as it does
      without a prior; False: the prior passes none and each unrolled step trains alone.
    constraint_passes: Gauss-Seidel passes that project each predicted observation back onto
      the constraints the simulator keeps (the cloth's edge lengths, structure.py); 0: none.
    memory: K, the size of each member's learned memory (WMState.memory): the network reads
      it and writes its next value each step, so the state can hold what two observations do
      not (the cloth simulator, restarted from them every step, errs 3.6 times more at 50
      steps than carrying its own velocities; results/world_model). Zero at init. 0: none.
  """
  task: TaskFns
  history: int
  module: Ensemble | cloth_graph.GraphEnsemble
  obs_stats: Mapping[str, np.ndarray]
  delta_std: np.ndarray
  risk_scale: float = 1.0
  still_rule: bool = False
  command_latent: bool = False
  pinch_latent: bool = False
  canonical_frame: bool = False
  physics: Mapping[str, Any] | None = None
  physics_gradient: bool = False
  constraint_passes: int = 0
  memory: int = 0

  @property
  def obs_dim(self) -> int:
    return self.task.obs_dim

  @property
  def action_dim(self) -> int:
    return self.task.action_dim

  @property
  def ensemble_size(self) -> int:
    return self.module.size

  @functools.cached_property  # trace-time index arrays, built once
  def structure(self) -> ObsStructure:
    return obs_structure(self.task, self.still_rule, self.command_latent, self.pinch_latent,
                         self.canonical_frame, self.physics, self.constraint_passes,
                         self.physics_gradient)

  @property
  def latent_dim(self) -> int:
    """C: the size of the hidden state carried beside the observations (0 if none)."""
    return 0 if self.structure.latent is None else self.structure.latent.dim

  # ------------------------------------------------------------------ the carry API

  def init(self, params: Params, obs_history, latent=None) -> WMState:
    """The state at real observations; `latent` [C] is the hidden state there if the robot
    knows it (its controller target, its grip); default: read off the last observation
    (`structure.Latent.at`), exact at an episode's start."""
    del params  # the state is the observations; kept for the uniform signature
    obs_history = jnp.asarray(obs_history, jnp.float32)
    if obs_history.shape != (self.history, self.obs_dim):
      raise ValueError(f"obs_history has shape {tuple(obs_history.shape)}; expected "
                       f"({self.history}, {self.obs_dim}) = (history, obs_dim) for the "
                       f"{self.task.name} world model")
    if latent is None:
      latent = (self.structure.latent.at(obs_history[-1]) if self.latent_dim else
                jnp.zeros((0,), jnp.float32))
    latent = jnp.asarray(latent, jnp.float32)
    if latent.shape != (self.latent_dim,):
      raise ValueError(f"latent has shape {tuple(latent.shape)}; expected "
                       f"({self.latent_dim},) for this {self.task.name} world model")
    return WMState(obs_history=self.normalize(obs_history), risk=jnp.zeros((), jnp.float32),
                   step=jnp.zeros((), jnp.int32), latent=latent,
                   memory=jnp.zeros((self.ensemble_size, self.memory), jnp.float32))

  def step(self, params: Params, state: WMState, action) -> WMState:
    action = jnp.asarray(action, jnp.float32)
    if action.shape != (self.action_dim,):
      raise ValueError(f"action has shape {tuple(action.shape)}; expected ({self.action_dim},)")
    latent = self.next_latent(state.latent, self.observe(params, state), action)
    e = self.ensemble_size
    prior = (None if self.structure.prior is None else broadcast_members(
        self.prior_change(state.obs_history, jnp.clip(action, -1.0, 1.0), latent), e))
    out, memory = self.apply_members(params, broadcast_members(state.obs_history, e),
                                     broadcast_members(action, e), broadcast_members(latent, e),
                                     prior, state.memory)  # [E, P], [E, K]
    history = jnp.concatenate([state.obs_history[1:], self.advance(
        state.obs_history, out.mean(0), action, latent)[None]])
    return WMState(obs_history=history, risk=self.disagreement(out) / self.risk_scale,
                   step=state.step + 1, latent=latent, memory=memory)

  def observe(self, params: Params, state: WMState) -> jax.Array:
    del params
    return self.unnormalize(state.obs_history[-1])  # [obs_dim]

  def judge(self, params: Params, state: WMState) -> dict[str, jax.Array]:
    """The task's own success predicate and progress on the observed state, and risk.

    A state with any non-finite number is invalid: never successful, progress 0, risk inf.
    """
    obs = self.observe(params, state)
    valid = jnp.all(jnp.isfinite(state.obs_history)) & jnp.isfinite(state.risk)
    safe = jnp.where(valid, obs, 0.0)  # predicates see finite numbers either way
    return {"success": jnp.asarray(self.task.success(safe), bool) & valid,
            "progress": jnp.where(valid, jnp.clip(self.task.progress(safe), 0.0, 1.0), 0.0),
            "risk": jnp.where(valid, state.risk, jnp.inf),
            "valid": valid}

  def rollout(self, params: Params, state: WMState, actions) -> WMState:
    """Steps through actions [T, A]; returns the T states after each step, stacked [T, ...]."""
    def body(carry, action):
      nxt = self.step(params, carry, action)
      return nxt, nxt
    return jax.lax.scan(body, state, jnp.asarray(actions, jnp.float32))[1]

  # ------------------------------------------------------------------ pieces (training uses them)

  def initial_history(self, obs) -> np.ndarray:
    """[h, obs_dim] from one observation [obs_dim]: the first observation repeated."""
    return np.repeat(np.asarray(obs, np.float32)[None], self.history, axis=0)

  def next_latent(self, latent, obs, action) -> jax.Array:
    """The hidden state [..., C] after an action from observation [..., D] (task units);
    unchanged, [..., 0], if none is kept."""
    if not self.latent_dim:
      return latent
    return self.structure.latent.next(latent, obs, jnp.clip(action, -1.0, 1.0))

  def episode_latents(self, observations, actions) -> np.ndarray:
    """The hidden state [T+1, C] at each observation [T+1, D] of an episode that starts at a
    reset, integrated through its actions [T, A]: what training and open-loop evaluation
    start each window from."""
    if not self.latent_dim:
      return np.zeros((len(observations), 0), np.float32)
    steps = len(observations) - 1
    length = -(-max(steps, 1) // 256) * 256  # one compile per 256 steps
    padded_obs = np.zeros((length, self.obs_dim), np.float32)
    padded_obs[:steps] = np.asarray(observations, np.float32)[:steps]
    padded = np.zeros((length, self.action_dim), np.float32)
    padded[:steps] = np.asarray(actions, np.float32)[:steps]
    first = self.structure.latent.at(jnp.asarray(observations[0], jnp.float32))
    rest = np.asarray(self._integrate_latents(first, padded_obs, padded))[:steps]
    return np.concatenate([np.asarray(first)[None], rest]).astype(np.float32)

  @functools.cached_property
  def _integrate_latents(self):
    """jitted (latent [C], raw observations [T, D], actions [T, A]) -> the latent after each
    action [T, C]."""
    step = lambda c, xs: (self.next_latent(c, *xs),) * 2
    return jax.jit(lambda first, obs, actions: jax.lax.scan(step, first, (obs, actions))[1])

  def normalize(self, obs):
    return (obs - self.obs_stats["mean"]) / self.obs_stats["std"]

  def unnormalize(self, obs):
    return obs * self.obs_stats["std"] + self.obs_stats["mean"]

  def prior_change(self, history, action, latent) -> jax.Array:
    """The physics prior's change [..., P] over a step from history [..., h, obs_dim] with
    the (clipped) action and the latent after it, in typical-step units.

    Its value is the prior's; its gradient is its cheaper surrogate's (`physics_gradient`),
    or none: through every solver pass the gradient costs 13 times the step itself (hours of
    training on a CPU)."""
    raw = self.unnormalize(history[..., -2:, :])  # one observation: a step from rest
    s = self.structure

    def change(physics):
      after = physics(raw[..., 0, :], raw[..., -1, :], action, latent)
      return (self.normalize(after) - history[..., -1, :])[..., s.predicted] / self.delta_std

    exact = jax.lax.stop_gradient(change(s.prior))
    if s.prior_surrogate is None:
      return exact
    cheap = change(s.prior_surrogate)
    return cheap + jax.lax.stop_gradient(exact - cheap)

  def apply_members(self, params: Params, history, action, latent=None,
                    prior_change=None, memory=None) -> tuple[jax.Array, jax.Array]:
    """Members' outputs [E, ..., P] and next memories [E, ..., K] from histories
    [E, ..., h, obs_dim], actions [E, ..., A], with a latent the latent after the action
    [E, ..., C], and their memories [E, ..., K] (None: zeros): each member's predicted change,
    zero in the dims the structure says stay still. With a physics prior, its change is
    added (`prior_change` [E, ..., P] where the caller has it: one physics step for all
    members when they share their inputs)."""
    s, action = self.structure, jnp.clip(action, -1.0, 1.0)
    p = s.predicted
    if memory is None:
      memory = jnp.zeros(action.shape[:-1] + (self.memory,), action.dtype)
    if isinstance(self.module, cloth_graph.GraphEnsemble):  # per vertex, in metres
      nodes, edges = cloth_graph.graph_inputs(self.unnormalize(history), action)
      delta = cloth_graph.vertex_delta_to_obs(self.module.apply(params, nodes, edges),
                                              self.obs_dim)
      out = delta[..., p] / (self.obs_stats["std"][p] * self.delta_std)  # no memory (make)
    else:
      # What the network sees: world coordinates, or the frame's.
      seen, move, raw = history, action, self.unnormalize(history)
      if s.frame is not None:
        origin, rotation = s.frame(raw[..., -1, :])
        raw = rotate_positions(raw, rotation[..., None, :, :], s.positions, origin[..., None, :])
        seen = self.normalize(raw)
        move = action.at[..., :3].set(jnp.einsum("...ij,...j->...i", rotation, action[..., :3]))
      inputs = move
      if self.latent_dim:  # from the observation as the network sees it (a pinch has no frame)
        inputs = jnp.concatenate([move, s.latent.features(latent, raw[..., -1, :])], axis=-1)
      inputs = jnp.concatenate([inputs, memory], axis=-1)  # last: train.grow_params appends it
      hist = seen[..., p]  # [..., h, P]
      # The last observation and the recent steps' changes in typical-step units: motion is
      # a small difference of large positions, too ill-conditioned to leave to the first layer.
      motion = jnp.diff(hist, axis=-2) / self.delta_std  # [..., h-1, P]
      out = self.module.apply(params, jnp.concatenate([motion, hist[..., -1:, :]], axis=-2),
                              inputs)
      out, memory = out[..., :p.size], jnp.tanh(out[..., p.size:])  # memory in (-1, 1)
      if s.frame is not None:  # the predicted change, turned from the frame back to the world
        scale = self.obs_stats["std"][p] * self.delta_std
        change = jnp.zeros(out.shape[:-1] + (self.obs_dim,), out.dtype).at[..., p].set(out * scale)
        out = rotate_positions(change, jnp.swapaxes(rotation, -1, -2), s.positions)[..., p] / scale
    if s.prior is not None:  # the network's output corrects the physics' step
      out = out + (self.prior_change(history, action, latent) if prior_change is None else
                   prior_change)
    still = s.still
    if still is None or self.history < 2:  # one observation shows no motion: cannot tell rest
      return out, memory
    raw = self.unnormalize(history[..., -2:, :])
    stays = still(raw[..., 0, :], raw[..., 1, :], action)[..., None] & s.still_mask
    return jnp.where(stays, 0.0, out), memory

  def advance(self, history, out, action, latent=None) -> jax.Array:
    """The next normalized observation [..., D] from history [..., h, D], the network's output
    [..., P], the action [..., A] and the latent after it [..., C] (None: none carried)."""
    s = self.structure
    last = history[..., -1, :]
    nxt = last.at[..., s.predicted].add(out * self.delta_std)
    if s.copy_to.size:
      mean, std = self.obs_stats["mean"], self.obs_stats["std"]
      raw = last[..., s.copy_from] * std[s.copy_from] + mean[s.copy_from]
      nxt = nxt.at[..., s.copy_to].set((raw - mean[s.copy_to]) / std[s.copy_to])
    if s.commanded is not None:
      dims, mean, std = s.commanded_dims, self.obs_stats["mean"], self.obs_stats["std"]
      raw = s.commanded(self.unnormalize(last), jnp.clip(action, -1.0, 1.0))
      nxt = nxt.at[..., dims].set((raw - mean[dims]) / std[dims])
    if s.constrain is not None:
      latent = jnp.zeros(nxt.shape[:-1] + (0,), nxt.dtype) if latent is None else latent
      constrained = self.normalize(s.constrain(self.unnormalize(nxt), latent))
      if s.still is not None and self.history >= 2:  # what stays still stays exactly still
        raw = self.unnormalize(history[..., -2:, :])
        stays = s.still(raw[..., 0, :], raw[..., 1, :], jnp.clip(action, -1.0, 1.0))
        constrained = jnp.where(stays[..., None], nxt, constrained)
      nxt = constrained
    return nxt

  @staticmethod
  def disagreement(out) -> jax.Array:
    """RMS over dims of the members' std [E, ..., P] -> [...], in typical-step units."""
    return jnp.sqrt(jnp.mean(jnp.var(out, axis=0), axis=-1))


def make(config, task: TaskFns, obs_stats: Mapping[str, Any], delta_std,
         risk_scale: float = 1.0) -> WorldModel:
  """A world model from the `world_model` config section and the training data's statistics."""
  structure = obs_structure(task)
  stats = {k: np.asarray(obs_stats[k], np.float32) for k in ("mean", "std")}
  delta_std = np.asarray(delta_std, np.float32)
  if any(v.shape != (task.obs_dim,) for v in stats.values()):
    raise ValueError(f"obs_stats mean/std must have shape ({task.obs_dim},); got "
                     f"{stats['mean'].shape} and {stats['std'].shape}")
  if delta_std.shape != structure.predicted.shape:
    raise ValueError(f"delta_std must have shape {structure.predicted.shape}; got "
                     f"{delta_std.shape}")
  if config.history < 1 or config.ensemble_size < 1:
    raise ValueError(f"world_model.history and ensemble_size must be >= 1; got "
                     f"{config.history} and {config.ensemble_size}")
  physics = None
  physics_gradient = bool(config.get("physics_gradient", False))  # older configs lack it
  if physics_gradient and not config.get("physics_prior", False):
    raise ValueError("world_model.physics_gradient passes a gradient through the physics "
                     "prior: set physics_prior=True (or physics_gradient=False)")
  if config.get("physics_prior", False):
    physics = dict(config.physics)
    if not has_prior(task):
      physics = None  # like the latents: a flag for a task without a prior changes nothing
    elif not config.get("pinch_latent", False):
      raise ValueError("world_model.physics_prior needs the held vertex the pinch latent "
                       "carries: set pinch_latent=True (or physics_prior=False)")
    elif config.get("network", "mlp") != "mlp":
      raise ValueError("world_model.physics_prior is for the MLP network: set "
                       "physics_prior=False for the cloth graph")
  passes = int(config.get("constraint_passes", 0))
  if passes < 0:
    raise ValueError(f"world_model.constraint_passes must be >= 0 (0: off); got {passes}")
  network = config.get("network", "mlp")
  memory = int(config.get("memory", 0))  # configs saved before it existed have none
  if memory < 0 or (memory and network != "mlp"):
    raise ValueError(f"world_model.memory is a size >= 0 for the MLP network (0: none); got "
                     f"{memory} with network {network!r}")
  if network == "mlp":
    module = Ensemble(size=config.ensemble_size, hidden=tuple(config.hidden),
                      out_dim=int(structure.predicted.size) + memory)
  elif network == "cloth_graph" and task.name == "cloth_fold":
    if config.get("canonical_frame", False):
      raise ValueError("world_model.canonical_frame is for the MLP network; the cloth graph "
                       "sees relative geometry already: set canonical_frame=False")
    module = cloth_graph.GraphEnsemble(size=config.ensemble_size, width=config.graph.width,
                                       rounds=config.graph.rounds)
  else:
    raise ValueError(f"unknown world_model.network {network!r} for task {task.name}; known: "
                     "'mlp' (any task), 'cloth_graph' (cloth_fold)")
  return WorldModel(task=task, history=config.history, module=module, obs_stats=stats,
                    delta_std=delta_std, risk_scale=float(risk_scale),
                    still_rule=bool(config.get("still_rule", WorldModel.still_rule)),
                    command_latent=bool(config.get("command_latent", WorldModel.command_latent)),
                    pinch_latent=bool(config.get("pinch_latent", WorldModel.pinch_latent)),
                    canonical_frame=bool(config.get("canonical_frame",
                                                    WorldModel.canonical_frame)),
                    physics=physics, physics_gradient=physics_gradient and physics is not None,
                    constraint_passes=passes, memory=memory)


def init_params(wm: WorldModel, rng: jax.Array) -> Params:
  latent = wm.structure.latent
  e, p = wm.ensemble_size, wm.structure.predicted.size
  a = wm.action_dim + (latent.feature_dim if latent is not None else 0) + wm.memory
  if isinstance(wm.module, cloth_graph.GraphEnsemble):
    return wm.module.init(rng, *cloth_graph.graph_inputs(jnp.zeros((e, wm.history, wm.obs_dim)),
                                                         jnp.zeros((e, wm.action_dim))))
  return wm.module.init(rng, jnp.zeros((e, wm.history, p)), jnp.zeros((e, a)))
