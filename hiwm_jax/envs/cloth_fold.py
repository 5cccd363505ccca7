"""cloth_fold: fold a square cloth by carrying corner A onto the diagonally opposite corner B.

Our own MuJoCo deformable scene (assets/cloth_fold.xml): an 8x8-vertex cloth on a table and a
visual-only gripper that pinches the nearest vertex when it closes. The observation is the
gripper and every cloth vertex in world metres, so the pure task functions below can judge and
act on a world model's predicted observation exactly as on the simulator's.

Action [4] in [-1, 1], as in Meta-World: dx, dy, dz (times MAX_STEP metres per control step)
and grip (> 0 closes). A fold counts (`success`) once corner A lies within SUCCESS_DIST of
corner B *and the gripper is open*: a corner still held over B is not yet a fold.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from hiwm_jax.envs.base import TaskEnv, TaskFns, check_observation
from hiwm_jax.envs.rendering import Camera, Renderer

XML_PATH = os.path.join(os.path.dirname(__file__), "assets", "cloth_fold.xml")

N_SIDE = 8  # vertices per cloth side; vertex index = ix * N_SIDE + iy.
N_VERTS = N_SIDE * N_SIDE
SPACING = 0.03  # metres between neighbouring vertices (must match the XML).
DIAGONAL = float(np.sqrt(2.0) * (N_SIDE - 1) * SPACING)  # corner-to-corner length, 0.297 m.
CORNER_A = 0  # the corner the expert picks up...
CORNER_B = N_VERTS - 1  # ...and lays onto this diagonally opposite one.
HINGE = (N_SIDE - 1, N_VERTS - N_SIDE)  # the other two corners: the fold line runs through them.

SUCCESS_DIST = 0.03  # metres between corners A and B for a fold.
MAX_STEP = 0.015  # metres of gripper travel per control step at |action| = 1.
PINCH_RADIUS = 0.025  # a closing gripper pinches the nearest vertex within this distance.
HOLD_RADIUS = 0.015  # a held vertex stays this close to the closed gripper (about 8 mm seen).
REST_SPEED = 1e-4  # metres per step: a cloth slower than this (and not held) is at rest.
SUBSTEPS = 12  # 4 ms physics steps per control step: about 20 Hz control.
WORKSPACE_LO = np.array([-0.25, -0.25, 0.006])  # gripper clamp; z stays above the table top.
WORKSPACE_HI = np.array([0.25, 0.25, 0.25])
GRIPPER_HOME = np.array([0.0, 0.0, 0.12])
MAX_STEPS = 150

# Per-seed randomisation of the initial state.
CLOTH_SHIFT = 0.03  # cloth centre uniform in +-this (x and y), metres.
CLOTH_YAW = np.pi / 4  # cloth yaw uniform in +-this, radians.
GRIPPER_JITTER = np.array([0.05, 0.05, 0.02])  # gripper start uniform in HOME +- this.

OBS_LAYOUT = {
    "gripper_pos": slice(0, 3),
    "gripper_closed": slice(3, 4),  # 1.0 closed, 0.0 open.
    "cloth_verts": slice(4, 4 + 3 * N_VERTS),  # [64, 3] flattened row-major.
}
OBS_DIM = 4 + 3 * N_VERTS  # 196


def _mirror_obs_index() -> np.ndarray:
  """[OBS_DIM]: the observation of the scene mirrored in the vertical plane x = y, as an index
  into the original (see MIRROR_OBS_INDEX)."""
  index = np.arange(OBS_DIM)
  index[:2] = [1, 0]  # the gripper's x and y swap
  verts = np.arange(N_VERTS).reshape(N_SIDE, N_SIDE)  # [ix, iy] -> vertex
  first = OBS_LAYOUT["cloth_verts"].start
  for new, old in zip(verts.ravel(), verts.T.ravel()):
    index[first + 3 * new:first + 3 * new + 3] = first + 3 * old + np.array([1, 0, 2])
  return index


# The scene's mirror symmetry: swapping world x and y (the vertical plane x = y) and the
# grid's two axes (vertex (ix, iy) <-> (iy, ix)) maps a simulator episode onto another one
# (a flat isotropic table, gravity along z, a grid whose edges map onto edges). The cloth's
# yaw and shift, the gripper's start and the corners A and B map into their own ranges, so a
# mirrored episode is one the simulator could have recorded. obs[..., MIRROR_OBS_INDEX] and
# action[..., MIRROR_ACTION_INDEX] mirror; each index is its own inverse.
MIRROR_OBS_INDEX = _mirror_obs_index()
MIRROR_ACTION_INDEX = np.array([1, 0, 2, 3])  # dx <-> dy; dz and the grip stay

CAMERA = Camera(lookat=(0.0, 0.0, 0.02), distance=0.5, azimuth=90.0, elevation=-60.0)
RGBA_OPEN = (0.2, 0.8, 0.2, 1.0)
RGBA_CLOSED = (0.9, 0.2, 0.2, 1.0)

# The expert's tolerances (metres).
_GRASP_TOL = 0.006  # open gripper this close to A: close.
_HOVER = 0.05  # approach height above A, reached while still far from it.
_ARC_ASPECT = 0.9  # the carry arc's height over its half-width (1 = a semicircle).
_ARC_STEP = 1.5 * MAX_STEP  # how far along the arc the carry aims ahead of A.
_PLACE_HEIGHT = 0.006  # the carry ends with A this far above B...
_PLACE_XY = 0.01  # ...and releases once A is this close (horizontally) over B
_PLACE_Z = 0.012  # and at most this high above it.


# ---------------------------------------------------------------- pure functions of obs


def vertices(obs):
  """[..., 64, 3] cloth vertices of observations [..., D]."""
  return obs[..., OBS_LAYOUT["cloth_verts"]].reshape(*obs.shape[:-1], N_VERTS, 3)


def _split(obs):
  """(gripper [3], closed bool, verts [64, 3]) of one observation."""
  gripper = obs[OBS_LAYOUT["gripper_pos"]]
  closed = obs[OBS_LAYOUT["gripper_closed"]][0] > 0.5
  return gripper, closed, vertices(obs)


def corner_distance(obs):
  """Metres between corners A and B: the fold's error."""
  _, _, verts = _split(obs)
  return jnp.linalg.norm(verts[CORNER_A] - verts[CORNER_B])


