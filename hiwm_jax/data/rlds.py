"""Robot trajectories as RLDS episodes in a TFDS dataset on disk, written and read TF-free.

An episode in memory is `{"steps": {field: [T+1, ...]}, "episode_metadata": {...}}`: step t
holds observation o_t and the action a_t taken from it; the last step holds the final
observation and a zero action (the RLDS convention, so Open X-Embodiment-style trainers read
our data as is). On disk it is TFDS with array_record files, read back with `as_data_source`
(no TensorFlow). The layout of a dataset directory:

  <path>/dataset_info.json, features.json      TFDS metadata
  <path>/hiwm_episodes-train.array_record-*    the episodes, in the order written
  <path>/normalization.json                    `normalization.compute_stats` of the episodes
"""
from __future__ import annotations

import contextlib
import json
import operator
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

from hiwm_jax.data import normalization

# Who chose each action (Sirius labels).
DEMO, POLICY, INTERVENTION, PRE_INTERVENTION = 0, 1, 2, 3
INTERVENTION_LABELS = {"demo": DEMO, "policy": POLICY, "intervention": INTERVENTION,
                       "pre_intervention": PRE_INTERVENTION}
SOURCES = ("demo", "play", "policy", "world_model_correction")
# Label of every action when make_episode gets none; corrections must say who did what.
_DEFAULT_LABEL = {"demo": DEMO, "play": DEMO, "policy": POLICY}

STEP_DTYPES = {"observation": np.float32, "action": np.float32, "reward": np.float32,
               "discount": np.float32, "is_first": np.bool_, "is_last": np.bool_,
               "is_terminal": np.bool_, "intervention": np.int32}
# Optional episode metadata of a world-model correction (session.export): where in the
# intervention tree it came from and what the WM judged. An episode has all of them or none;
# unset ones take these defaults. On disk every episode stores them (defaults when absent) and a
# `has_correction` flag, so datasets written before these fields existed read as before.
# Floats are stored as float32 (TFDS examples hold float32), so make_episode rounds them to it.
CORRECTION_DEFAULTS = {"node": -1, "branch": -1, "parent_branch": -1, "rollback_step": -1,
                       "branch_index": -1, "corrector": "", "wm_checkpoint": "",
                       "verdict_success": False, "verdict_progress": 0.0, "verdict_risk": 0.0}
_BASE_METADATA = ("task", "seed", "source", "success")
STATS_FILE = "normalization.json"
_NAME, _VERSION = "hiwm_episodes", "1.0.0"
_REMEDY = "re-run experiments/collect.py to rebuild it"


class DatasetError(ValueError):
  """A dataset directory is missing, not a dataset, or corrupt."""


def make_episode(observations, actions, *, task: str, seed: int, source: str, success: bool,
                 terminated: bool, rewards=None, intervention=None,
                 correction: Mapping[str, Any] | None = None) -> dict:
  """Builds an RLDS episode from observations [T+1, obs_dim] and actions [T, A].

  rewards: [T] (default zeros). intervention: [T] labels (default from source; required for
  "world_model_correction"). correction: some of CORRECTION_DEFAULTS' fields, added (all of
  them, defaults filled) to the episode metadata. Raises ValueError naming the problem.
  """
  obs = _float_array("observations", observations, ndim=2)  # [T+1, obs_dim]
  act = _float_array("actions", actions, ndim=2)  # [T, A]
  T = act.shape[0]
  if T < 1 or obs.shape[0] != T + 1:
    raise ValueError(f"need observations [T+1, obs_dim] and actions [T, A] with T >= 1; got "
                     f"observations {obs.shape} and actions {act.shape}")
  metadata = _metadata(task, seed, source, success)
  if correction is not None:
    metadata.update(_correction(correction))
  rew = np.zeros(T, np.float32) if rewards is None else _float_array("rewards", rewards, ndim=1)
  if rew.shape != (T,):
    raise ValueError(f"rewards has shape {rew.shape}; expected ({T},)")
  labels = _labels(intervention, source, T)
  last = np.arange(T + 1) == T
  steps = {
      "observation": obs,
      "action": np.concatenate([act, np.zeros_like(act[:1])]),  # [T+1, A], last is a dummy
      "reward": np.append(rew, np.float32(0)),
      "discount": np.where(last & bool(terminated), 0.0, 1.0).astype(np.float32),
      "is_first": np.arange(T + 1) == 0,
      "is_last": last,
      "is_terminal": last & bool(terminated),
      "intervention": np.append(labels, labels[-1]),  # the last step repeats the last label
  }
  return {"steps": steps, "episode_metadata": metadata}


