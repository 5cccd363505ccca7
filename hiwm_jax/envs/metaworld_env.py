"""Meta-World (v3, goal observable) tasks as hiwm_jax tasks.

The observation is Meta-World's own 39-d vector, as float32 (`OBS_LAYOUT`). Meta-World's
goal-observable classes freeze the layout randomization after construction; we unfreeze it
and seed its own generator, so every seed gives its own, reproducible layout.
"""
from __future__ import annotations

import copy
import functools
import warnings

import jax.numpy as jnp
import mujoco
import numpy as np

from hiwm_jax.envs.base import TaskEnv, TaskFns, check_observation
from hiwm_jax.envs.rendering import Camera, Renderer

OBS_DIM = 39
ACTION_DIM = 4  # hand dx, dy, dz (scaled by Meta-World to 1 cm), gripper effort; all in [-1, 1]
OBS_LAYOUT = {
    "hand_pos": slice(0, 3),  # tool centre point, world metres
    "gripper_opening": slice(3, 4),  # finger-pad distance / 0.1, clipped to [0, 1]
    "object_pos": slice(4, 7),
    "object_quat": slice(7, 11),  # (w, x, y, z)
    "object2_pad": slice(11, 18),  # second object pos + quat: zeros in these tasks
    "previous_frame": slice(18, 36),  # the previous step's [0:18]
    "goal_pos": slice(36, 39),
}
CAMERA = Camera(lookat=(0.0, 0.7, 0.1), distance=1.1, azimuth=140.0, elevation=-35.0)
_SETTLE_STEPS = 40  # physics steps for the arm to follow the observed hand in render_obs
_HAND_QUAT = np.array([1.0, 0.0, 1.0, 0.0]) / np.sqrt(2.0)  # Meta-World keeps the hand pointing down
_MOCAP_TO_HAND_AT_REST = np.array([0.002, -0.002, 0.0045])  # mocap minus 'hand' body, at rest
# The hand is welded to a mocap target that the actions move exactly: target += ACTION_SCALE *
# clip(action[:3]), clipped to [MOCAP_LOW, MOCAP_HIGH] (Meta-World's own constants). The
# observation shows the hand, which lags the target by 2-3 cm while it moves; the target
# itself follows from the actions alone (`reset_mocap`, `next_mocap`).
ACTION_SCALE = 0.01
MOCAP_LOW = np.array([-0.5, 0.4, 0.05], np.float32)
MOCAP_HIGH = np.array([0.5, 1.0, 0.5], np.float32)
MOCAP_MINUS_HAND_AT_RESET = np.array([-0.004584, -0.001388, 0.004857], np.float32)  # measured
REST_SPEED = 1e-4  # metres per step: an object slower than this is at rest.
HAND_CLEARANCE = 0.10  # metres from the hand beyond which nothing touches a resting object.


def object_goal_distance(obs):
  return jnp.linalg.norm(obs[..., 4:7] - obs[..., 36:39], axis=-1)


def reset_mocap(obs):
  """The mocap target [..., 3] at a reset observation (the hand has settled under it)."""
  return obs[..., 0:3] + MOCAP_MINUS_HAND_AT_RESET


def next_mocap(mocap, action):
  """The mocap target [..., 3] after an action, exactly as Meta-World moves it."""
  step = ACTION_SCALE * jnp.clip(action[..., :3], -1.0, 1.0)
  return jnp.clip(mocap + step, MOCAP_LOW, MOCAP_HIGH)


def object_stays_still(previous, obs, action):
  """bool [...]: the object does not move over this step, by the simulator's physics.

  Nothing but the arm moves the object, so an object at rest (moved less than REST_SPEED over
  the last step) with the hand more than HAND_CLEARANCE away stays where it is. Measured on
  push's 369 recorded episodes: on such steps it moves at most 0.27 mm (99.9% under 0.11 mm);
  freezing it there shifts an episode's object by at most 1.1 mm. The margin matters: at 6 cm the hand reaches the
  object within the step.
  """
  del action  # one step of the hand (about 1 cm) cannot cross the clearance
  moved = jnp.linalg.norm(obs[..., 4:7] - previous[..., 4:7], axis=-1)
  clear = jnp.linalg.norm(obs[..., 0:3] - obs[..., 4:7], axis=-1) > HAND_CLEARANCE
  return (moved < REST_SPEED) & clear