def success(obs):
  """Corner A within SUCCESS_DIST of corner B with the gripper open (let go, folded)."""
  _, closed, _ = _split(obs)
  return (corner_distance(obs) < SUCCESS_DIST) & ~closed


def progress(obs):
  """1 at success; otherwise how far A has come toward B, capped at 0.99."""
  geometric = 1.0 - jnp.clip((corner_distance(obs) - SUCCESS_DIST) / (DIAGONAL - SUCCESS_DIST),
                             0.0, 1.0)
  return jnp.where(success(obs), 1.0, jnp.minimum(geometric, 0.99))


def commanded(obs, action):
  """The gripper part of the next observation [..., 4]: exactly what the simulator does with
  an action (the gripper is a mocap body), so a world model need not learn it."""
  gripper = obs[..., OBS_LAYOUT["gripper_pos"]]
  target = jnp.clip(gripper + MAX_STEP * action[..., :3], WORKSPACE_LO, WORKSPACE_HI)
  return jnp.concatenate([target, (action[..., 3:4] > 0.0).astype(target.dtype)], axis=-1)


def _nearest_within(obs, point, radius):
  """One-hot [..., V] of the vertex nearest `point` [..., 3], zeros if it is radius or farther."""
  dist = jnp.linalg.norm(vertices(obs) - point[..., None, :], axis=-1)  # [..., V]
  nearest = jax.nn.one_hot(jnp.argmin(dist, axis=-1), N_VERTS, dtype=obs.dtype)
  return nearest * (jnp.min(dist, axis=-1) < radius)[..., None]


def _closed(obs):
  return obs[..., OBS_LAYOUT["gripper_closed"]][..., 0] > 0.5