def check_episode(episode: Mapping[str, Any], obs_dim: int, action_dim: int) -> None:
  """Raises ValueError unless `episode` has exactly the format make_episode builds."""
  if not isinstance(episode, Mapping):
    raise ValueError(f"an episode must be a dict; got {type(episode).__name__}")
  steps = episode.get("steps")
  if not isinstance(steps, Mapping) or set(steps) != set(STEP_DTYPES):
    got = sorted(steps) if isinstance(steps, Mapping) else type(steps).__name__
    raise ValueError(f"episode steps must have fields {sorted(STEP_DTYPES)}; got {got}")
  n = len(steps["observation"])
  shapes = {"observation": (n, obs_dim), "action": (n, action_dim)}
  for field, dtype in STEP_DTYPES.items():
    x = steps[field]
    want = shapes.get(field, (n,))
    if not isinstance(x, np.ndarray) or x.dtype != dtype or x.shape != want:
      got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
      raise ValueError(f"step field {field!r}: expected {np.dtype(dtype)} {want}, got {got}")
  if n < 2 or not steps["is_first"][0] or not steps["is_last"][-1]:
    raise ValueError(f"episode has {n} steps or misplaced is_first/is_last; build it with "
                     "make_episode")
  meta = episode.get("episode_metadata", {})
  _metadata(**{k: meta.get(k) for k in _BASE_METADATA})
  extra = set(meta) - set(_BASE_METADATA)
  if extra and extra != set(CORRECTION_DEFAULTS):
    raise ValueError(f"episode metadata has fields {sorted(extra)} beyond {list(_BASE_METADATA)}; "
                     f"expected none or all of {sorted(CORRECTION_DEFAULTS)}")
  if extra and _correction({k: meta[k] for k in extra}) != {k: meta[k] for k in extra}:
    raise ValueError("correction metadata would not read back as written (floats are stored "
                     "as float32); build the episode with make_episode")


def write_dataset(path, episodes: Iterable[Mapping[str, Any]], *, obs_dim: int,
                  action_dim: int, description: str = "", overwrite: bool = False) -> str:
  """Writes episodes (any iterable, e.g. a generator) as a TFDS dataset at directory `path`.

  Atomic: built in a hidden sibling directory and renamed into place when complete, so an
  interrupted run leaves nothing at `path`. Also saves normalization stats there.
  """
  path = os.path.abspath(os.fspath(path))
  if min(obs_dim, action_dim) < 1:
    raise ValueError(f"obs_dim and action_dim must be >= 1; got {obs_dim} and {action_dim}")
  if os.path.lexists(path):
    if not overwrite:
      raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    if not os.path.isdir(path) or (os.listdir(path) and not _looks_like_dataset(path)):
      raise FileExistsError(f"{path} exists and is not a dataset; refusing to replace it")
  parent, base = os.path.split(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
  try:
    stats = normalization.StatsAccumulator()
    builder = _Builder(episodes=_checked(episodes, obs_dim, action_dim, stats),
                       obs_dim=obs_dim, action_dim=action_dim, description=description,
                       data_dir=tmp, file_format="array_record")
    with _tfds_progress_bars_off():
      builder.download_and_prepare(download_dir=os.path.join(tmp, "downloads"))
    built = os.path.join(tmp, _NAME, _VERSION)
    with open(os.path.join(built, STATS_FILE), "w") as f:
      json.dump(normalization.stats_to_json(stats.result()), f)
    if os.path.lexists(path):  # overwrite: swap the old one out (deleted below), new one in
      os.rename(path, os.path.join(tmp, "old"))
    os.rename(built, path)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return path


class EpisodeDataset:
  """A written dataset, read lazily: len(), ds[i] and iteration give in-memory episodes."""

  def __init__(self, path):
    self.path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(self.path):
      raise DatasetError(f"no dataset at {self.path}: directory does not exist; {_REMEDY}")
    if not _looks_like_dataset(self.path):
      raise DatasetError(f"{self.path} is not a dataset (no dataset_info.json); {_REMEDY}")
    with _wrap_errors(self.path):
      builder = tfds.builder_from_directory(self.path)
      steps = builder.info.features["steps"]
      self.obs_dim = int(steps["observation"].shape[0])
      self.action_dim = int(steps["action"].shape[0])
      self._source = builder.as_data_source("train")
      self._len = len(self._source)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int) -> dict:
    i = range(self._len)[operator.index(i)]  # negative indices; IndexError past the end
    with _wrap_errors(self.path, f"episode {i} of the dataset"):
      example = self._source[i]
      steps = list(example["steps"])  # per-step dicts
      episode = {
          "steps": {k: np.stack([s[k] for s in steps]).astype(d, copy=False)
                    for k, d in STEP_DTYPES.items()},
          "episode_metadata": _decode_metadata(example["episode_metadata"]),
      }
      check_episode(episode, self.obs_dim, self.action_dim)
    return episode

  def __iter__(self) -> Iterator[dict]:
    return (self[i] for i in range(self._len))


