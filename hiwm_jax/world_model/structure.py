"""Which parts of a task's observation the world model predicts, carries, copies or commands.

Learning what the simulator guarantees only adds error that compounds over a rollout, so:
  carried  constant within an episode (a goal, zero padding): kept from the last observation;
  copied   a deterministic copy of the previous observation (Meta-World's previous frame);
  commanded  set exactly from the last observation and the action (a mocap gripper goes where
             it is told); still read by the network, its prediction overwritten
  predicted  everything else: the network's residual output, and its input history;
  still      a state the simulator provably leaves as it is (a cloth at rest that nothing
             holds): the predicted dims keep their values, whatever the network says.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from hiwm_jax.envs import cloth_fold
from hiwm_jax.envs.base import TaskFns

# Per task: layout fields carried, and (field, source field) copies of the previous observation.
_CARRIED = {"pick_place": ("object2_pad", "goal_pos"), "push": ("object2_pad", "goal_pos")}
_COPIED = {"pick_place": (("previous_frame", slice(0, 18)),),
           "push": (("previous_frame", slice(0, 18)),)}
# Per task: (fields, fn(raw last obs [..., D], action [..., A]) -> those fields' next values).
_COMMANDED = {"cloth_fold": (("gripper_pos", "gripper_closed"), cloth_fold.commanded)}
# Per task: fn(raw previous obs, raw last obs, action) -> bool, the predicted dims stay put.
_STILL = {"cloth_fold": cloth_fold.stays_still}
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
  still: Callable | None = None  # (raw previous obs, raw obs, action) -> predicted dims stay


def _dims(s: slice) -> np.ndarray:
  return np.arange(s.start, s.stop)


def obs_structure(task: TaskFns, still_rule: bool = False) -> ObsStructure:
  """The task's structure; still_rule=False leaves every step to the network."""
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
  return ObsStructure(predicted.astype(np.int32), cat(copy_to), cat(copy_from), positions,
                      commanded_dims, fn, _STILL.get(task.name) if still_rule else None)