def held_vertex(obs, action):
  """One-hot [..., V] of the vertex the gripper holds over this step (zeros if none).

  The simulator's rule, read from the observation: a closing gripper pinches the nearest
  vertex within PINCH_RADIUS of where it goes; a closed gripper keeps the vertex at its centre
  (a held vertex sits within about 8 mm of it); opening lets go.
  """
  closing = _nearest_within(obs, commanded(obs, action)[..., :3], PINCH_RADIUS)
  held = jnp.where(_closed(obs)[..., None], pinch_at(obs), closing)
  return held * (action[..., 3] > 0.0)[..., None]


def pinch_at(obs):
  """One-hot [..., V] of the vertex a closed gripper holds at an observation (zeros if open or
  holding nothing): the best guess of the simulator's pinch where its history is unknown (the
  nearest vertex within HOLD_RADIUS); exact at a reset, where the gripper is open."""
  held = _nearest_within(obs, obs[..., OBS_LAYOUT["gripper_pos"]], HOLD_RADIUS)
  return held * _closed(obs)[..., None]


def next_pinch(pinch, obs, action):
  """One-hot [..., V] of the vertex pinched after `action` from `obs`, as the simulator does it
  (`ClothFoldEnv._set_grip`): closing an open gripper pinches the vertex nearest its target if
  within PINCH_RADIUS; a gripper that stays closed keeps its pinch; opening lets go."""
  new = _nearest_within(obs, commanded(obs, action)[..., :3], PINCH_RADIUS)
  kept = jnp.where(_closed(obs)[..., None], pinch, new)
  return kept * (action[..., 3] > 0.0)[..., None]


def pinch_features(pinch, obs):
  """What a world model's network sees of the pinch [..., V + 3]: which vertex is held, and
  the gripper's pull on it (gripper minus held vertex, in HOLD_RADIUS units; zero if none)."""
  held = jnp.einsum("...v,...vk->...k", pinch, vertices(obs))
  pull = (obs[..., OBS_LAYOUT["gripper_pos"]] - held) * jnp.sum(pinch, -1, keepdims=True)
  return jnp.concatenate([pinch, pull / HOLD_RADIUS], axis=-1)


def fold_line_frame(obs):
  """(origin [..., 3], rotation [..., 3, 3]) of the frame on the fold line: origin at the
  midpoint of the two hinge corners (on the table top, z = 0), x axis along the line from
  HINGE[0] to HINGE[1] in the horizontal plane. Rows of `rotation` are the frame's axes in
  world coordinates, so `rotation @ (p - origin)` is a world point p in the frame.

  The cloth's physics is the same in every such frame (a flat table, gravity along z, a
  gripper that moves the same in any direction), so a world model working in it need not learn
  every yaw and shift of the cloth apart. The hinge corners, not a fit to the whole cloth: they
  stay on the table while corner A is carried over, so the frame holds still through a fold.
  """
  verts = vertices(obs)
  first, second = verts[..., HINGE[0], :], verts[..., HINGE[1], :]
  along = second[..., :2] - first[..., :2]
  length = jnp.linalg.norm(along, axis=-1, keepdims=True)
  along = jnp.where(length > 1e-6, along / jnp.maximum(length, 1e-6), jnp.array([1.0, 0.0]))
  c, s = along[..., 0], along[..., 1]
  zero, one = jnp.zeros_like(c), jnp.ones_like(c)
  rotation = jnp.stack([jnp.stack([c, s, zero], -1), jnp.stack([-s, c, zero], -1),
                        jnp.stack([zero, zero, one], -1)], -2)
  middle = 0.5 * (first[..., :2] + second[..., :2])
  origin = jnp.concatenate([middle, jnp.zeros_like(middle[..., :1])], axis=-1)
  return origin, rotation


