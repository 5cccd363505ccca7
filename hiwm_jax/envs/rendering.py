"""Small, fast offscreen RGB rendering of a MuJoCo scene (shadows, reflections, MSAA off).

Headless machines need `MUJOCO_GL=egl` (or osmesa) in the environment before mujoco is
imported; `hiwm_jax.envs` sets egl as the default if nothing is set.
"""
from __future__ import annotations

import dataclasses
import weakref

import mujoco
import numpy as np


@dataclasses.dataclass(frozen=True)
class Camera:
  """A free camera looking at `lookat` (world metres) from a distance, azimuth, elevation."""
  lookat: tuple[float, float, float]
  distance: float
  azimuth: float
  elevation: float


class Renderer:
  """Renders `mujoco.MjData` of one model to uint8 [height, width, 3] with a fixed camera."""

  def __init__(self, model: mujoco.MjModel, camera: Camera, width: int = 128, height: int = 128):
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    self._renderer = mujoco.Renderer(model, height=height, width=width)
    # Free the GL context before interpreter teardown unloads EGL (else a noisy __del__).
    self.close = weakref.finalize(self, self._renderer.close)
    self._camera = mujoco.MjvCamera()
    self._camera.lookat[:] = camera.lookat
    self._camera.distance = camera.distance
    self._camera.azimuth = camera.azimuth
    self._camera.elevation = camera.elevation

  def render(self, data: mujoco.MjData) -> np.ndarray:
    self._renderer.update_scene(data, camera=self._camera)
    self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return self._renderer.render().copy()
