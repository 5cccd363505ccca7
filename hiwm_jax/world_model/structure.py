"""Which parts of a task's observation the world model predicts, carries, copies or commands.

Learning what the simulator guarantees only adds error that compounds over a rollout, so:
  carried  constant within an episode (a goal, zero padding): kept from the last observation;
  copied   a deterministic copy of the previous observation (Meta-World's previous frame);
  commanded  set exactly from the last observation and the action (a mocap gripper goes where
             it is told); still read by the network, its prediction overwritten
  predicted  everything else: the network's residual output, and its input history;
  still      a state the simulator provably leaves as it is (a cloth at rest that nothing
             holds; a resting object the hand is clear of): the dims the rule names keep their
             values, whatever the network says;
  latent     simulator state the observation does not show but the actions set exactly:
             Meta-World's mocap target, which the hand lags (`command_latent`), or which cloth
             vertex the gripper has pinched (`pinch_latent`). Carried in the state beside the
             observations and shown to the network (the target's pull on the hand; the held
             vertex and the gripper's pull on it).
  frame      a frame read off each observation in which the simulator's physics is the same
             wherever it lies (the cloth's fold line): the network sees the observation, the
             move and the pull in it, and its predicted change is turned back
             (`canonical_frame`).
  prior      the simulator's physics written out (the cloth's, cloth_physics.py): the network
             predicts only its correction (`physics_prior`); its gradient through a training
             unroll comes from a cheaper version of it, or is stopped (`physics_gradient`).
  constrain  constraints the simulator keeps that a network's prediction need not (the
             cloth's edge lengths): each predicted observation is projected back onto them
             (`constraint_passes`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax.numpy as jnp
import numpy as np

from hiwm_jax.envs import cloth_fold, metaworld_env
from hiwm_jax.envs.base import TaskFns
from hiwm_jax.world_model import cloth_physics

# Per task: layout fields carried, and (field, source field) copies of the previous observation.
_CARRIED = {"pick_place": ("object2_pad", "goal_pos"), "push": ("object2_pad", "goal_pos")}
_COPIED = {"pick_place": (("previous_frame", slice(0, 18)),),
           "push": (("previous_frame", slice(0, 18)),)}
# Per task: (fields, fn(raw last obs [..., D], action [..., A]) -> those fields' next values).
_COMMANDED = {"cloth_fold": (("gripper_pos", "gripper_closed"), cloth_fold.commanded)}
# Per task: (fields that stay put, None for every predicted dim; fn(raw previous obs, raw last
# obs, action) -> bool, they stay put over this step).
_STILL = {"cloth_fold": (None, cloth_fold.stays_still),
          "push": (("object_pos", "object_quat"), metaworld_env.object_stays_still)}


@dataclasses.dataclass(frozen=True)
class Latent:
  """Hidden simulator state the actions set exactly, as pure functions of raw observations."""
  dim: int  # C
  feature_dim: int  # F: what the network sees of it, beside the action
  at: Callable  # raw obs [..., D] -> latent [..., C] there (exact at a reset)
  next: Callable  # (latent, raw obs, action) -> the latent after the action
  features: Callable  # (latent after the action, raw obs before it) -> network input [..., F]


MOCAP_PULL_SCALE = 0.05  # metres: the mocap target's pull on the hand, as the network sees it
_MOCAP = Latent(dim=3, feature_dim=3, at=metaworld_env.reset_mocap,
                next=lambda target, obs, action: metaworld_env.next_mocap(target, action),
                features=lambda target, obs: (target - obs[..., metaworld_env.OBS_LAYOUT[
                    "hand_pos"]]) / MOCAP_PULL_SCALE)
_PINCH = Latent(dim=cloth_fold.N_VERTS, feature_dim=cloth_fold.N_VERTS + 3,
                at=cloth_fold.pinch_at, next=cloth_fold.next_pinch,
                features=cloth_fold.pinch_features)
# Per task and config flag: the latent the state carries.
_LATENTS = {("push", "command_latent"): _MOCAP, ("pick_place", "command_latent"): _MOCAP,
            ("cloth_fold", "pinch_latent"): _PINCH}
# Per task: fn(raw obs [..., D]) -> (origin [..., 3], rotation [..., 3, 3]) of a frame the
# physics does not depend on; the network works in it. Only tasks whose scene has no fixed
# landmark: Meta-World's goals and walls are fixed in the world.
_FRAMES = {"cloth_fold": cloth_fold.fold_line_frame}
# Per task: fn(raw previous obs, raw obs, action, latent after it, physics=constants) -> the
# next raw obs [..., D] by physics written out, the constants' type, and the constants changed
# for the cheaper physics whose gradient stands in for it in training. The network predicts
# the rest.
_PRIORS = {"cloth_fold": (cloth_physics.next_observation, cloth_physics.Physics,
                          cloth_physics.GRADIENT_SURROGATE)}


def _cloth_constraints(obs, latent, passes):
  """The cloth's edges at rest length, the held vertex (a pinch latent, if carried) pinned."""
  pinch = latent if latent.shape[-1] == cloth_fold.N_VERTS else jnp.zeros(
      obs.shape[:-1] + (cloth_fold.N_VERTS,), obs.dtype)
  return cloth_physics.project_edges(obs, pinch, passes)


# Per task: fn(raw obs [..., D], latent [..., C], passes) -> raw obs back on the constraints.
_CONSTRAINTS = {"cloth_fold": _cloth_constraints}
# Fields that are positions in metres: open-loop error is reported on these, in cm.
_POSITIONS = {"pick_place": ("hand_pos", "object_pos"), "push": ("hand_pos", "object_pos"),
              "cloth_fold": ("gripper_pos", "cloth_verts")}