def stays_still(previous, obs, action):
  """bool [...]: the cloth does not move over this step, by the simulator's physics.

  The gripper is visual-only, so nothing but a pinch moves the cloth: a cloth that no vertex
  of moved more than REST_SPEED over the last step, and that nothing holds over this one,
  lies at rest on the table and stays exactly there. (In the recorded episodes such a
  step moves no vertex by more than 0.1 mm; the first step after a reset settles 0.2 mm.)
  """
  moved = jnp.linalg.norm(vertices(obs) - vertices(previous), axis=-1).max(-1)
  return (moved < REST_SPEED) & ~jnp.any(held_vertex(obs, action) > 0, axis=-1)


def _move(gripper, target):
  """dx, dy, dz [3] that steer the gripper toward target (clipped to one step)."""
  return jnp.clip((target - gripper) / MAX_STEP, -1.0, 1.0)


def _approach(gripper, corner):
  """Move [3] and close flag: over A at hover height, descending as A comes under it."""
  h_dist = jnp.linalg.norm(corner[:2] - gripper[:2])
  target = corner + jnp.array([0.0, 0.0, 1.0]) * jnp.minimum(_HOVER, 2.0 * h_dist)
  close = jnp.linalg.norm(corner - gripper) < _GRASP_TOL
  return _move(gripper, target), close


def _carry(gripper, corner, goal, hinge):
  """Move [3] that swings A over the fold line onto B, as a page turns.

  The fold line runs through the other two corners; `hinge` is its midpoint, which stays on
  the table. A follows a half ellipse about it (angle 0 at the start, pi over B), so the
  lifted half hangs from A instead of dragging the half that stays down.
  """
  to_goal = goal[:2] - hinge[:2]
  radius = jnp.maximum(jnp.linalg.norm(to_goal), 0.02)
  axis = to_goal / radius  # [2] horizontal, hinge -> B.
  along = jnp.dot(corner[:2] - hinge[:2], axis)  # -radius at the start, +radius over B.
  height = corner[2] - goal[2]
  angle = jnp.arctan2(height / _ARC_ASPECT, -along)
  angle = jnp.minimum(angle + _ARC_STEP / radius, jnp.pi)
  target = jnp.concatenate([hinge[:2] - axis * radius * jnp.cos(angle),
                            goal[2:] + _ARC_ASPECT * radius * jnp.sin(angle)])
  target = target.at[2].max(goal[2] + _PLACE_HEIGHT)
  return _move(gripper, gripper + target - corner)


def expert_action(obs, rng):
  """The scripted fold, [4]; its phase is read off the observation alone (no memory).

  holding A: carry it over B along an arc, then open once it is placed;
  closed but not holding A (missed, or pinched another vertex): open;
  open: approach and grasp A, unless A already lies on B (then rise and wait).
  """
  del rng  # noise-free; TaskFns.expert adds noise.
  gripper, closed, verts = _split(obs)
  corner, goal = verts[CORNER_A], verts[CORNER_B]
  hinge = 0.5 * (verts[HINGE[0]] + verts[HINGE[1]])
  holding = closed & (jnp.linalg.norm(corner - gripper) < HOLD_RADIUS)
  placed = ((jnp.linalg.norm(corner[:2] - goal[:2]) < _PLACE_XY)
            & (corner[2] - goal[2] < _PLACE_Z))
  folded = jnp.linalg.norm(corner - goal) < SUCCESS_DIST
  approach_move, close = _approach(gripper, corner)
  still, rise = jnp.zeros(3), jnp.array([0.0, 0.0, 0.5])
  move = jnp.where(holding, jnp.where(placed, still, _carry(gripper, corner, goal, hinge)),
                   jnp.where(closed, still, jnp.where(folded, rise, approach_move)))  # [3]
  grip = jnp.where(holding, ~placed, ~closed & ~folded & close)
  return jnp.concatenate([move, jnp.where(grip, 1.0, -1.0)[None]])  # [4]


TASK = TaskFns(
    name="cloth_fold",
    obs_dim=OBS_DIM,
    action_dim=4,
    max_steps=MAX_STEPS,
    obs_layout=OBS_LAYOUT,
    success=success,
    progress=progress,
    expert_action=expert_action,
)


# ---------------------------------------------------------------- the simulator


