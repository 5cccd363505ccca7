"""hiwm_jax.data: RLDS round trip, atomic writes, clear errors, stats, windows."""
import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import data
from hiwm_jax.data import rlds


def _episode(rng, T, obs_dim=39, action_dim=4, seed=0, **kwargs):
  kwargs = {"task": "push", "source": "demo", "success": True, "terminated": True, **kwargs}
  return data.make_episode(rng.normal(size=(T + 1, obs_dim)), rng.uniform(-1, 1, (T, action_dim)),
                           seed=seed, rewards=rng.normal(size=T), **kwargs)


def _assert_episodes_equal(got, want):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g["episode_metadata"] == w["episode_metadata"]
    assert set(g["steps"]) == set(w["steps"])
    for k, x in w["steps"].items():
      assert g["steps"][k].dtype == x.dtype, k
      np.testing.assert_array_equal(g["steps"][k], x, err_msg=k)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  """A small written dataset and its episodes, shared by the read-only tests."""
  rng = np.random.default_rng(0)
  episodes = [_episode(rng, T, seed=i) for i, T in enumerate([5, 1, 9])]
  path = tmp_path_factory.mktemp("small") / "ds"
  return data.write_dataset(path, episodes, obs_dim=39, action_dim=4), episodes


# --- episode format ---------------------------------------------------------------------------

def test_make_episode_layout():
  obs, act = np.arange(8.0).reshape(4, 2), np.ones((3, 1))
  ep = data.make_episode(obs, act, task="t", seed=7, source="world_model_correction",
                         success=False, terminated=True,
                         intervention=[data.POLICY, data.PRE_INTERVENTION, data.INTERVENTION])
  s = ep["steps"]
  assert {k: v.dtype for k, v in s.items()} == {k: np.dtype(d) for k, d in rlds.STEP_DTYPES.items()}
  np.testing.assert_array_equal(s["action"], [[1], [1], [1], [0]])
  np.testing.assert_array_equal(s["is_first"], [1, 0, 0, 0])
  np.testing.assert_array_equal(s["is_last"], [0, 0, 0, 1])
  np.testing.assert_array_equal(s["is_terminal"], [0, 0, 0, 1])
  np.testing.assert_array_equal(s["discount"], [1, 1, 1, 0])
  np.testing.assert_array_equal(s["intervention"], [1, 3, 2, 2])
  assert ep["episode_metadata"] == {"task": "t", "seed": 7, "source": "world_model_correction",
                                    "success": False}
  truncated = data.make_episode(obs, act, task="t", seed=0, source="policy", success=False,
                                terminated=False)["steps"]
  assert not truncated["is_terminal"].any() and (truncated["discount"] == 1).all()
  assert (truncated["intervention"] == data.POLICY).all()
  assert data.INTERVENTION_LABELS == {"demo": 0, "policy": 1, "intervention": 2,
                                      "pre_intervention": 3}


@pytest.mark.parametrize("change, message", [
    ({"observations": np.zeros((3, 2))}, "observations (3, 2) and actions (3, 1)"),
    ({"actions": np.zeros(3)}, "actions must have 2 dims"),
    ({"actions": np.zeros((0, 1)), "observations": np.zeros((1, 2))}, "T >= 1"),
    ({"observations": np.full((4, 2), np.nan)}, "observations has non-finite"),
    ({"actions": np.array([["a"], ["b"], ["c"]])}, "actions must be real numbers"),
    ({"rewards": np.zeros(4)}, "rewards has shape (4,); expected (3,)"),
    ({"source": "teleop"}, "source 'teleop' is not one of ('demo', 'play', 'policy'"),
    ({"source": "world_model_correction"}, "needs explicit intervention labels"),
    ({"intervention": [0, 1, 7]}, "unknown intervention labels [7]"),
    ({"intervention": [0.0, 1.0, 2.0]}, "intervention must be integer labels [3]"),
    ({"task": ""}, "task must be a non-empty str"),
    ({"seed": 1.5}, "seed must be an int64 integer"),
    ({"success": 1}, "success must be a bool"),
])
def test_make_episode_rejects(change, message):
  kwargs = {"observations": np.zeros((4, 2)), "actions": np.zeros((3, 1)), "task": "t", "seed": 0,
            "source": "demo", "success": True, "terminated": False, **change}
  with pytest.raises(ValueError) as e:
    data.make_episode(**kwargs)
  assert message in str(e.value)


