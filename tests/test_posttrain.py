"""Post-training and its real-world baseline: label weights, fine-tune from the base, the
per-dataset demo cap, and HG-DAgger (the person correcting on the robot) on tiny models."""
import copy

import chex
import jax
import numpy as np
import pytest

from experiments.configs import push as push_config
from hiwm_jax import data, envs, hgdagger, posttrain, training
from hiwm_jax.data import rlds
from hiwm_jax.policies import train

TASK = envs.task_fns("push")
NUM_DEMOS, NUM_CORRECTIONS, T = 5, 3, 12


def _episodes(n, source, labels=None, seed=0):
  rng = np.random.default_rng(seed)
  return [data.make_episode(rng.normal(size=(T + 1, TASK.obs_dim)),
                            rng.uniform(-1, 1, (T, TASK.action_dim)), task="push", seed=i,
                            source=source, success=False, terminated=False, intervention=labels)
          for i in range(n)]


CORRECTION_LABELS = np.array([data.POLICY] * 4 + [data.PRE_INTERVENTION] * 2 +
                             [data.INTERVENTION] * 4 + [data.POLICY] * 2)


def _config(data_dir, **train_overrides):
  config = push_config.get_config("smoke,backbone=flow")
  config.data_dir = str(data_dir)
  config.policy.flow.update(width=32, depth=1, num_inference_steps=2)
  config.train.update(train_overrides)
  return config


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """Synthetic demos and corrections, and a base policy trained on the demos (spied on)."""
  root = tmp_path_factory.mktemp("posttrain")
  for name, episodes in [("demos", _episodes(NUM_DEMOS, "demo")),
                         ("corrections", _episodes(NUM_CORRECTIONS, "world_model_correction",
                                                   CORRECTION_LABELS, seed=1))]:
    data.write_dataset(root / "data" / "push" / name, episodes, obs_dim=TASK.obs_dim,
                       action_dim=TASK.action_dim)
  config = _config(root / "data")
  with pytest.MonkeyPatch.context() as mp:
    samplers = _spy_samplers(mp)
    policy, params = train.train_policy(config, str(root / "base"))
  return root, config, policy, params, samplers


def _spy_samplers(mp):
  """Records the WindowSampler(s) train_policy builds."""
  built, real = [], data.WindowSampler
  def spy(*args, **kwargs):
    built.append(real(*args, **kwargs))
    return built[-1]
  mp.setattr(data, "WindowSampler", spy)
  return built


def test_label_weights_maps_labels_and_names_bad_weights():
  labels = np.array([data.DEMO, data.POLICY, data.INTERVENTION, data.PRE_INTERVENTION])
  weights = dict(demo=1.0, policy=0.0, intervention=2.0, pre_intervention=0.5)
  np.testing.assert_array_equal(train.label_weights(labels, weights), [1.0, 0.0, 2.0, 0.5])
  with pytest.raises(ValueError, match=r"finite and >= 0; got \{'policy': -1.0\}"):
    train.label_weights(labels, dict(weights, policy=-1.0))
  with pytest.raises(ValueError, match="every window weight 0"):
    train.label_weights(np.array([data.POLICY]), weights)
  with pytest.raises(ValueError, match="unknown labels \\['expert'\\]"):
    train.label_weights(labels, dict(expert=1.0))


def test_label_weights_change_sampling_and_default_is_uniform(base):
  root, config, *_ = base
  episodes = train.load_training_episodes(config) + _episodes(
      NUM_CORRECTIONS, "world_model_correction", CORRECTION_LABELS)
  sampler = data.WindowSampler(episodes, history=2, chunk=4)
  assert train.sampling_weights(config, sampler.intervention) is None, "default: uniform"
  weights = dict(demo=1.0, policy=0.0, intervention=3.0, pre_intervention=0.0)
  weighted = data.WindowSampler(episodes, history=2, chunk=4,
                                weights=train.label_weights(sampler.intervention, weights))
  drawn = weighted.sample(np.random.default_rng(0), 20_000)["intervention"]
  demo_w, int_w = (sampler.intervention == data.DEMO).sum(), 3 * (
      sampler.intervention == data.INTERVENTION).sum()
  assert set(np.unique(drawn)) == {data.DEMO, data.INTERVENTION}, "weight 0: never drawn"
  assert np.mean(drawn == data.INTERVENTION) == pytest.approx(int_w / (demo_w + int_w), abs=0.02)


def test_base_training_is_unchanged_by_default(base):
  *_, samplers = base
  assert len(samplers) == 1 and samplers[0]._p is None, "no weights: the sampling of before"
  assert len(samplers[0]) == 3 * T, "the smoke config's 3 demos of 5"


def test_posttrain_config_copies_and_sets_the_fine_tune(base):
  root, config, *_ = base
  tuned = posttrain.posttrain_config(config, str(root / "base"), ["demos", "corrections"])
  assert tuned.train.init_from == str(root / "base") and config.train.init_from == ""
  assert tuned.policy_data.datasets == ("demos", "corrections")
  assert (tuned.train.steps, tuned.train.lr, tuned.train.warmup_steps) == (10, 3e-4, 2)
  assert tuned.policy_data.label_weights.intervention == 2.0
  assert tuned.policy_data.label_weights.pre_intervention == 0.0
  assert config.policy_data.label_weights.intervention == 1.0, "the original is untouched"
  assert posttrain.posttrain_config(config, "b").policy_data.datasets == ("demos", "corrections")
  with pytest.raises(ValueError, match="dataset names"):
    posttrain.posttrain_config(config, "b", ())
  with pytest.raises(FileNotFoundError, match="nope"):
    posttrain.posttrain(config, str(root / "base"), ("demos", "nope"), str(root / "x"))