def load_model() -> mujoco.MjModel:
  """The scene, with every pinch anchored at the gripper centre and the vertex centre."""
  model = mujoco.MjModel.from_xml_path(XML_PATH)
  pinch = pinch_ids(model)
  model.eq_data[pinch, :6] = 0.0  # anchor in gripper frame, anchor in vertex frame.
  return model


def pinch_ids(model: mujoco.MjModel) -> np.ndarray:
  """Equality ids [64] of the pinches, by vertex."""
  return np.array([mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_EQUALITY, f"pinch_{i}")
                   for i in range(N_VERTS)])


def vertex_bodies(model: mujoco.MjModel) -> np.ndarray:
  """Body ids [64] of the cloth vertices, in vertex order."""
  return model.flex_vertbodyid[model.flex_vertadr[0]:][:N_VERTS]


def vertex_qpos_ids(model: mujoco.MjModel) -> np.ndarray:
  """qpos addresses [64, 3] of each vertex body's x, y, z slide joints (world axes)."""
  first = model.jnt_qposadr[model.body_jntadr[vertex_bodies(model)]]  # [64]
  return first[:, None] + np.arange(3)[None, :]


def vertex_dof_ids(model: mujoco.MjModel) -> np.ndarray:
  """qvel addresses [64, 3] of the same joints."""
  first = model.jnt_dofadr[model.body_jntadr[vertex_bodies(model)]]  # [64]
  return first[:, None] + np.arange(3)[None, :]


