"""Per-dimension normalization statistics of observations and actions.

Stats are computed in one streaming pass (collection streams episodes, so the data may never
be in memory at once) and saved beside the dataset by `rlds.write_dataset`; this module is
only the math, `rlds` owns the file.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

# Floor on std and on (max - min). Constant dims (zero padding, a fixed quaternion) would
# otherwise turn a 1e-6 model error into a huge normalized value.
STD_FLOOR = 1e-3
FIELDS = ("observation", "action")


class _Moments:
  """Running count, mean, M2, min and max of rows [N, D], merged exactly (Chan et al.)."""

  def __init__(self):
    self.count, self.mean, self.m2, self.min, self.max = 0, 0.0, 0.0, np.inf, -np.inf

  def add(self, x: np.ndarray) -> None:
    x = np.asarray(x, np.float64)  # [N, D]
    n = x.shape[0]
    if n == 0:
      return
    mean = x.mean(0)
    m2 = ((x - mean) ** 2).sum(0)
    total = self.count + n
    delta = mean - self.mean
    self.mean = self.mean + delta * (n / total)
    self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
    self.min, self.max = np.minimum(self.min, x.min(0)), np.maximum(self.max, x.max(0))
    self.count = total

  def result(self) -> dict[str, Any]:
    f32 = lambda v: np.asarray(v, np.float32)
    std = np.maximum(np.sqrt(self.m2 / self.count), STD_FLOOR)
    return {"mean": f32(self.mean), "std": f32(std), "min": f32(self.min),
            "max": f32(self.max), "count": int(self.count)}


class StatsAccumulator:
  """Streams episodes into observation and action stats; `rlds.write_dataset` taps it."""

  def __init__(self):
    self._moments = {field: _Moments() for field in FIELDS}

  def add(self, episode: Mapping[str, Any]) -> None:
    steps = episode["steps"]
    self._moments["observation"].add(steps["observation"])  # [T+1, obs_dim]
    # The last step's action is an RLDS placeholder (zeros), not something the robot did.
    self._moments["action"].add(steps["action"][:-1])  # [T, A]

  def result(self) -> dict[str, dict[str, Any]]:
    if self._moments["observation"].count == 0:
      raise ValueError("cannot compute normalization stats of zero episodes")
    return {field: m.result() for field, m in self._moments.items()}


def compute_stats(episodes: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """{field: {mean, std, min, max: float32 [dim], count}} for observation and action.

  Action stats cover the real actions only (each episode's last step holds a dummy).
  """
  acc = StatsAccumulator()
  for episode in episodes:
    acc.add(episode)
  return acc.result()


def stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict:
  """Lists instead of arrays; float32 values survive the JSON round trip exactly."""
  return {field: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
          for field, s in stats.items()}


def stats_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Inverse of `stats_to_json`; raises KeyError/ValueError on a malformed document."""
  out = {}
  for field in data:  # both FIELDS for a dataset; a policy keeps "observation" only
    s = data[field]
    out[field] = {k: np.asarray(s[k], np.float32) for k in ("mean", "std", "min", "max")}
    out[field]["count"] = int(s["count"])
  return out


def normalize(x, stats: Mapping[str, Any], mode: str = "mean_std"):
  """Maps x [..., dim] (numpy or jax) with one field's stats, e.g. `stats["action"]`.

  mode="mean_std": zero mean, unit std. mode="min_max": [min, max] -> [-1, 1] (what
  diffusion policies want for actions).
  """
  shift, scale = _affine(stats, mode)
  return (x - shift) / scale


def unnormalize(x, stats: Mapping[str, Any], mode: str = "mean_std"):
  """Inverse of `normalize`."""
  shift, scale = _affine(stats, mode)
  return x * scale + shift


def _affine(stats: Mapping[str, Any], mode: str) -> tuple[np.ndarray, np.ndarray]:
  if mode == "mean_std":
    return np.asarray(stats["mean"]), np.asarray(stats["std"])
  if mode == "min_max":
    lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
    half_range = np.maximum((hi - lo) / 2, STD_FLOOR).astype(lo.dtype)
    return (lo + hi) / 2, half_range
  raise ValueError(f"unknown normalization mode {mode!r}; expected 'mean_std' or 'min_max'")
