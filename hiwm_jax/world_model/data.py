"""The world model's data: the configured datasets, split by episode, as unrolled windows.

A window is an observation history ending at step t, the next `unroll` actions and the
`unroll` observations they led to, with a mask where the episode ended first (and, for a world
model with a latent, the hidden state at step t and after each of the actions:
structure.Latent).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from hiwm_jax import data
from hiwm_jax.data import normalization
from hiwm_jax.envs import cloth_fold

# Per task: (observation index, action index) that mirror an episode into another the
# simulator could have recorded (cloth_fold.MIRROR_OBS_INDEX). Meta-World's scenes have none:
# their goals and walls are fixed in the world.
_MIRRORS = {"cloth_fold": (cloth_fold.MIRROR_OBS_INDEX, cloth_fold.MIRROR_ACTION_INDEX)}


def dataset_path(config: ml_collections.ConfigDict, name: str) -> str:
  return os.path.join(config.data_dir, config.task, name)


def missing_dataset_message(config: ml_collections.ConfigDict, name: str) -> str:
  how = (f"python -m experiments.collect --config=experiments/configs/{config.task}.py "
         f"--policy=<policy workdir> --name={name}" if name.startswith("policy") else
         f"python -m experiments.collect --config=experiments/configs/{config.task}.py")
  return (f"world-model dataset {name!r} is missing: no dataset at "
          f"{dataset_path(config, name)}; create it with `{how}`, or list it in "
          "--config.wm_data.optional to train without it")


def load_episodes(config: ml_collections.ConfigDict, name: str,
                  max_episodes: int | None = None) -> list[dict]:
  """The first `max_episodes` (all if None) episodes of dataset `name` under config.data_dir;
  a missing dataset fails with the command that creates it."""
  path = dataset_path(config, name)
  if not os.path.isdir(path):
    raise FileNotFoundError(missing_dataset_message(config, name))
  dataset = data.open_dataset(path)
  count = len(dataset) if max_episodes is None else min(max_episodes, len(dataset))
  return [dataset[i] for i in range(count)]


def load_split(config: ml_collections.ConfigDict) -> tuple[list[dict], list[dict], dict]:
  """(train episodes, held-out episodes, {dataset: count used}) from config.wm_data.

  Each listed dataset's last `holdout_fraction` episodes (at least one, if it has two) are
  held out. A missing dataset fails with the command that creates it, unless it is optional.
  Datasets in `train_only` are trained on whole: more data that leaves the held-out split,
  and so every figure judged on it, as it was. Each episode's metadata gains "dataset" (its
  dataset's name), so a figure can be broken down by where its episodes came from.
  """
  cfg = config.wm_data
  unknown = set(cfg.optional) - set(cfg.datasets)
  if unknown:
    raise ValueError(f"wm_data.optional names {sorted(unknown)}, which wm_data.datasets "
                     f"{list(cfg.datasets)} does not list")
  train, held_out, used = [], [], {}
  for name in cfg.datasets:
    if name in cfg.optional and not os.path.isdir(dataset_path(config, name)):
      print(f"note: optional world-model dataset {name!r} not found at "
            f"{dataset_path(config, name)}; skipped")
      continue
    episodes = _tagged(load_episodes(config, name, cfg.max_episodes), name)
    count = len(episodes)
    n_out = int(np.ceil(cfg.holdout_fraction * count)) if count > 1 else 0
    train += episodes[:count - n_out]
    held_out += episodes[count - n_out:]
    used[name] = count
  for name in cfg.get("train_only", ()):
    if name in cfg.datasets:
      raise ValueError(f"wm_data.train_only names {name!r}, which wm_data.datasets also lists "
                       "(and so holds part of out)")
    episodes = _tagged(load_episodes(config, name, cfg.max_episodes), name)
    train += episodes
    used[name] = len(episodes)
  if not train:
    raise ValueError(f"no training episodes in {list(cfg.datasets)} under "
                     f"{os.path.join(config.data_dir, config.task)}")
  return train, held_out, used


def _tagged(episodes: list[dict], name: str) -> list[dict]:
  for episode in episodes:
    episode["episode_metadata"]["dataset"] = name
  return episodes


def mirrored(episodes: Sequence[Mapping[str, Any]], task: str) -> list[dict]:
  """The episodes' mirror images under the task's symmetry: twice the training data, exact
  for the physics, at no simulator time. Everything but observation and action is kept."""
  if task not in _MIRRORS:
    raise ValueError(f"world_model.mirror_augment: task {task!r} has no mirror symmetry "
                     f"(tasks with one: {sorted(_MIRRORS)}); set mirror_augment=False")
  obs_index, action_index = _MIRRORS[task]
  return [{**ep, "steps": {**ep["steps"],
                           "observation": np.asarray(ep["steps"]["observation"])[..., obs_index],
                           "action": np.asarray(ep["steps"]["action"])[..., action_index]}}
          for ep in episodes]


def delta_std(episodes: Sequence[Mapping[str, Any]], obs_stats, predicted) -> np.ndarray:
  """Std [P] of one step's change of the predicted dims, in normalized units (floored)."""
  deltas = np.concatenate([np.diff(normalization.normalize(
      ep["steps"]["observation"], obs_stats)[:, predicted], axis=0) for ep in episodes])
  return np.maximum(deltas.std(0), 1e-3).astype(np.float32)


class UnrollSampler:
  """Windows (history h, then `unroll` actions and next observations) over episodes."""

  def __init__(self, episodes: Sequence[Mapping[str, Any]], *, history: int, unroll: int,
               latents: Sequence[np.ndarray] | None = None):
    """latents: per episode, the hidden state [T+1, C] at each observation."""
    steps = [ep["steps"] for ep in episodes]
    self.history, self.unroll = history, unroll
    self._obs = np.concatenate([s["observation"] for s in steps])  # [N, D]
    self._act = np.concatenate([s["action"] for s in steps])  # [N, A]
    self._latent = (np.concatenate(latents) if latents is not None else
                 np.zeros((len(self._obs), 0), np.float32))  # [N, C]
    num_actions = np.array([len(s["observation"]) - 1 for s in steps])  # [E]
    first_step = np.cumsum(num_actions + 1) - num_actions - 1  # [E]
    episode = np.repeat(np.arange(len(steps)), num_actions)  # [W]
    t = np.arange(num_actions.sum()) - (np.cumsum(num_actions) - num_actions)[episode]
    self._first = first_step[episode]  # [W]
    self._index = self._first + t  # [W] flat index of the window's current step
    self._last_obs = self._first + num_actions[episode]  # [W] flat index of the final obs

  def __len__(self) -> int:
    return len(self._index)

  def batch(self, windows) -> dict[str, np.ndarray]:
    """Windows [...] (any index shape, e.g. [E, B]) -> arrays with those leading axes."""
    windows = np.asarray(windows)
    t = self._index[windows][..., None]  # [..., 1]
    hist = np.maximum(t + np.arange(1 - self.history, 1), self._first[windows][..., None])
    nxt = t + 1 + np.arange(self.unroll)  # [..., K]
    last = self._last_obs[windows][..., None]
    return {
        "history": self._obs[hist],  # [..., h, D]
        "action": self._act[np.minimum(nxt - 1, last - 1)],  # [..., K, A]
        "next_obs": self._obs[np.minimum(nxt, last)],  # [..., K, D]
        "mask": nxt <= last,  # [..., K]
        "latent": self._latent[t[..., 0]],  # [..., C]
        "next_latent": self._latent[np.minimum(nxt, last)],  # [..., K, C] after each action
    }
