"""Training windows: an observation history ending at step t and an action chunk starting there.

All episodes are concatenated into flat arrays once; a window is then three indices (its step,
its episode's first step, its episode's last real action), and a batch is one numpy gather.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np


class WindowSampler:
  """Windows of `history` observations and `chunk` actions over a set of RLDS episodes.

  A window starts at every step that has a real action (not an episode's final step). Before
  an episode's first step the history repeats the first observation; past its last real
  action the chunk repeats that action and `action_mask` is False.

  weights: optional [num_windows] sampling weights (e.g. up-weight interventions via
  `self.intervention`), in window order: episode by episode, step by step.
  """

  def __init__(self, episodes: Sequence[Mapping[str, Any]], *, history: int, chunk: int,
               weights=None):
    if history < 1 or chunk < 1:
      raise ValueError(f"history and chunk must be >= 1; got {history} and {chunk}")
    steps = [ep["steps"] for ep in episodes]
    if not steps:
      raise ValueError("WindowSampler needs at least one episode")
    self.history, self.chunk = history, chunk
    self._obs = np.concatenate([s["observation"] for s in steps])  # [N, obs_dim]
    self._act = np.concatenate([s["action"] for s in steps])  # [N, A]
    labels = np.concatenate([s["intervention"] for s in steps])  # [N]
    num_actions = np.array([len(s["observation"]) - 1 for s in steps])  # [E] T of each
    first_step = np.cumsum(num_actions + 1) - num_actions - 1  # [E] flat index of step 0
    first_window = np.cumsum(num_actions) - num_actions  # [E]
    self.episode = np.repeat(np.arange(len(steps)), num_actions)  # [W] episode of a window
    self.step = np.arange(num_actions.sum()) - first_window[self.episode]  # [W] its t
    self._first = first_step[self.episode]  # [W] flat index of its episode's step 0
    self._index = self._first + self.step  # [W] flat index of step t
    self._last = self._first + num_actions[self.episode] - 1  # [W] ... of the last action
    self.intervention = labels[self._index]  # [W] label of step t
    self._p = None if weights is None else _probabilities(weights, len(self))

  def __len__(self) -> int:
    return len(self._index)

  def batch(self, windows) -> dict[str, np.ndarray]:
    """The windows with these indices [B] (into window order) as one batch."""
    windows = np.asarray(windows)
    t = self._index[windows][:, None]  # [B, 1]
    obs_idx = np.maximum(t + np.arange(1 - self.history, 1), self._first[windows][:, None])
    act_idx = t + np.arange(self.chunk)  # [B, H]
    last = self._last[windows][:, None]  # [B, 1]
    return {
        "observation": self._obs[obs_idx],  # [B, h, obs_dim]
        "action": self._act[np.minimum(act_idx, last)],  # [B, H, A]
        "action_mask": act_idx <= last,  # [B, H]
        "intervention": self.intervention[windows],  # [B]
    }

  def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of windows drawn with replacement (by weight, if given)."""
    windows = rng.choice(len(self), size=batch_size, p=self._p)
    return self.batch(windows)

  def all_windows(self, batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Every window once, in order, in batches (the last one may be smaller)."""
    batch_size = batch_size or len(self)
    for start in range(0, len(self), batch_size):
      yield self.batch(np.arange(start, min(start + batch_size, len(self))))


def _probabilities(weights, n: int) -> np.ndarray:
  w = np.asarray(weights, np.float64)
  if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f"weights must be {n} finite non-negative numbers, not all zero; got "
                     f"shape {w.shape}")
  return w / w.sum()