def _yaw(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class ClothFoldEnv(TaskEnv):
  """The cloth scene behind TASK: reset, step, render, and render an observation."""

  def __init__(self, max_steps: int | None = None, camera: Camera = CAMERA):
    super().__init__(TASK, max_steps)
    self.model = load_model()
    self.data = mujoco.MjData(self.model)
    self._scratch = mujoco.MjData(self.model)  # render_obs writes here, never in `data`.
    self._pinch = pinch_ids(self.model)  # [64]
    self._vert_qpos = vertex_qpos_ids(self.model)  # [64, 3]
    self._vert_dofs = vertex_dof_ids(self.model)  # [64, 3]
    self._vert_pos0 = self.model.body_pos[vertex_bodies(self.model)].copy()  # [64, 3] at qpos 0.
    self._gripper_geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "gripper")
    self._camera = camera
    self._renderer = None
    self._closed = False

  # -- physics

  def _reset(self, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shift = np.append(rng.uniform(-CLOTH_SHIFT, CLOTH_SHIFT, 2), 0.0)
    verts = self._vert_pos0 @ _yaw(rng.uniform(-CLOTH_YAW, CLOTH_YAW)).T + shift  # [64, 3]
    gripper = GRIPPER_HOME + rng.uniform(-1.0, 1.0, 3) * GRIPPER_JITTER
    return self._place(gripper, verts)

  def _step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
    start = self.data.mocap_pos[0].copy()
    target = np.clip(start + MAX_STEP * action[:3], WORKSPACE_LO, WORKSPACE_HI)
    self._set_grip(bool(action[3] > 0.0), target)
    for k in range(1, SUBSTEPS + 1):  # glide, so a pinched vertex is not yanked.
      self.data.mocap_pos[0] = start + (target - start) * (k / SUBSTEPS)
      mujoco.mj_step(self.model, self.data)
    return self._obs(), self._sim_success()

  def _set_grip(self, closed: bool, at: np.ndarray):
    """Closing pinches the nearest vertex within PINCH_RADIUS of `at`; opening lets go."""
    if closed and not self._closed:
      dist = np.linalg.norm(self.data.flexvert_xpos - at, axis=1)  # [64]
      nearest = int(np.argmin(dist))
      if dist[nearest] < PINCH_RADIUS:
        self.data.eq_active[self._pinch[nearest]] = 1
    elif not closed:
      self.data.eq_active[self._pinch] = 0
    self._closed = closed

  def pinched_vertex(self) -> int:
    """The vertex the gripper holds now, or -1."""
    active = np.flatnonzero(self.data.eq_active[self._pinch])
    return int(active[0]) if active.size else -1

  def place(self, obs) -> np.ndarray:
    """Puts the scene at an observation with an open gripper, nothing pinched and nothing
    moving (a reset to a given state: a mirrored start, a world model's state), and returns
    the observation as the simulator holds it. Call it after reset(), which starts the
    episode's step count."""
    obs = check_observation(obs, OBS_DIM)
    if obs[OBS_LAYOUT["gripper_closed"]][0] > 0.5:
      raise ValueError("place() puts the scene at rest with the gripper open; this "
                       "observation has it closed (gripper_closed = 1)")
    return self._place(obs[OBS_LAYOUT["gripper_pos"]],
                       obs[OBS_LAYOUT["cloth_verts"]].reshape(N_VERTS, 3))

  def _place(self, gripper, verts) -> np.ndarray:
    mujoco.mj_resetData(self.model, self.data)
    self._write_pose(self.data, gripper, verts)
    self.data.eq_active[self._pinch] = 0
    self._closed = False
    mujoco.mj_forward(self.model, self.data)
    return self._obs()

  def nudge_vertices(self, offsets: np.ndarray) -> np.ndarray:
    """Moves every vertex by offsets [64, 3] metres (velocities kept) and returns the new
    observation: how sensitive the cloth is to a small error (experiments/cloth_sensitivity)."""
    self.data.qpos[self._vert_qpos] += np.asarray(offsets).reshape(N_VERTS, 3)
    mujoco.mj_forward(self.model, self.data)
    return self._obs()

  def set_vertex_velocities(self, velocities: np.ndarray) -> None:
    """Sets every vertex's velocity [64, 3] (m/s; positions kept): the simulator restarted
    from what observations show of its state (experiments/cloth_sensitivity)."""
    self.data.qvel[self._vert_dofs] = np.asarray(velocities).reshape(N_VERTS, 3)
    mujoco.mj_forward(self.model, self.data)

  def _sim_success(self) -> bool:
    """The simulator's own verdict, from MuJoCo's state (not from the observation)."""
    verts = self.data.flexvert_xpos
    return bool(np.linalg.norm(verts[CORNER_A] - verts[CORNER_B]) < SUCCESS_DIST
                and not self._closed)

  def _obs(self) -> np.ndarray:
    return np.concatenate([self.data.mocap_pos[0], [float(self._closed)],
                           self.data.flexvert_xpos.ravel()]).astype(np.float32)

  def _write_pose(self, data: mujoco.MjData, gripper, verts):
    """Places the gripper and every cloth vertex (world metres) in `data`."""
    data.mocap_pos[0] = gripper
    data.qpos[self._vert_qpos] = verts - self._vert_pos0

  # -- rendering

  def render(self) -> np.ndarray:
    """uint8 [128, 128, 3] of the simulator now."""
    return self._render(self.data, self._closed)

  def render_obs(self, obs) -> np.ndarray:
    """uint8 [128, 128, 3] of an observation, posed in a scratch copy of the scene."""
    obs = check_observation(obs, OBS_DIM)
    verts = obs[OBS_LAYOUT["cloth_verts"]].reshape(N_VERTS, 3)
    self._write_pose(self._scratch, obs[OBS_LAYOUT["gripper_pos"]], verts)
    mujoco.mj_forward(self.model, self._scratch)  # vertex, flex and light poses.
    return self._render(self._scratch, bool(obs[OBS_LAYOUT["gripper_closed"]][0] > 0.5))

  def _render(self, data: mujoco.MjData, closed: bool) -> np.ndarray:
    if self._renderer is None:
      self._renderer = Renderer(self.model, self._camera)
    self.model.geom_rgba[self._gripper_geom] = RGBA_CLOSED if closed else RGBA_OPEN
    return self._renderer.render(data)

  def close(self):
    if self._renderer is not None:
      self._renderer.close()
      self._renderer = None


def make_env(**kwargs) -> ClothFoldEnv:
  return ClothFoldEnv(**kwargs)