def _drop_is_last(ep):
  del ep["steps"]["is_last"]


def _float64_reward(ep):
  ep["steps"]["reward"] = ep["steps"]["reward"].astype(np.float64)


def _bad_source(ep):
  ep["episode_metadata"]["source"] = "sim"


@pytest.mark.parametrize("spoil, message", [
    (_drop_is_last, "episode steps must have fields ['action', 'discount', 'intervention'"),
    (_float64_reward, "step field 'reward': expected float32 (4,), got float64 (4,)"),
    (_bad_source, "source 'sim' is not one of"),
])
def test_check_episode_rejects(spoil, message):
  ep = _episode(np.random.default_rng(0), 3, obs_dim=2, action_dim=1)
  data.check_episode(ep, obs_dim=2, action_dim=1)
  spoil(ep)
  with pytest.raises(ValueError) as e:
    data.check_episode(ep, obs_dim=2, action_dim=1)
  assert message in str(e.value)
  with pytest.raises(ValueError, match="an episode must be a dict; got list"):
    data.check_episode([], obs_dim=2, action_dim=1)


# --- writing and reading ----------------------------------------------------------------------

def test_round_trip_is_bit_identical(tmp_path):
  rng = np.random.default_rng(1)
  for obs_dim in (39, 196):
    episodes = [_episode(rng, T, obs_dim, seed=2**40 + T, task=f"task{T}", success=T % 2 == 0,
                         terminated=T % 3 == 0, source=source,
                         intervention=rng.integers(0, 4, T).astype(np.int64))
                for T, source in [(7, "world_model_correction"), (1, "play"), (30, "policy")]]
    path = tmp_path / f"ds{obs_dim}"
    # A generator: collection streams episodes.
    assert data.write_dataset(path, iter(episodes), obs_dim=obs_dim, action_dim=4,
                              description="test") == str(path)
    _assert_episodes_equal(data.read_episodes(path), episodes)
    ds = data.open_dataset(path)
    assert (len(ds), ds.obs_dim, ds.action_dim) == (3, obs_dim, 4)
    _assert_episodes_equal([ds[-1]], episodes[-1:])
    with pytest.raises(IndexError):
      ds[3]
  assert "tensorflow" not in sys.modules


def test_write_is_atomic(tmp_path):
  rng = np.random.default_rng(2)

  def broken():
    yield _episode(rng, 4)
    yield _episode(rng, 4)
    raise RuntimeError("simulator crashed")

  with pytest.raises(RuntimeError, match="simulator crashed"):
    data.write_dataset(tmp_path / "ds", broken(), obs_dim=39, action_dim=4)
  assert os.listdir(tmp_path) == []


def test_write_rejects_bad_episodes(tmp_path):
  rng = np.random.default_rng(3)
  with pytest.raises(ValueError, match=r"episode 1: step field 'observation': expected "
                                       r"float32 \(5, 39\), got float32 \(5, 196\)"):
    data.write_dataset(tmp_path / "ds", [_episode(rng, 4), _episode(rng, 4, obs_dim=196)],
                       obs_dim=39, action_dim=4)
  with pytest.raises(ValueError, match="obs_dim and action_dim must be >= 1; got 0 and 4"):
    data.write_dataset(tmp_path / "ds", [_episode(rng, 4)], obs_dim=0, action_dim=4)
  with pytest.raises(ValueError, match="no episodes"):
    data.write_dataset(tmp_path / "ds", [], obs_dim=39, action_dim=4)
  assert os.listdir(tmp_path) == []


def test_overwrite(tmp_path):
  rng = np.random.default_rng(4)
  path = tmp_path / "ds"
  data.write_dataset(path, [_episode(rng, 3)], obs_dim=39, action_dim=4)
  with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
    data.write_dataset(path, [_episode(rng, 3)], obs_dim=39, action_dim=4)
  new = [_episode(rng, 6, obs_dim=196), _episode(rng, 2, obs_dim=196)]
  data.write_dataset(path, new, obs_dim=196, action_dim=4, overwrite=True)
  _assert_episodes_equal(data.read_episodes(path), new)
  assert os.listdir(tmp_path) == ["ds"]
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "keep.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="is not a dataset; refusing"):
    data.write_dataset(tmp_path / "notes", new, obs_dim=196, action_dim=4, overwrite=True)


