"""Collection end to end: simulator episodes -> RLDS datasets on disk, and its entry point."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import push as push_config
from hiwm_jax import collect, data, envs
from hiwm_jax.envs.episode import expert_controller, run_episode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_collect_task_writes_readable_datasets(tmp_path):
  config = push_config.get_config("smoke")
  config.data_dir = str(tmp_path)
  summary = collect.collect_task(config)
  demos = data.read_episodes(tmp_path / "push" / "demos")
  play = data.read_episodes(tmp_path / "push" / "play")
  assert len(demos) == summary["demos"]["kept"] == summary["demos"]["successes"] == 3
  assert len(play) == summary["play"]["kept"] == 2
  for episode in demos:
    meta = episode["episode_metadata"]
    assert meta["task"] == "push" and meta["source"] == "demo" and meta["success"]
    assert episode["steps"]["observation"].shape[1] == 39
    assert episode["steps"]["is_terminal"][-1], "demos end on success"
  assert [e["episode_metadata"]["seed"] for e in play] == [100_000, 100_001]
  assert {e["episode_metadata"]["source"] for e in play} == {"play"}
  assert data.load_stats(tmp_path / "push" / "demos")["observation"]["mean"].shape == (39,)
  assert (tmp_path / "push" / "collect_config.json").read_text().count('"num_demos": 3') == 1
  assert "| push | 3/3 (100%) | 3 |" in collect.summary_table([summary])


def test_full_horizon_episodes_run_past_success_into_the_cloth_world_models_data(tmp_path):
  """The cloth's config records episodes that run on past the first success (what follows a
  laid fold) and trains the world model on them whole; they run the whole horizon."""
  from experiments.configs import cloth_fold as cloth_config
  cloth = cloth_config.get_config()
  assert cloth.collect.num_full_horizon == 200
  assert tuple(cloth.wm_data.train_only) == ("full_horizon",)
  assert cloth_config.get_config("smoke").collect.num_full_horizon == 2
  assert tuple(push_config.get_config().wm_data.train_only) == ()
  config = push_config.get_config("smoke")
  config.data_dir = str(tmp_path)
  with config.unlocked():
    config.collect.update(num_full_horizon=2, num_demos=1, num_play=1)
  horizon = envs.make("push").max_steps
  summary = collect.collect_task(config)
  episodes = data.read_episodes(tmp_path / "push" / "full_horizon")
  assert summary["full_horizon"]["episodes"] == len(episodes) == 2
  assert [e["episode_metadata"]["seed"] for e in episodes] == [700_000, 700_001]
  assert [e["episode_metadata"]["source"] for e in episodes] == ["demo", "play"]
  demo = episodes[0]
  assert demo["episode_metadata"]["success"] and len(demo["steps"]["action"]) == horizon + 1
  assert not demo["steps"]["is_terminal"][-1], "runs on past the success"
  stopped = data.read_episodes(tmp_path / "push" / "demos")[0]  # the same expert, stopped
  assert len(stopped["steps"]["action"]) < horizon + 1


def test_simulator_episode_round_trips_bit_identical(tmp_path):
  env = envs.make("pick_place")
  result = run_episode(env, expert_controller(env.task, 0.2), seed=3, random_prefix=10)
  episode = collect.to_rlds(result, "pick_place", "play")
  data.write_dataset(tmp_path / "ds", [episode], obs_dim=39, action_dim=4)
  (back,) = data.read_episodes(tmp_path / "ds")
  for field, values in episode["steps"].items():
    np.testing.assert_array_equal(back["steps"][field], values, err_msg=field)
    assert back["steps"][field].dtype == values.dtype
  assert back["episode_metadata"] == episode["episode_metadata"]


def _run(*args, **kwargs):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, **kwargs)


def test_collect_entry_point_smoke(tmp_path):
  out = _run("experiments.collect", "--config=experiments/configs/push.py:smoke",
             "--config.collect.num_play=1", f"--config.data_dir={tmp_path}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "| push | 3/3 (100%) | 3 | " in out.stdout
  assert len(data.open_dataset(tmp_path / "push" / "play")) == 1


@pytest.mark.parametrize("flag, message", [
    ("--config.collect.num_demoz=3", "num_demoz"),
    ("--config=experiments/configs/push.py:quik", "unknown config arg"),
])
def test_bad_config_is_named(tmp_path, flag, message):
  args = ["--config=experiments/configs/push.py:smoke", flag, f"--config.data_dir={tmp_path}"]
  out = _run("experiments.collect", *args)
  assert out.returncode != 0
  assert message in out.stderr


def test_killed_collection_leaves_no_dataset_that_looks_whole(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.collect", "--config=experiments/configs/push.py",
       "--config.collect.num_demos=500", f"--config.data_dir={tmp_path}"],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not list((tmp_path / "push").glob(".demos.tmp-*")) and time.time() < deadline:
    time.sleep(0.2)  # wait until it is writing
  time.sleep(1.0)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "push" / "demos").exists()
  with pytest.raises(data.DatasetError, match="does not exist"):
    data.open_dataset(tmp_path / "push" / "demos")