def test_max_episodes_caps_demos_only(base):
  root, config, *_ = base
  tuned = posttrain.posttrain_config(config, "unused", ("demos", "corrections"))
  episodes = train.load_training_episodes(tuned)
  sources = [e["episode_metadata"]["source"] for e in episodes]
  assert sources == ["demo"] * 3 + ["world_model_correction"] * NUM_CORRECTIONS
  alone = posttrain.posttrain_config(config, "unused", ("corrections",))
  alone.policy_data.max_episodes = 2
  assert len(train.load_training_episodes(alone)) == 2, "without demos: every dataset capped"


def test_posttrain_starts_from_base_params_and_keeps_its_stats(base, tmp_path):
  root, config, policy, params, _ = base
  starts, real_fit = [], training.fit
  def fit(state, *args, **kwargs):
    starts.append(jax.device_get(state.params))  # copied before the step donates it
    return real_fit(state, *args, **kwargs)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(training, "fit", fit)
    samplers = _spy_samplers(mp)
    out = posttrain.posttrain(config, str(root / "base"), None, str(tmp_path))
  assert out == str(tmp_path)
  chex.assert_trees_all_equal(starts[0], jax.device_get(params))
  tuned, tuned_params, tuned_config = train.load_policy(out)
  np.testing.assert_array_equal(tuned.obs_stats["mean"], policy.obs_stats["mean"])
  np.testing.assert_array_equal(tuned.obs_stats["std"], policy.obs_stats["std"])
  assert tuned_config.train.init_from == str(root / "base")
  p = samplers[-1]._p  # the weighted sampler: interventions twice, the failing lead-up never
  labels = samplers[-1].intervention
  assert p[labels == data.INTERVENTION][0] == pytest.approx(2 * p[labels == data.DEMO][0])
  assert np.all(p[labels == data.PRE_INTERVENTION] == 0.0)


def test_pre_intervention_labels_only_relabel_policy_steps():
  labels = np.array([1, 1, 1, 1, 2, 2, 1, 1, 2, 1], np.int32)
  np.testing.assert_array_equal(hgdagger.pre_intervention_labels(labels, [4, 8], 3),
                                [1, 3, 3, 3, 2, 2, 3, 3, 2, 1])


def test_hgdagger_stops_at_the_budget_and_labels_steps(base, tmp_path):
  root, config, *_ = base
  config = copy.deepcopy(config)
  config.max_steps = 40
  config.corrector.update(stall_steps=6, correction_steps=8)
  budget = 12  # one whole intervention (8 steps) and one cut to the 4 left
  summary = hgdagger.run_hgdagger(config, str(root / "base"), budget, str(tmp_path / "hg"),
                                  max_episodes=4)
  assert summary["corrective_steps"] == budget and summary["budget_spent"]
  assert summary["interventions"] >= 2
  episodes = data.read_episodes(summary["dataset"])
  assert len(episodes) == summary["episodes"] and summary["seeds"] == [
      config.hiwm.seed_offset, config.hiwm.seed_offset + len(episodes)]
  assert summary["real_steps"] == sum(len(e["steps"]["action"]) - 1 for e in episodes)
  assert {e["episode_metadata"]["source"] for e in episodes} == {"policy"}
  pre, starts, corrective = config.hiwm.pre_intervention_steps, 0, 0
  for episode in episodes:
    labels = episode["steps"]["intervention"][:-1]
    assert set(labels) <= {rlds.POLICY, rlds.INTERVENTION, rlds.PRE_INTERVENTION}
    corrective += np.sum(labels == rlds.INTERVENTION)
    is_corr = np.append(rlds.POLICY, labels) == rlds.INTERVENTION
    for s in np.flatnonzero(~is_corr[:-1] & is_corr[1:]):
      starts += 1  # an intervention starts at s: its lead-up is pre-intervention
      assert s > 0 and labels[s - 1] == rlds.PRE_INTERVENTION
      assert set(labels[max(0, s - pre):s]) <= {rlds.PRE_INTERVENTION, rlds.INTERVENTION}
  assert corrective == budget and starts == summary["interventions"]
  assert labels[-1] == rlds.POLICY, "after the budget is spent the policy finishes the episode"
  assert summary["real_steps"] > budget


def test_hgdagger_needs_a_real_world_gate(base, tmp_path):
  root, config, *_ = base
  config = copy.deepcopy(config)
  config.corrector.gates = ("risk",)
  with pytest.raises(ValueError, match="needs a real-world gate"):
    hgdagger.run_hgdagger(config, str(root / "base"), 4)
  with pytest.raises(ValueError, match="corrective_budget"):
    hgdagger.run_hgdagger(config, str(root / "base"), 0)
