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
  command    a controller target the observation does not show but the actions set exactly
             (Meta-World's mocap, which the hand lags): carried in the state beside the
             observations and shown to the network as the pull on the field it drives.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from hiwm_jax.envs import cloth_fold, metaworld_env
from hiwm_jax.envs.base import TaskFns

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
# Per task: (fn(raw reset obs) -> target [C], fn(target, action) -> next target, the field it
# pulls): the controller target a command latent carries.
_COMMAND = {name: (metaworld_env.reset_mocap, metaworld_env.next_mocap, "hand_pos")
            for name in ("push", "pick_place")}
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
  command_reset: Callable | None = None  # raw reset obs [..., D] -> command [..., C]
  command_next: Callable | None = None  # (command, action) -> next command
  command_pulls: slice | None = None  # the obs field the command drives (same units)


def _dims(s: slice) -> np.ndarray:
  return np.arange(s.start, s.stop)


def obs_structure(task: TaskFns, still_rule: bool = False,
                  command_latent: bool = False) -> ObsStructure:
  """The task's structure; still_rule=False leaves every step to the network, and
  command_latent=False keeps no controller target beside the observations."""
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
  reset, nxt, pulls = _COMMAND.get(task.name, (None, None, None)) if command_latent else (
      None, None, None)
  return ObsStructure(predicted.astype(np.int32), cat(copy_to), cat(copy_from), positions,
                      commanded_dims, fn, still, still_mask, reset, nxt,
                      layout[pulls] if pulls else None)