@dataclasses.dataclass(frozen=True)
class ObsStructure:
  """Index arrays over [obs_dim]; every dimension is in exactly one of the three groups."""
  predicted: np.ndarray  # [P] dims the network predicts (and reads)
  copy_to: np.ndarray  # [C] dims that take the previous observation's ...
  copy_from: np.ndarray  # [C] ... dims, raw units
  positions: tuple[tuple[str, slice], ...]  # (field, slice) of xyz positions, metres
  commanded_dims: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
  commanded: Callable | None = None  # (raw obs, action) -> values of commanded_dims
  still: Callable | None = None  # (raw previous obs, raw obs, action) -> still_mask dims stay
  still_mask: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))  # [P]
  latent: Latent | None = None  # the hidden state carried beside the observations, if any
  frame: Callable | None = None  # raw obs -> (origin, rotation) the network works in (it
  #                                turns the position fields), if any
  prior: Callable | None = None  # (raw previous obs, raw obs, action, latent after it) -> the
  #                                next raw obs by physics, which the network corrects; if any
  prior_surrogate: Callable | None = None  # the same, cheaper: its gradient stands in for
  #                                          the prior's; None: the prior passes none
  constrain: Callable | None = None  # (raw obs, latent) -> raw obs projected onto the
  #                                    simulator's constraints; if any


def _dims(s: slice) -> np.ndarray:
  return np.arange(s.start, s.stop)


def obs_structure(task: TaskFns, still_rule: bool = False, command_latent: bool = False,
                  pinch_latent: bool = False, canonical_frame: bool = False,
                  physics=None, constraint_passes: int = 0,
                  physics_gradient: bool = False) -> ObsStructure:
  """The task's structure; still_rule=False leaves every step to the network, with neither
  latent flag (or a task without that latent) no hidden state is carried, without
  canonical_frame (or a task without one) the network works in world coordinates, without
  physics constants (or a task without a prior) the network predicts the whole step (with
  physics_gradient, the prior's gradient comes from its cheaper surrogate), and with
  constraint_passes=0 (or a task without constraints) its prediction is kept as it is."""
  layout = task.obs_layout
  carried = [_dims(layout[f]) for f in _CARRIED.get(task.name, ())]
  copy_to = [_dims(layout[f]) for f, _ in _COPIED.get(task.name, ())]
  copy_from = [_dims(src) for _, src in _COPIED.get(task.name, ())]
  fixed = np.concatenate(carried + copy_to + [np.zeros(0, int)])
  predicted = np.setdiff1d(np.arange(task.obs_dim), fixed)
  cat = lambda xs: np.concatenate(xs + [np.zeros(0, int)]).astype(np.int32)
  positions = tuple((f, layout[f]) for f in _POSITIONS.get(task.name, ()))
  fields, fn = _COMMANDED.get(task.name, ((), None))
  commanded_dims = cat([_dims(layout[f]) for f in fields])
  still_fields, still = _STILL.get(task.name, ((), None)) if still_rule else ((), None)
  still_mask = (np.ones(predicted.size, bool) if still_fields is None else
                np.isin(predicted, cat([_dims(layout[f]) for f in still_fields])))
  flags = {"command_latent": command_latent, "pinch_latent": pinch_latent}
  latents = [_LATENTS[task.name, f] for f, on in flags.items() if on and (task.name, f) in _LATENTS]
  frame = _FRAMES.get(task.name) if canonical_frame else None
  prior = prior_surrogate = None
  if physics is not None and task.name in _PRIORS:
    step, constants, cheaper = _PRIORS[task.name]
    exact = constants(**dict(physics))
    prior = functools.partial(step, physics=exact)
    if physics_gradient:
      prior_surrogate = functools.partial(step, physics=dataclasses.replace(exact, **cheaper))
  constrain = None
  if constraint_passes > 0 and task.name in _CONSTRAINTS:
    constrain = functools.partial(_CONSTRAINTS[task.name], passes=constraint_passes)
  return ObsStructure(predicted.astype(np.int32), cat(copy_to), cat(copy_from), positions,
                      commanded_dims, fn, still, still_mask, latents[0] if latents else None,
                      frame=frame, prior=prior, prior_surrogate=prior_surrogate,
                      constrain=constrain)


def has_prior(task: TaskFns) -> bool:
  """Whether the task has physics written out for a world model to correct."""
  return task.name in _PRIORS


def rotate_positions(obs, rotation, positions, origin=None):
  """obs [..., D] with every xyz triple of the position fields ((name, slice), ...) replaced by
  rotation [..., 3, 3] @ (xyz - origin [..., 3]): world positions into a frame (or, with the
  transposed rotation and no origin, a change of positions back out of it). Slices and
  reshapes, not an index gather: this runs at every step of every training window."""
  pieces, at = [], 0
  for _, field in sorted(positions, key=lambda named: named[1].start):
    xyz = obs[..., field].reshape(*obs.shape[:-1], -1, 3)
    if origin is not None:
      xyz = xyz - origin[..., None, :]
    turned = jnp.einsum("...ij,...nj->...ni", rotation, xyz)
    pieces += [obs[..., at:field.start], turned.reshape(*obs.shape[:-1], -1)]
    at = field.stop
  return jnp.concatenate(pieces + [obs[..., at:]], axis=-1)