def staged_progress(obs, success_radius: float, scale: float = 0.3):
  """1 at success; otherwise a quarter for reaching the object, the rest for its distance to goal."""
  reach = 1.0 - jnp.clip(jnp.linalg.norm(obs[..., 0:3] - obs[..., 4:7], axis=-1) / scale, 0, 1)
  place = 1.0 - jnp.clip((object_goal_distance(obs) - success_radius) / scale, 0, 1)
  return jnp.where(object_within(obs, success_radius), 1.0, 0.25 * reach + 0.75 * place)


def object_within(obs, radius: float):
  """bool [...]: the object within `radius` metres of the goal (a task's success)."""
  return object_goal_distance(obs) <= radius


def task_fns(name: str, success_radius: float, expert_action) -> TaskFns:
  """A Meta-World task's pure functions: success is the object within `success_radius` of the
  goal (the task's own Meta-World threshold), progress `staged_progress` toward it."""
  return TaskFns(name=name, obs_dim=OBS_DIM, action_dim=ACTION_DIM, max_steps=150,
                 obs_layout=OBS_LAYOUT,
                 success=functools.partial(object_within, radius=success_radius),
                 progress=functools.partial(staged_progress, success_radius=success_radius),
                 expert_action=expert_action)


def move_towards(hand, target, gain: float = 10.0):
  """Meta-World's proportional hand controller; the env clips to [-1, 1]."""
  return gain * (target - hand)


class MetaWorldEnv(TaskEnv):
  """A Meta-World v3 goal-observable environment behind the `TaskEnv` shell."""

  def __init__(self, task: TaskFns, metaworld_name: str, max_steps: int | None = None):
    super().__init__(task, max_steps)
    import metaworld  # Imported lazily: it is slow and only the simulator needs it.

    env_cls = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{metaworld_name}-goal-observable"]
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      self._env = env_cls()
    self._env._freeze_rand_vec = False  # pylint: disable=protected-access
    self._env.seeded_rand_vec = True
    self._env.max_path_length = self.max_steps
    self._renderer = None
    self._scratch = None  # (model, data) copy that render_obs draws observations into

  def _reset(self, seed: int) -> np.ndarray:
    self._env.seed(seed)
    obs, _ = self._env.reset()
    return obs

  def _step(self, action: np.ndarray):
    obs, _, _, _, info = self._env.step(action.astype(np.float32))
    return obs, info["success"] > 0

  @property
  def mocap_pos(self) -> np.ndarray:
    """The hand's mocap target [3] now (`next_mocap` predicts it from the actions)."""
    return self._env.data.mocap_pos[0].copy()

  def render(self) -> np.ndarray:
    return self._get_renderer().render(self._env.data)

  def render_obs(self, obs) -> np.ndarray:
    """Draws an observation: object and goal where observed; the arm is led to the observed
    hand through the mocap weld that drives it in the simulator (a few physics steps on a
    scratch copy of the scene, warm-started from the previous drawing). Reads nothing of
    the live simulation, so it draws a world model's prediction just the same."""
    obs = check_observation(obs, OBS_DIM)
    fresh = self._scratch is None
    model, data = self._scratch_scene()
    model.site_pos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "goal")] = obs[36:39]
    joint = model.joint("objjoint")
    obj_qpos = slice(joint.qposadr[0], joint.qposadr[0] + 7)  # free joint: pos + quat
    obj_qvel = slice(joint.dofadr[0], joint.dofadr[0] + 6)
    grip = 1.0 - 2.0 * np.clip(obs[3], 0.0, 1.0)  # opening 1 -> effort -1 (open)
    for _ in range(_SETTLE_STEPS * (5 if fresh else 1)):
      data.mocap_pos[0] = obs[0:3] + _MOCAP_TO_HAND_AT_REST
      data.mocap_quat[0] = _HAND_QUAT
      data.qpos[obj_qpos] = obs[4:11]
      data.qvel[obj_qvel] = 0.0
      data.ctrl[:] = [grip, -grip]
      mujoco.mj_step(model, data)
    data.qpos[obj_qpos] = obs[4:11]
    mujoco.mj_forward(model, data)
    return self._get_renderer().render(data)

  def _scratch_scene(self):
    if self._scratch is None:
      model = copy.deepcopy(self._env.model)
      data = mujoco.MjData(model)
      data.qpos[:] = self._env.init_qpos  # the arm's nominal pose, not the live state
      self._scratch = (model, data)
    return self._scratch

  def _get_renderer(self) -> Renderer:
    # One renderer serves the live and the scratch scene: the scene is drawn from `data`.
    if self._renderer is None:
      self._renderer = Renderer(self._env.model, CAMERA)
    return self._renderer

  def close(self):
    if self._renderer is not None:
      self._renderer.close()
      self._renderer = None
