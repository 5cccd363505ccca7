"""One Hi-WM round end to end on tiny models: rollouts, gating, branching, session, export."""
import os

import numpy as np
import pytest

from experiments.configs import push as push_config
from hiwm_jax import collect, data, hiwm_round, world_model
from hiwm_jax.policies.train import train_policy
from hiwm_jax.session import Session


@pytest.fixture(scope="module")
def round_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("hiwm")
  config = push_config.get_config("smoke")
  config.data_dir = str(root / "data")
  collect.collect_task(config)
  train_policy(config, str(root / "policy"))
  world_model.train_world_model(config, str(root / "wm"))
  config.corrector.update(keep="all", gates=("stall",), stall_steps=4)
  config.hiwm.export_lead_up = True
  summary = hiwm_round.run_round(config, str(root / "policy"), str(root / "wm"),
                                 str(root / "round"), str(root / "corrections"))
  return root, config, summary


def test_round_counts_add_up(round_dir):
  _, config, s = round_dir
  assert s["rollouts"] == config.hiwm.num_rollouts == s["wm_successes"] + s["wm_failures"]
  assert s["corrected_states"] == s["failures_caught"] + s["false_alarms"] > 0
  assert s["branches"] == s["corrected_states"] * config.corrector.num_branches
  assert s["kept"] == s["branches"]  # keep="all"
  assert 0 < s["corrective_steps"] <= s["branches"] * config.corrector.correction_steps


def test_session_holds_every_rollout_and_branch(round_dir):
  root, config, s = round_dir
  session = Session.open(root / "round" / "session")
  infos = [session.branch_info(b) for b in session.branches()]
  kinds = [i["meta"]["kind"] for i in infos]
  assert kinds.count("policy") == s["rollouts"] and kinds.count("correction") == s["branches"]
  for info in infos:
    if info["meta"]["kind"] == "correction":
      node = session.node_info(info["node"])
      assert node["step"] == info["rollback_step"] <= info["meta"]["failure_step"]
      assert node["step"] % 8 == 0  # on a plan boundary (policy.execute)


def test_exported_corrections_carry_labels_and_provenance(round_dir):
  root, config, s = round_dir
  episodes = data.read_episodes(s["dataset"])
  assert len(episodes) == s["kept"]
  total_corrective = 0
  for ep in episodes:
    meta, labels = ep["episode_metadata"], ep["steps"]["intervention"][:-1]
    assert meta["source"] == "world_model_correction" and meta["task"] == "push"
    assert meta["wm_checkpoint"] == str(root / "wm")
    t = meta["rollback_step"]
    # the policy's lead-up, its last steps pre-intervention, then the person's correction
    assert np.all(labels[:max(0, t - config.hiwm.pre_intervention_steps)] == data.POLICY)
    assert np.all(labels[max(0, t - config.hiwm.pre_intervention_steps):t]
                  == data.PRE_INTERVENTION)
    assert labels[t] == data.INTERVENTION
    total_corrective += int(np.sum(labels == data.INTERVENTION))
  assert total_corrective == s["kept_corrective_steps"]


def test_round_refuses_to_overwrite_a_session(round_dir):
  root, config, _ = round_dir
  before = sorted(os.listdir(root / "round" / "session"))
  config_before = (root / "round" / "config.json").read_bytes()
  with pytest.raises(ValueError, match="not an empty directory"):
    hiwm_round.run_round(config, str(root / "policy"), str(root / "wm"), str(root / "round"))
  assert sorted(os.listdir(root / "round" / "session")) == before
  assert (root / "round" / "config.json").read_bytes() == config_before


def test_closed_loop_baseline_keeps_the_world_models_successes(round_dir):
  root, config, s = round_dir
  base = hiwm_round.run_round(config, str(root / "policy"), str(root / "wm"),
                              str(root / "closed_loop"), str(root / "closed_loop_data"),
                              person=False)
  # the same rollouts as the Hi-WM round (same seeds and keys), no person
  assert (base["wm_successes"], base["wm_failures"]) == (s["wm_successes"], s["wm_failures"])
  assert base["kept"] == base["wm_successes"] and base["branches"] == 0
  if base["kept"]:
    episodes = data.read_episodes(base["dataset"])
    assert all(np.all(ep["steps"]["intervention"][:-1] == data.POLICY) for ep in episodes)


def test_later_rounds_start_from_new_states_when_asked(round_dir):
  root, config, s = round_dir
  c = config.copy_and_resolve_references()
  assert hiwm_round.round_seed_offset(c.hiwm, 3) == c.hiwm.seed_offset  # default: same starts
  c.hiwm.new_starts_each_round = True
  n = c.hiwm.num_rollouts
  assert hiwm_round.round_seed_offset(c.hiwm, 2) == c.hiwm.seed_offset + 2 * n
  with pytest.raises(ValueError, match="round_index"):
    hiwm_round.round_seed_offset(c.hiwm, -1)
  later = hiwm_round.run_round(c, str(root / "policy"), str(root / "wm"), str(root / "round1"),
                               person=False, round_index=1)
  session = Session.open(root / "round1" / "session")
  seeds = sorted(session.branch_info(b)["meta"]["seed"] for b in session.branches())
  assert seeds == list(range(c.hiwm.seed_offset + n, c.hiwm.seed_offset + 2 * n))
  assert later["rollouts"] == n