def open_dataset(path) -> EpisodeDataset:
  """The dataset at `path`, read lazily; raises DatasetError if it is missing or corrupt."""
  return EpisodeDataset(path)


def read_episodes(path) -> list[dict]:
  """Every episode of the dataset at `path`, in the order written."""
  return list(open_dataset(path))


def load_stats(path) -> dict[str, dict[str, Any]]:
  """The normalization stats saved beside the dataset at `path`."""
  file = os.path.join(os.path.abspath(os.fspath(path)), STATS_FILE)
  try:
    with open(file) as f:
      return normalization.stats_from_json(json.load(f))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DatasetError(f"cannot read normalization stats {file} ({type(e).__name__}: {e}); "
                       f"{_REMEDY}") from e


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """One "train" split of episodes, kept in the order given (no TFDS shuffling)."""
  name = _NAME
  VERSION = tfds.core.Version(_VERSION)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # No checksums or resources live beside this module. TFDS 4.9.10 would look for them via
    # `importlib_resources`, which etils >= 1.15 no longer installs (ModuleNotFoundError).
    return None

  def __init__(self, *, episodes, obs_dim, action_dim, description, **kwargs):
    self._episodes, self._dims, self._description = episodes, (obs_dim, action_dim), description
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    obs_dim, action_dim = self._dims
    scalar = lambda dtype: tfds.features.Scalar(dtype=dtype)
    steps = {k: scalar(d) for k, d in STEP_DTYPES.items()}
    steps["observation"] = tfds.features.Tensor(shape=(obs_dim,), dtype=np.float32)
    steps["action"] = tfds.features.Tensor(shape=(action_dim,), dtype=np.float32)
    features = {
        "steps": tfds.features.Dataset(steps),
        "episode_metadata": {"task": tfds.features.Text(), "seed": scalar(np.int64),
                             "source": tfds.features.Text(), "success": scalar(np.bool_),
                             "has_correction": scalar(np.bool_),
                             **{k: _CORRECTION_FEATURES[type(v)]()
                                for k, v in CORRECTION_DEFAULTS.items()}},
    }
    return tfds.core.DatasetInfo(builder=self, description=self._description,
                                 features=tfds.features.FeaturesDict(features),
                                 disable_shuffling=True)

  def _log_download_bytes(self):
    pass  # TFDS would print the hidden temporary path; collection has its own progress bar.

  def _log_download_done(self):
    pass

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, episode in enumerate(self._episodes):
      meta = episode["episode_metadata"]
      stored = {**CORRECTION_DEFAULTS, **meta, "has_correction": "branch" in meta}
      yield i, {"steps": episode["steps"], "episode_metadata": stored}


_CORRECTION_FEATURES = {int: lambda: tfds.features.Scalar(dtype=np.int64),
                        float: lambda: tfds.features.Scalar(dtype=np.float32),
                        bool: lambda: tfds.features.Scalar(dtype=np.bool_),
                        str: tfds.features.Text}


def _checked(episodes, obs_dim, action_dim, stats) -> Iterator[Mapping[str, Any]]:
  """Validates and taps the stream on its way into TFDS."""
  count = 0
  for count, episode in enumerate(episodes, 1):
    try:
      check_episode(episode, obs_dim, action_dim)
    except ValueError as e:
      raise ValueError(f"episode {count - 1}: {e}") from None
    stats.add(episode)
    yield episode
  if count == 0:
    raise ValueError("write_dataset got no episodes")