def _copy(src, dst):
  os.makedirs(dst)
  for name in os.listdir(src):
    with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
      g.write(f.read())
  return dst


def _records(path):
  return [os.path.join(path, n) for n in os.listdir(path) if ".array_record-" in n]


def _garble(path):
  for file in _records(path):
    size = os.path.getsize(file)
    with open(file, "wb") as f:
      f.write(b"\x07" * size)


def _truncate(path):
  for file in _records(path):
    with open(file, "rb") as f:
      head = f.read()[:100]
    with open(file, "wb") as f:
      f.write(head)


def _bad_info(path):
  with open(os.path.join(path, "dataset_info.json"), "w") as f:
    f.write("{not json")


def _wrong_info(path):
  with open(os.path.join(path, "dataset_info.json")) as f:
    info = json.load(f)
  info["splits"] = []
  with open(os.path.join(path, "dataset_info.json"), "w") as f:
    json.dump(info, f)


def _missing_features(path):
  os.remove(os.path.join(path, "features.json"))


@pytest.mark.parametrize("corrupt", [_garble, _truncate, _bad_info, _wrong_info,
                                     _missing_features])
def test_corrupt_dataset_raises_dataset_error(small, tmp_path, corrupt):
  path = _copy(small[0], str(tmp_path / "ds"))
  corrupt(path)
  with pytest.raises(data.DatasetError) as e:
    data.read_episodes(path)
  assert path in str(e.value) and "experiments/collect.py" in str(e.value)
  assert isinstance(e.value, ValueError) and e.value.__cause__ is not None


def test_missing_or_non_dataset_raises_dataset_error(tmp_path):
  with pytest.raises(data.DatasetError, match=f"no dataset at {tmp_path}/nope: directory "
                                              "does not exist; re-run experiments/collect.py"):
    data.read_episodes(tmp_path / "nope")
  with pytest.raises(data.DatasetError, match=f"{tmp_path} is not a dataset"):
    data.open_dataset(tmp_path)
  with pytest.raises(data.DatasetError, match=f"normalization stats {tmp_path}/normalization"):
    data.load_stats(tmp_path)


# --- normalization ----------------------------------------------------------------------------

def test_stats_saved_and_loaded(small):
  path, episodes = small
  stats = data.load_stats(path)
  want = data.compute_stats(episodes)
  for field in ("observation", "action"):
    for k in ("mean", "std", "min", "max"):
      assert stats[field][k].dtype == np.float32
      np.testing.assert_array_equal(stats[field][k], want[field][k])
  real = np.concatenate([ep["steps"]["action"][:-1] for ep in episodes])  # no dummy actions
  obs = np.concatenate([ep["steps"]["observation"] for ep in episodes])
  assert stats["action"]["count"] == len(real) == 15 and stats["observation"]["count"] == 18
  np.testing.assert_allclose(stats["action"]["mean"], real.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats["action"]["std"], real.std(0), rtol=1e-5)
  np.testing.assert_array_equal(stats["action"]["min"], real.min(0))
  np.testing.assert_allclose(stats["observation"]["std"], obs.std(0), rtol=1e-5)


def test_normalize_round_trip_numpy_and_jax(small):
  stats = data.load_stats(small[0])["observation"]
  x = np.random.default_rng(5).normal(size=(3, 7, 39)).astype(np.float32)
  for mode in ("mean_std", "min_max"):
    y = data.normalize(x, stats, mode)
    np.testing.assert_allclose(data.unnormalize(y, stats, mode), x, atol=1e-5)
    yj = data.normalize(jnp.asarray(x), stats, mode)
    assert isinstance(yj, jnp.ndarray) and yj.dtype == jnp.float32
    np.testing.assert_allclose(yj, y, atol=1e-5)
  z = data.normalize(x, stats)
  assert abs(float(z.mean())) < 1.0
  ends = data.normalize(np.stack([stats["min"], stats["max"]]), stats, "min_max")
  np.testing.assert_allclose(ends, [[-1] * 39, [1] * 39], atol=1e-5)
  with pytest.raises(ValueError, match="unknown normalization mode 'zscore'"):
    data.normalize(x, stats, "zscore")


