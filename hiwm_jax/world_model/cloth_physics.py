"""The cloth's physics written out, as a prior the world model's network corrects.

The simulator's cloth (envs/assets/cloth_fold.xml) is simple physics: an 8x8 grid of point
masses joined by inextensible edges (along both grid axes and one diagonal a square), no
bending stiffness, light damping, friction on a table plane, and a pinch that pulls one vertex
to the gripper. Position-based dynamics (Mueller et al. 2007) steps that in a few lines of
dense array code, so while the gripper holds the cloth the network need only learn what this
misses (the soft constraints' give, the pinch's lag) instead of the whole carry.

Everything is a pure function of raw observations [..., D] (task units), vectorized over
leading axes and built from slices and reshapes (no gathers), so it runs inside the
multi-step training loss at every unrolled step. Its gradient, when training wants one
(`world_model.physics_gradient`), comes from GRADIENT_SURROGATE: the same physics, cheaper.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hiwm_jax.envs import cloth_fold

N = cloth_fold.N_SIDE
GRAVITY = -9.81  # m/s^2, along z
CONTROL_STEP = 0.004 * cloth_fold.SUBSTEPS  # seconds: the simulator's control step


@dataclasses.dataclass(frozen=True)
class Physics:
  """The constants of the prior; fitted to recorded episodes by experiments/fit_cloth_physics.

  Attributes:
    damping: 1/s, velocity decay rate (the joints' damping over a vertex mass, and more: it
      stands in for the energy the simulator's soft constraints absorb).
    pin_rate: share of the gap to the gripper a pinched vertex closes per solver iteration.
    substeps: physics steps per control step (the simulator takes 12; fewer cost less, but
      friction and the pinch then act less often than the simulator's, and the carry drifts).
    iterations: constraint-solver passes per physics step.
    friction: Coulomb coefficient between vertex and table.
    rest_height: metres; a vertex on the table rests its centre this high.
  """
  damping: float = 40.0
  pin_rate: float = 0.6
  substeps: int = 12
  iterations: int = 4
  friction: float = 1.0
  rest_height: float = 0.0028


# The physics whose gradient stands in for the prior's through a multi-step unroll: one
# substep, one solver pass, no friction (core.WorldModel.prior_change). Through all 12 x 4
# passes the gradient costs 13 times the step; one substep with four passes took the cloth's
# training gradient norm to 10^6-10^9 (large steps, stiff projections), and friction's Coulomb
# bound divides by a slide that vanishes at rest. With this one the gradient's norm stayed at
# 0.13-0.15 through training (the plain MLP's: 0.15-0.29; results/world_model).
GRADIENT_SURROGATE = dict(substeps=1, iterations=1, friction=0.0)


def _norm(x, axis):
  """|x| along axis (kept), with a finite gradient at zero (a vertex at rest)."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), 1e-24))


def edges() -> list[tuple[int, int]]:
  """The grid's edges as (vertex, vertex) pairs: what the simulator's flexcomp builds."""
  out = []
  for ix in range(N):
    for iy in range(N):
      for dx, dy in ((0, 1), (1, 0), (1, 1)):
        if ix + dx < N and iy + dy < N:
          out.append((ix * N + iy, (ix + dx) * N + iy + dy))
  return out


# Inside, arrays are batch-minor: a grid [N, N, 3, B] (ix, iy, xyz, batch), so every slice is
# a block of whole batch rows and every update vectorizes over the batch (3x faster on CPU
# than xyz-minor [B, N, N, 3]).


def _project(lo, hi, rest):
  """Moves both ends of edges lo -> hi [.., .., 3, B] halfway each to restore length `rest`."""
  d = hi - lo
  length = _norm(d, 2)
  corr = 0.5 * (length - rest) * d / jnp.maximum(length, 1e-9)
  return corr, -corr


def _interleave(lo, hi, axis, start):
  """Changes lo, hi of the vertices start, start+2, ... and start+1, start+3, ... along grid
  `axis` (0: ix, 1: iy), as a change of the whole axis (N long; zero elsewhere)."""
  both = jnp.stack([lo, hi], axis=axis + 1)
  both = both.reshape(lo.shape[:axis] + (2 * lo.shape[axis],) + lo.shape[axis + 1:])
  pad = [(0, 0)] * lo.ndim
  pad[axis] = (start, N - start - both.shape[axis])
  return jnp.pad(both, pad)


def _solve_edges(grid):
  """One Gauss-Seidel pass over the edges of grid [N, N, 3, B] in six groups that share no
  vertex (each direction; pairs starting at even, then odd indices), so each group is one
  dense update of slices."""
  spacing = cloth_fold.SPACING
  for axis in (1, 0):  # edges along iy, then along ix
    for start in (0, 1):
      m = len(range(start, N - 1, 2))
      lo = jax.lax.slice_in_dim(grid, start, start + 2 * m - 1, 2, axis)
      hi = jax.lax.slice_in_dim(grid, start + 1, start + 2 * m, 2, axis)
      grid = grid + _interleave(*_project(lo, hi, spacing), axis, start)
  for start in (0, 1):  # the diagonals (ix, iy) -> (ix + 1, iy + 1)
    m = len(range(start, N - 1, 2))
    lo = jax.lax.slice_in_dim(grid, start, start + 2 * m - 1, 2, 0)[:, :N - 1]
    hi = jax.lax.slice_in_dim(grid, start + 1, start + 2 * m, 2, 0)[:, 1:]
    lo, hi = _project(lo, hi, spacing * 2 ** 0.5)
    rest = [(0, 0), (0, 0)]
    lo = jnp.pad(lo, [(0, 0), (0, 1)] + rest)
    hi = jnp.pad(hi, [(0, 0), (1, 0)] + rest)
    grid = grid + _interleave(lo, hi, 0, start)
  return grid


def _substep(x, v, gripper, pinch, p: Physics):
  """One physics step of vertices x and velocities v [N, N, 3, B], with the gripper at
  [3, B] and the pinch [N, N, 1, B]."""
  dt = CONTROL_STEP / p.substeps
  v = v * jnp.exp(-p.damping * dt) + jnp.array([0.0, 0.0, GRAVITY])[:, None] * dt
  free = x + v * dt
  table = jnp.array([0.0, 0.0, 1.0])[:, None]  # [3, 1]: the z row

  def solve(_, q):  # the edges, the pinch, the table
    q = _solve_edges(q)
    q = q + p.pin_rate * pinch * (gripper - q)
    return q + table * jnp.maximum(p.rest_height - q, 0.0)

  q = jax.lax.fori_loop(0, p.iterations, solve, free)  # a loop, not unrolled: small programs
  # Friction on the table: the sliding it allows shrinks by friction x how far the table
  # pushed the vertex up (a Coulomb bound on the tangential impulse), to a stop.
  on_table = q[:, :, 2:] <= p.rest_height + 1e-6  # [N, N, 1, B]
  pushed = jnp.maximum(p.rest_height - free[:, :, 2:], 0.0)
  slide = q[:, :, :2] - x[:, :, :2]
  norm = _norm(slide, 2)
  keep = jnp.where(on_table, jnp.maximum(0.0, 1.0 - p.friction * pushed /
                                         jnp.maximum(norm, 1e-12)), 1.0)
  q = jnp.concatenate([x[:, :, :2] + slide * keep, q[:, :, 2:]], axis=2)
  return q, (q - x) / dt


def next_vertices(previous, obs, action, pinch, physics: Physics = Physics()):
  """The cloth's vertices [..., V, 3] after `action` [..., A] from observation `obs` [..., D]
  (the one before it: `previous`, for the velocity), with `pinch` [..., V] the vertex held
  over the step (cloth_fold.next_pinch). The gripper glides to its commanded target over the
  substeps, as the simulator moves it."""
  batch = obs.shape[:-1]
  inside = lambda a, k: jnp.moveaxis(a.reshape(-1, N, N, k), 0, -1)  # [..., V*k] -> [N,N,k,B]
  start = obs[..., cloth_fold.OBS_LAYOUT["gripper_pos"]].reshape(-1, 3).T  # [3, B]
  target = cloth_fold.commanded(obs, action)[..., :3].reshape(-1, 3).T
  x = inside(obs[..., cloth_fold.OBS_LAYOUT["cloth_verts"]], 3)
  v = (x - inside(previous[..., cloth_fold.OBS_LAYOUT["cloth_verts"]], 3)) / CONTROL_STEP
  held = inside(pinch, 1)
  n = physics.substeps

  def substep(carry, k):
    return _substep(*carry, start + (target - start) * (k / n), held, physics), None

  x = jax.lax.scan(substep, (x, v), jnp.arange(1, n + 1, dtype=x.dtype))[0][0]
  return jnp.moveaxis(x, -1, 0).reshape(*batch, N * N, 3)


def project_edges(obs, pinch, passes: int):
  """obs [..., D] with its cloth moved back onto the edges' rest lengths by `passes`
  Gauss-Seidel passes (the held vertex, `pinch` [..., V], stays where it is); the gripper
  is untouched. The simulator's edges keep their length to about 0.1 mm, even while the
  cloth is carried; a network's prediction does not (about 2 mm off after 50 steps). Putting
  the shape right did not bring the cloth closer at 50 steps (results/world_model)."""
  batch = obs.shape[:-1]
  inside = lambda a, k: jnp.moveaxis(a.reshape(-1, N, N, k), 0, -1)  # [..., V*k] -> [N,N,k,B]
  verts = cloth_fold.OBS_LAYOUT["cloth_verts"]
  x = inside(obs[..., verts], 3)
  held = inside(pinch, 1) > 0
  q = jax.lax.fori_loop(0, passes, lambda _, q: jnp.where(held, x, _solve_edges(q)), x)
  q = jnp.moveaxis(q, -1, 0).reshape(*batch, 3 * N * N)
  return jnp.concatenate([obs[..., :verts.start], q, obs[..., verts.stop:]], axis=-1)


def next_observation(previous, obs, action, pinch, physics: Physics = Physics()):
  """The next observation [..., D] while the gripper holds a vertex: the gripper where it is
  commanded, the cloth by `next_vertices`. With nothing held, the cloth as it is (the network
  predicts that step whole): what then moves it is a fold settling onto itself, and this
  physics has no self-contact (a laid fold would sink through its lower half, about 2 mm of
  error a vertex a step), while a resting cloth needs no physics at all."""
  verts = next_vertices(previous, obs, action, pinch, physics)
  verts = verts.reshape(*verts.shape[:-2], -1)
  held = jnp.sum(pinch, axis=-1, keepdims=True) > 0
  return jnp.concatenate([cloth_fold.commanded(obs, action), jnp.where(
      held, verts, obs[..., cloth_fold.OBS_LAYOUT["cloth_verts"]])], axis=-1)
