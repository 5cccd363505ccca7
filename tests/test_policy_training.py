"""Policies end to end: train from RLDS demos, checkpoint, load, fine-tune, evaluate, inspect."""
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments.configs import push as push_config
from hiwm_jax import collect, data, envs, evaluate
from hiwm_jax.policies import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  config = push_config.get_config("smoke")
  config.data_dir = str(tmp_path_factory.mktemp("data"))
  collect.collect_task(config)
  return config.data_dir


def _config(data_dir, backbone, **train):
  config = push_config.get_config(f"smoke,backbone={backbone}")
  config.data_dir = data_dir
  config.train.update(train)
  return config


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """backbone -> (workdir, policy, params): one smoke training of each, shared by the tests
  that need a trained policy rather than a training of their own (compiling one is most of
  its cost). The tests only read the workdirs, except the entry points' eval files."""
  out = {}
  for backbone in ("diffusion", "flow"):
    workdir = str(tmp_path_factory.mktemp(backbone))
    out[backbone] = (workdir, *train.train_policy(_config(data_dir, backbone), workdir))
  return out


@pytest.mark.parametrize("backbone", ["diffusion", "flow"])
def test_train_load_and_act(trained, backbone):
  workdir, policy, params = trained[backbone]
  loaded, loaded_params, config = train.load_policy(workdir)
  chex.assert_trees_all_equal(loaded_params, params)
  assert config.policy.backbone == backbone and loaded.name == policy.name
  np.testing.assert_array_equal(loaded.obs_stats["mean"], policy.obs_stats["mean"])
  obs = np.zeros((policy.history, policy.obs_dim), np.float32)
  chunk = jax.jit(loaded.act)(loaded_params, obs, jax.random.PRNGKey(0))
  assert chunk.shape == (policy.chunk, policy.action_dim) and np.all(np.abs(chunk) <= 1)
  with pytest.raises(ValueError, match=r"expected \(2, 39\)"):
    loaded.act(loaded_params, np.zeros((2, 40), np.float32), jax.random.PRNGKey(0))


def test_finetune_starts_from_base_and_keeps_its_normalization(data_dir, trained, tmp_path):
  (base_dir, base, base_params), tuned_dir = trained["flow"], str(tmp_path / "tuned")
  config = _config(data_dir, "flow", init_from=base_dir, steps=1, warmup_steps=1)
  config.policy_data.update(datasets=("play",), max_episodes=2)  # other data, base stats
  tuned, tuned_params = train.train_policy(config, tuned_dir)
  np.testing.assert_array_equal(tuned.obs_stats["mean"], base.obs_stats["mean"])
  diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), tuned_params, base_params)
  assert 0 < max(jax.tree.leaves(diffs)) < 0.1, "one small step away from the base"


def test_finetune_from_mismatched_base_is_refused(data_dir, trained, tmp_path):
  config = _config(data_dir, "flow", init_from=trained["flow"][0])
  config.policy.chunk = 8
  config.policy.execute = 4
  with pytest.raises(ValueError, match="do not fit"):
    train.train_policy(config, str(tmp_path / "tuned"))


def test_evaluate_real_and_policy_rollouts(data_dir, trained):
  config = _config(data_dir, "diffusion")
  workdir, policy, params = trained["diffusion"]
  env = envs.make("push")
  summary, results = evaluate.evaluate_real(env, policy, params, 2, seed_offset=5)
  again, _ = evaluate.evaluate_real(env, policy, params, 2, seed_offset=5)
  assert summary == again, "same seeds and weights, same outcome"
  assert summary["episodes"] == 2 and 0 <= summary["ci95"][0] <= summary["ci95"][1] <= 1
  assert [r.seed for r in results] == [5, 6]
  assert summary["success"] == [r.success for r in results]
  assert sum(summary["success"]) == summary["successes"]
  out = collect.collect_policy_rollouts(config, workdir)
  episodes = data.read_episodes(out["dataset"])
  assert len(episodes) == config.collect.num_policy, "failures are kept too"
  assert {e["episode_metadata"]["source"] for e in episodes} == {"policy"}
  assert np.all(np.concatenate([e["steps"]["intervention"] for e in episodes]) == data.POLICY)


def test_wilson_interval():
  assert evaluate.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
  assert evaluate.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
  assert evaluate.wilson_interval(50, 50)[1] == 1.0


def test_inspect_checkpoint_and_eval_entry_points(trained, tmp_path):
  workdir = trained["flow"][0]
  run = lambda *args: subprocess.run([sys.executable, "-m", *args], cwd=REPO,
                                     capture_output=True, text=True, timeout=300)
  out = run("experiments.inspect_checkpoint", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "steps [10, 20]" in out.stdout and "ema_params:" in out.stdout
  assert '"backbone": "flow"' in out.stdout and "float32" in out.stdout
  out = run("experiments.eval_policy", f"--workdir={workdir}", "--episodes=1")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "push flow: real success" in out.stdout
  assert json.load(open(os.path.join(workdir, "eval_real.json")))["episodes"] == 1
  out = run("experiments.inspect_checkpoint", f"--workdir={tmp_path / 'nope'}")
  assert out.returncode != 0 and "no checkpoints in" in out.stderr
