"""The world model's network: E independent residual MLPs (one flax param tree, leading axis E).

Each member maps (normalized observation history of the predicted dims, action) to the next
step's change of those dims in units of a typical step's change (`delta_std`), so its outputs
are O(1) whatever the task's scales.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Member(nn.Module):
  """One ensemble member: history [..., h, P] and action [..., A] -> delta [..., P]."""
  hidden: Sequence[int]
  out_dim: int

  @nn.compact
  def __call__(self, history, action):
    x = jnp.concatenate([history.reshape(*history.shape[:-2], -1), action], axis=-1)
    for width in self.hidden:
      x = nn.gelu(nn.LayerNorm()(nn.Dense(width)(x)))
    # Zero-initialized head: an untrained model predicts "nothing moves" (the copy baseline).
    return nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros)(x)


class Ensemble(nn.Module):
  """E members; inputs carry a leading member axis [E, ...] (bootstrapped batches differ)."""
  size: int
  hidden: Sequence[int]
  out_dim: int

  @nn.compact
  def __call__(self, history, action):
    members = nn.vmap(Member, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=0, out_axes=0, axis_size=self.size)
    return members(tuple(self.hidden), self.out_dim, name="members")(history, action)


def broadcast_members(x: jax.Array, size: int) -> jax.Array:
  """The same input for every member: [...] -> [E, ...]."""
  return jnp.broadcast_to(x, (size,) + x.shape)