def test_std_is_floored():
  obs = np.zeros((4, 3))
  ep = data.make_episode(obs, np.zeros((3, 2)), task="t", seed=0, source="demo", success=True,
                         terminated=False)
  stats = data.compute_stats([ep])
  assert (stats["observation"]["std"] > 0).all() and (stats["action"]["std"] > 0).all()


# --- windows ----------------------------------------------------------------------------------

def _counting_episode(T, base, obs_dim=2):
  """Observation o_t = base + t in every dim; action a_t = -(base + t); labels t % 4."""
  t = np.arange(T + 1, dtype=np.float32)
  obs = np.repeat((base + t)[:, None], obs_dim, 1)
  return data.make_episode(obs, -obs[:-1, :1], task="t", seed=0, source="world_model_correction",
                           success=True, terminated=False, intervention=np.arange(T) % 4)


def test_windows_values_and_padding():
  eps = [_counting_episode(3, 0), _counting_episode(5, 100)]
  sampler = data.WindowSampler(eps, history=3, chunk=4)
  assert len(sampler) == 3 + 5
  np.testing.assert_array_equal(sampler.episode, [0, 0, 0, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(sampler.step, [0, 1, 2, 0, 1, 2, 3, 4])
  b = sampler.batch([0, 2, 3, 6])
  assert b["observation"].shape == (4, 3, 2) and b["action"].shape == (4, 4, 1)
  assert b["action_mask"].shape == (4, 4) and b["intervention"].shape == (4,)
  assert b["observation"].dtype == np.float32 and b["action_mask"].dtype == bool
  # Episode 0, t=0: history repeats o_0; actions a_0..a_2 then a_2 again (T=3).
  np.testing.assert_array_equal(b["observation"][0, :, 0], [0, 0, 0])
  np.testing.assert_array_equal(b["action"][0, :, 0], [0, -1, -2, -2])
  np.testing.assert_array_equal(b["action_mask"][0], [1, 1, 1, 0])
  # Episode 0, t=2: the last real action.
  np.testing.assert_array_equal(b["observation"][1, :, 0], [0, 1, 2])
  np.testing.assert_array_equal(b["action"][1, :, 0], [-2, -2, -2, -2])
  np.testing.assert_array_equal(b["action_mask"][1], [1, 0, 0, 0])
  # Episode 1, t=0 never sees episode 0.
  np.testing.assert_array_equal(b["observation"][2, :, 0], [100, 100, 100])
  # Episode 1, t=3: hand-computed slices of the episode itself.
  steps = eps[1]["steps"]
  np.testing.assert_array_equal(b["observation"][3], steps["observation"][1:4])
  np.testing.assert_array_equal(b["action"][3, :2], steps["action"][3:5])
  np.testing.assert_array_equal(b["action"][3, 2:], steps["action"][[4, 4]])
  np.testing.assert_array_equal(b["action_mask"][3], [1, 1, 0, 0])
  np.testing.assert_array_equal(b["intervention"], [0, 2, 0, 3])


def test_all_windows_covers_every_window_in_order():
  sampler = data.WindowSampler([_counting_episode(3, 0), _counting_episode(5, 100)],
                               history=1, chunk=1)
  batches = list(sampler.all_windows(batch_size=3))
  assert [len(b["intervention"]) for b in batches] == [3, 3, 2]
  obs = np.concatenate([b["observation"][:, 0, 0] for b in batches])
  np.testing.assert_array_equal(obs, [0, 1, 2, 100, 101, 102, 103, 104])
  assert np.concatenate([b["action_mask"] for b in batches]).all()


def test_sampling_is_deterministic_and_weighted():
  eps = [_counting_episode(3, 0), _counting_episode(5, 100)]
  sampler = data.WindowSampler(eps, history=2, chunk=3)
  a = sampler.sample(np.random.default_rng(7), 16)
  b = sampler.sample(np.random.default_rng(7), 16)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert a["observation"].shape == (16, 2, 2)
  weights = (sampler.intervention == data.INTERVENTION).astype(float)
  only = data.WindowSampler(eps, history=2, chunk=3, weights=weights)
  assert (only.sample(np.random.default_rng(0), 64)["intervention"] == data.INTERVENTION).all()
  with pytest.raises(ValueError, match="weights must be 8 finite non-negative"):
    data.WindowSampler(eps, history=2, chunk=3, weights=np.zeros(8))
  with pytest.raises(ValueError, match="history and chunk must be >= 1"):
    data.WindowSampler(eps, history=0, chunk=3)


def test_windows_over_a_read_dataset(small):
  path, episodes = small
  from_disk = data.WindowSampler(data.open_dataset(path), history=2, chunk=4)
  in_memory = data.WindowSampler(episodes, history=2, chunk=4)
  a = next(from_disk.all_windows())
  b = next(in_memory.all_windows())
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


# --- correction metadata ----------------------------------------------------------------------

_CORRECTION = {"node": 3, "branch": 7, "parent_branch": 2, "rollback_step": 12, "branch_index": 1,
               "corrector": "scripted", "wm_checkpoint": "/wm/ckpt/9", "verdict_success": True,
               "verdict_progress": 0.1, "verdict_risk": 0.25}


def test_correction_metadata_defaults_and_float32():
  ep = _episode(np.random.default_rng(6), 3, source="world_model_correction",
                intervention=[1, 3, 2], correction={"branch": 4, "verdict_progress": 0.1})
  meta = ep["episode_metadata"]
  assert meta == {"task": "push", "seed": 0, "source": "world_model_correction", "success": True,
                  **rlds.CORRECTION_DEFAULTS, "branch": 4,
                  "verdict_progress": float(np.float32(0.1))}
  data.check_episode(ep, obs_dim=39, action_dim=4)


@pytest.mark.parametrize("correction, message", [
    ({"parent": 1}, "unknown correction metadata ['parent']"),
    ({"node": 1.0}, "correction metadata 'node' must be an int64 integer; got 1.0"),
    ({"verdict_success": 1}, "'verdict_success' must be a bool"),
    ({"verdict_risk": float("nan")}, "'verdict_risk' must be a finite float"),
    ({"corrector": None}, "'corrector' must be a str"),
])
def test_correction_metadata_rejects(correction, message):
  with pytest.raises(ValueError) as e:
    _episode(np.random.default_rng(7), 3, correction=correction)
  assert message in str(e.value)


def test_check_episode_wants_all_or_no_correction_fields():
  ep = _episode(np.random.default_rng(8), 3, correction=_CORRECTION)
  ep["episode_metadata"]["verdict_risk"] = 0.1  # not a float32
  with pytest.raises(ValueError, match="would not read back as written"):
    data.check_episode(ep, obs_dim=39, action_dim=4)
  del ep["episode_metadata"]["corrector"]
  with pytest.raises(ValueError, match="expected none or all of"):
    data.check_episode(ep, obs_dim=39, action_dim=4)


def test_mixed_dataset_round_trip(tmp_path):
  rng = np.random.default_rng(9)
  episodes = [_episode(rng, 4), _episode(rng, 5, source="world_model_correction",
                                         intervention=[1, 1, 3, 2, 2], correction=_CORRECTION),
              _episode(rng, 2, source="world_model_correction", intervention=[2, 2])]
  data.write_dataset(tmp_path / "ds", episodes, obs_dim=39, action_dim=4)
  back = data.read_episodes(tmp_path / "ds")
  _assert_episodes_equal(back, episodes)
  assert [len(e["episode_metadata"]) for e in back] == [4, 14, 4]


def test_dataset_from_before_correction_metadata_reads(tmp_path, monkeypatch):
  """A dataset written with only task/seed/source/success features still reads as before."""
  info = rlds._Builder._info

  def old_info(self):
    new = info(self)
    steps = new.features["steps"]
    meta = {"task": rlds.tfds.features.Text(),
            "seed": rlds.tfds.features.Scalar(dtype=np.int64),
            "source": rlds.tfds.features.Text(),
            "success": rlds.tfds.features.Scalar(dtype=np.bool_)}
    features = rlds.tfds.features.FeaturesDict({"steps": steps, "episode_metadata": meta})
    return rlds.tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def old_examples(self):
    yield from enumerate(self._episodes)

  monkeypatch.setattr(rlds._Builder, "_info", old_info)
  monkeypatch.setattr(rlds._Builder, "_generate_examples", old_examples)
  episodes = [_episode(np.random.default_rng(10), 3)]
  data.write_dataset(tmp_path / "old", episodes, obs_dim=39, action_dim=4)
  monkeypatch.undo()
  with open(tmp_path / "old" / "features.json") as f:
    assert "has_correction" not in f.read()
  _assert_episodes_equal(data.read_episodes(tmp_path / "old"), episodes)
