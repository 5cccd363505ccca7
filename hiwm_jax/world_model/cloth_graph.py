"""A message-passing network over the cloth's vertex grid: the cloth_fold world model's network.

An MLP over all 196 numbers must learn the same physics 64 times, from absolute positions; here
one small network is shared by every vertex and every edge of the 8x8 grid, and it sees only
what cloth physics depends on: each vertex's velocity and height, its neighbours' relative
positions against their rest lengths, and whether the gripper holds it (and where to).
So a fold learned at one corner and one pose is the same computation at another.

Units: positions in grid spacings (3 cm), so features and outputs are O(1). The output is
each vertex's change over the step; the world model's structure commands the gripper.
Measured against the MLP (results/world_model/README.md): as accurate at 1 to 50 steps, no
better at judging success, and far slower on a CPU, so it is an option (config arg `graph`).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from hiwm_jax.envs import cloth_fold

SCALE = cloth_fold.SPACING  # metres per feature unit
_OFFSETS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1),  # stretch, shear
            (2, 0), (-2, 0), (0, 2), (0, -2))  # bending


def _neighbour_mask() -> np.ndarray:
  """[V, K] bool: vertex v has a neighbour at offset k (not past the border)."""
  n = cloth_fold.N_SIDE
  ix, iy = np.divmod(np.arange(n * n), n)
  return np.stack([(0 <= ix + dx) & (ix + dx < n) & (0 <= iy + dy) & (iy + dy < n)
                   for dx, dy in _OFFSETS], axis=-1)


NEIGHBOUR_MASK = _neighbour_mask()
REST_LENGTH = np.hypot(*np.array(_OFFSETS, np.float32).T)  # [K] in spacings


def neighbours(x):
  """[..., V, C] -> [..., V, K, C]: each vertex's neighbour at every offset (zeros past the
  border), by padding the grid and slicing it once per offset."""
  n, pad = cloth_fold.N_SIDE, 2
  grid = x.reshape(*x.shape[:-2], n, n, x.shape[-1])
  widths = [(0, 0)] * (grid.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)]
  padded = jnp.pad(grid, widths)
  shifted = [padded[..., pad + dx:pad + dx + n, pad + dy:pad + dy + n, :] for dx, dy in _OFFSETS]
  return jnp.stack(shifted, axis=-2).reshape(*x.shape[:-1], len(_OFFSETS), x.shape[-1])


def graph_inputs(history, action):
  """(nodes [..., V, 8], edges [..., V, K, 8]) from raw observations [..., h, D] and the
  action [..., A]. Nodes: velocity, height, held flag, the held vertex's pull toward the
  gripper's next position. Edges (neighbour minus vertex): relative position, its length and
  its rest length, relative velocity."""
  last = history[..., -1, :]
  verts = cloth_fold.vertices(last) / SCALE  # [..., V, 3]
  velocity = (verts - cloth_fold.vertices(history[..., -2, :]) / SCALE
              if history.shape[-2] > 1 else jnp.zeros_like(verts))
  held = cloth_fold.held_vertex(last, action)[..., None]  # [..., V, 1]
  target = cloth_fold.commanded(last, action)[..., None, :3] / SCALE
  nodes = jnp.concatenate([velocity, verts[..., 2:3], held, held * (target - verts)], axis=-1)
  rel = neighbours(verts) - verts[..., :, None, :]  # [..., V, K, 3]
  rel_velocity = neighbours(velocity) - velocity[..., :, None, :]
  length = jnp.linalg.norm(rel, axis=-1, keepdims=True)
  rest = jnp.broadcast_to(jnp.asarray(REST_LENGTH)[:, None], length.shape)
  edges = jnp.concatenate([rel, length, rest, rel_velocity], axis=-1)
  return nodes, edges


def vertex_delta_to_obs(delta, obs_dim: int):
  """Per-vertex change [..., V, 3] (spacings) -> the observation's change [..., D] (metres);
  zero outside the cloth (the gripper is commanded)."""
  out = jnp.zeros((*delta.shape[:-2], obs_dim), delta.dtype)
  return out.at[..., cloth_fold.OBS_LAYOUT["cloth_verts"]].set(
      delta.reshape(*delta.shape[:-2], -1) * SCALE)


def _mlp(width: int, x):
  x = nn.gelu(nn.Dense(width)(x))
  return nn.LayerNorm()(nn.Dense(width)(x))


class GraphMember(nn.Module):
  """Encode nodes and edges, `rounds` of message passing over the grid, decode each vertex.

  A message is gelu(A e + B h_sender + C h_receiver), summed over the neighbours, then mixed
  at the vertex: the same function as an MLP on [e, h_sender, h_receiver] with one hidden
  layer, at a quarter of the per-edge work (the edges are 12x the vertices).
  """
  width: int
  rounds: int

  @nn.compact
  def __call__(self, nodes, edges):
    h = _mlp(self.width, nodes)  # [..., V, W]
    e = _mlp(self.width, edges)  # [..., V, K, W], encoded once: the geometry of this step
    mask = jnp.asarray(NEIGHBOUR_MASK, h.dtype)[..., None]
    for _ in range(self.rounds):
      sender = nn.Dense(self.width, use_bias=False)(h)
      receiver = nn.Dense(self.width, use_bias=False)(h)
      messages = nn.gelu(nn.Dense(self.width)(e) + neighbours(sender) + receiver[..., None, :])
      h = h + _mlp(self.width, jnp.concatenate([h, jnp.sum(messages * mask, axis=-2)], -1))
    # Zero-initialized head: an untrained model predicts "nothing moves" (the copy baseline).
    return nn.Dense(3, kernel_init=nn.initializers.zeros)(nn.gelu(nn.Dense(self.width)(h)))


class GraphEnsemble(nn.Module):
  """E members; inputs carry a leading member axis [E, ...] like model.Ensemble's."""
  size: int
  width: int
  rounds: int

  @nn.compact
  def __call__(self, nodes, edges):
    members = nn.vmap(GraphMember, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=0, out_axes=0, axis_size=self.size)
    return members(self.width, self.rounds, name="members")(nodes, edges)