@contextlib.contextmanager
def _tfds_progress_bars_off():
  """TFDS's per-write bars would interleave with the caller's episode bar."""
  was_on = tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(was_on)


def _looks_like_dataset(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "dataset_info.json"))


@contextlib.contextmanager
def _wrap_errors(path: str, what: str = "the dataset"):
  """Turns any error from inside TFDS/array_record into a DatasetError naming the path."""
  try:
    yield
  except DatasetError:
    raise
  except Exception as e:
    raise DatasetError(f"cannot read {what} at {path}, it looks corrupt "
                       f"({type(e).__name__}: {e}); {_REMEDY}") from e


def _float_array(name: str, x, ndim: int) -> np.ndarray:
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise ValueError(f"{name} must be real numbers; got dtype {x.dtype}")
  if x.ndim != ndim:
    raise ValueError(f"{name} must have {ndim} dims; got shape {x.shape}")
  x = x.astype(np.float32)
  bad = np.argwhere(~np.isfinite(x))
  if bad.size:
    raise ValueError(f"{name} has non-finite values (NaN or inf) at {bad[:5].tolist()}")
  return x


def _labels(intervention, source: str, T: int) -> np.ndarray:
  if intervention is None:
    if source not in _DEFAULT_LABEL:
      raise ValueError(f"source {source!r} needs explicit intervention labels")
    return np.full(T, _DEFAULT_LABEL[source], np.int32)
  labels = np.asarray(intervention)
  if labels.shape != (T,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"intervention must be integer labels [{T}]; got {labels.dtype} "
                     f"{labels.shape}")
  unknown = sorted(set(labels.tolist()) - set(INTERVENTION_LABELS.values()))
  if unknown:
    raise ValueError(f"unknown intervention labels {unknown}; known: {INTERVENTION_LABELS}")
  return labels.astype(np.int32)


def _metadata(task, seed, source, success) -> dict:
  if not isinstance(task, str) or not task:
    raise ValueError(f"task must be a non-empty str; got {task!r}")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
      or not -2**63 <= int(seed) < 2**63:
    raise ValueError(f"seed must be an int64 integer; got {seed!r}")
  if source not in SOURCES:
    raise ValueError(f"source {source!r} is not one of {SOURCES}")
  if not isinstance(success, (bool, np.bool_)):
    raise ValueError(f"success must be a bool; got {success!r}")
  return {"task": task, "seed": int(seed), "source": source, "success": bool(success)}


def _is_int64(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) \
      and -2**63 <= int(v) < 2**63


def _is_float32(v) -> bool:
  if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, (bool, np.bool_)):
    return False
  with np.errstate(over="ignore"):  # too large for float32 is inf, rejected here
    return bool(np.isfinite(np.float32(v)))


# Type of a correction field's default -> (check, what it must be, conversion for storage).
_CORRECTION_TYPES = {
    int: (_is_int64, "an int64 integer", int),
    float: (_is_float32, "a finite float (float32)", lambda v: float(np.float32(v))),
    bool: (lambda v: isinstance(v, (bool, np.bool_)), "a bool", bool),
    str: (lambda v: isinstance(v, str), "a str", str),
}


def _correction(fields: Mapping[str, Any]) -> dict:
  """All correction metadata fields: `fields` checked and converted, defaults for the rest."""
  unknown = sorted(set(fields) - set(CORRECTION_DEFAULTS))
  if unknown:
    raise ValueError(f"unknown correction metadata {unknown}; known: "
                     f"{sorted(CORRECTION_DEFAULTS)}")
  out = dict(CORRECTION_DEFAULTS)
  for k, v in fields.items():
    check, want, convert = _CORRECTION_TYPES[type(CORRECTION_DEFAULTS[k])]
    if not check(v):
      raise ValueError(f"correction metadata {k!r} must be {want}; got {v!r}")
    out[k] = convert(v)
  return out


def _decode_metadata(meta: Mapping[str, Any]) -> dict:
  text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
  out = {"task": text(meta["task"]), "seed": int(meta["seed"]),
         "source": text(meta["source"]), "success": bool(meta["success"])}
  if meta.get("has_correction", False):  # datasets from before these fields have no flag
    out.update({k: text(meta[k]) if isinstance(v, str) else type(v)(meta[k])
                for k, v in CORRECTION_DEFAULTS.items()})
  return out
