"""The whole Hi-WM chain on the smoke config, through its entry point; a rerun resumes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _chain(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, "-m", "experiments.hiwm", "--config=experiments/configs/push.py:smoke",
       f"--config.data_dir={tmp_path / 'data'}", f"--work_dir={tmp_path / 'run'}",
       f"--out={tmp_path / 'results'}", *flags], cwd=REPO, capture_output=True, text=True, timeout=900,
      env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})


# The whole chain and its resume: about 7 minutes on a 2-core machine, about twice that on a
# slower one; its own subprocess limit (900 s) decides, not the suite's 600 s default.
@pytest.mark.timeout(1200)
def test_chain_end_to_end_then_resumes(tmp_path):
  out = _chain(tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "results" / "results.json").read_text())
  assert list(results["variants"]) == ["base", "wm_closed_loop", "hgdagger", "hiwm"]
  for v in results["variants"].values():
    assert 0 <= v["real"]["success_rate"] <= 1 and 0 <= v["wm"]["success_rate"] <= 1
    assert v["real"]["episodes"] == v["wm"]["episodes"] == results["config"]["eval"]["num_episodes"]
  hiwm = results["variants"]["hiwm"]
  rounds = results["config"]["hiwm"]["rounds"]
  assert len(results["hiwm_rounds"]) == len(results["wm_closed_loop_rounds"]) == rounds == 2
  assert results["hiwm_rounds"][1]["policy"].endswith("hiwm_policy_r0")  # round 2 corrects round 1's
  assert hiwm["corrective_steps"] == sum(r["corrective_steps"] for r in results["hiwm_rounds"]) > 0
  assert hiwm["real_steps"] == 0  # every correction happened in the world model
  hg = results["variants"]["hgdagger"]
  assert hg["corrective_steps"] == hiwm["corrective_steps"] and hg["real_steps"] > 0
  # HG-DAgger fine-tunes once, for as many steps as Hi-WM's chained rounds together
  hg_config = json.loads((tmp_path / "run" / "hgdagger_policy" / "config.json").read_text())
  assert hg_config["train"]["steps"] == rounds * results["config"]["posttrain"]["steps"]
  for name in ("table.md", "success.png", "wm_vs_real.png", "config.json"):
    assert (tmp_path / "results" / name).stat().st_size > 0, name
  assert "| push | diffusion | hiwm |" in (tmp_path / "results" / "table.md").read_text()

  again = _chain(tmp_path)  # every stage is found done and reused
  assert again.returncode == 0, again.stderr[-3000:]
  assert " train " not in again.stdout and again.stdout.count("reuse") >= 6
  assert json.loads((tmp_path / "results" / "results.json").read_text())["variants"] == \
      results["variants"]

  # A rerun whose Hi-WM rounds spent another budget refuses the stale HG-DAgger run.
  hg_file = tmp_path / "run" / "hgdagger_summary.json"
  stale = json.loads(hg_file.read_text())
  hg_file.write_text(json.dumps({**stale, "corrective_budget": stale["corrective_budget"] + 1}))
  refused = _chain(tmp_path)
  assert refused.returncode != 0 and "did hiwm.rounds change?" in refused.stderr
  assert (tmp_path / "run" / "hgdagger_policy" / "trained").exists()  # nothing deleted
  hg_file.write_text(json.dumps(stale))
  # ... and so does one whose HG-DAgger policy was fine-tuned for another number of steps.
  refused = _chain(tmp_path, "--config.posttrain.hgdagger_steps=7")
  assert refused.returncode != 0 and "was fine-tuned for" in refused.stderr
  # ... and an evaluation cached at another number of episodes is refused, not passed off.
  refused = _chain(tmp_path, "--config.eval.num_episodes=3")
  assert refused.returncode != 0 and "holds an evaluation at 2 episodes" in refused.stderr

  # Per start state, real vs WM; an eval.json from before per-episode outcomes is re-evaluated
  # (same seeds and weights: the stored count comes back) and completed, nothing else changed.
  base_eval = tmp_path / "run" / "base" / "eval.json"
  stored = json.loads(base_eval.read_text())
  old = json.loads(json.dumps(stored))
  del old["real"]["success"]
  base_eval.write_text(json.dumps(old))
  results_file = tmp_path / "results" / "results.json"
  without = json.loads(results_file.read_text())
  del without["variants"]["base"]["real"]["success"]
  results_file.write_text(json.dumps(without))
  agree = subprocess.run([sys.executable, "-m", "experiments.episode_agreement",
                          f"--results={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "MUJOCO_GL": "egl"})
  assert agree.returncode == 0, agree.stderr[-3000:]
  assert json.loads(base_eval.read_text()) == stored
  rows = json.loads((tmp_path / "episode_agreement.json").read_text())
  assert [r["variant"] for r in rows] == list(results["variants"])
  for r in rows:
    v = results["variants"][r["variant"]]
    assert r["both_succeed"] + r["wm_false_failure"] == v["real"]["successes"]
    assert r["both_succeed"] + r["wm_false_success"] == v["wm"]["successes"]
  results_file.write_text(json.dumps(results))

  # Judged again in the chain's own world model: the same WM successes (fixed keys and seeds);
  # a world model of another task is refused.
  from hiwm_jax import pipeline, world_model
  wm_dir = tmp_path / "run" / "world_model"
  judged = pipeline.judge_in_world_model(results, str(wm_dir))
  assert judged["judged_by"] == str(wm_dir)
  for name, v in judged["variants"].items():
    assert v["wm"] == results["variants"][name]["wm"]
    assert v["real"] == results["variants"][name]["real"]
  other = json.loads(json.dumps(results))
  other["config"]["task"] = "pick_place"
  with pytest.raises(ValueError, match="push world model"):
    pipeline.judge_in_world_model(other, str(wm_dir))

  # An earlier checkpoint of that world model judged on its own, beside the last one's file;
  # a step the run did not keep is refused with the steps it did.
  def eval_wm(*flags):
    return subprocess.run([sys.executable, "-m", "experiments.eval_wm", f"--workdir={wm_dir}",
                           "--fresh_episodes=0", *flags], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
  kept = sorted(int(s) for s in os.listdir(wm_dir / "checkpoints") if s.isdigit())
  assert len(kept) >= 2, kept
  before = sorted(os.listdir(wm_dir))
  first = eval_wm(f"--step={kept[0]}", "--train_episodes=2")
  assert first.returncode == 0, first.stderr[-3000:]
  judged = json.loads((wm_dir / f"eval_wm_step{kept[0]}.json").read_text())
  assert judged["step"] == kept[0] and judged["open_loop"]["1"]["starts"] > 0
  by_dataset = judged["open_loop_by_dataset"]  # the same windows, split by dataset
  assert sum(r["1"]["starts"] for r in by_dataset.values()) == judged["open_loop"]["1"]["starts"]
  assert judged["train_sample_episodes"] == 2
  assert judged["open_loop_train_sample"]["1"]["starts"] > 0
  curve = judged["open_loop_curve"]  # every horizon; the table reads it at a few
  assert curve["starts"][0] == judged["open_loop"]["1"]["starts"]
  assert sorted(os.listdir(wm_dir)) == sorted(before + [f"eval_wm_step{kept[0]}.json",
                                                        f"eval_wm_step{kept[0]}_error_growth.png"])
  missing = eval_wm("--step=7")
  assert missing.returncode != 0 and "no checkpoint at step 7" in missing.stderr

  # Evaluated again at more seeds: the chain's own seeds come first and reproduce its outcomes;
  # cached beside each policy; fewer episodes than the chain's are refused.
  n = results["config"]["eval"]["num_episodes"]
  more = pipeline.evaluate_again(results, n + 1)
  assert more["config"]["eval"]["num_episodes"] == n + 1
  for name, v in more["variants"].items():
    assert v["real"]["episodes"] == v["wm"]["episodes"] == n + 1
    assert v["real"]["success"][:n] == results["variants"][name]["real"]["success"]
    assert os.path.exists(os.path.join(v["workdir"], f"eval_{n + 1}.json"))
  with pytest.raises(ValueError, match="only adds episodes"):
    pipeline.evaluate_again(results, n - 1)
  real, wm = pipeline.outcomes([more])  # per point, in points() order
  assert real.shape == wm.shape == (4, n + 1)
  assert list(real.mean(1)) == list(pipeline.points([more])[0])
  assert pipeline.outcomes([results, more]) is None  # different episode counts
  ci, gains = pipeline.gains_interval([more]), pipeline.gains([more])
  for k in ("base", "wm_closed_loop"):
    assert ci[f"over_{k}"][0] <= gains[f"over_{k}"] <= ci[f"over_{k}"][1]
  assert pipeline.gains_interval([without]) is None  # no per-episode real outcomes

  # Fine-tuned again from the base with another recipe, each variant on its own kept data.
  env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
  sweep = subprocess.run(
      [sys.executable, "-m", "experiments.posttrain_sweep", f"--results={results_file}",
       "--recipes=4@1e-3", "--eval_episodes=2", "--val_episodes=2",
       f"--work_root={tmp_path / 'sweep'}", f"--out={tmp_path / 'sweep_out'}"],
      cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
  assert sweep.returncode == 0, sweep.stderr[-3000:]
  refit = json.loads((tmp_path / "sweep_out" / "s4_lr0.001" / "run" / "results.json").read_text())
  base_dir = results["variants"]["base"]["workdir"]
  assert refit["variants"]["base"]["workdir"] == base_dir
  assert pipeline.kept_datasets(results, "hiwm") == [
      f"run_hiwm_r{r}" for r, s in enumerate(results["hiwm_rounds"]) if s["dataset"]]
  assert pipeline.kept_datasets(results, "hgdagger") == ["run_hgdagger"]
  for name in ("wm_closed_loop", "hgdagger", "hiwm"):
    v = refit["variants"][name]
    assert v["workdir"] == str(tmp_path / "sweep" / "s4_lr0.001" / "run" / f"{name}_policy")
    assert v["real"]["episodes"] == v["wm"]["episodes"] == 2
    tuned = json.loads(open(os.path.join(v["workdir"], "config.json")).read())
    assert (tuned["train"]["steps"], tuned["train"]["lr"]) == (4, 1e-3)
    assert tuned["train"]["init_from"] == base_dir
    assert tuned["policy_data"]["datasets"] == ["demos"] + pipeline.kept_datasets(results, name)
  validation = json.loads((tmp_path / "sweep_out" / "run_validation.json").read_text())
  assert set(validation["success"]["s4_lr0.001"]) == {"wm_closed_loop", "hgdagger", "hiwm"}

  # Hi-WM with the world model refreshed by real rollouts before round 1: round 0 is the
  # chain's own (linked); the refresh's real steps are charged to Hi-WM.
  refresh = subprocess.run(
      [sys.executable, "-m", "experiments.hiwm_rerun", f"--results={results_file}",
       "--refresh_episodes=2", "--refresh_wm_steps=3", "--eval_episodes=2", "--name=refresh",
       f"--work_root={tmp_path / 'refresh'}", f"--out={tmp_path / 'refresh_out'}"],
      cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
  assert refresh.returncode == 0, refresh.stderr[-3000:]
  refreshed = json.loads((tmp_path / "refresh_out" / "run" / "results.json").read_text())
  work = tmp_path / "refresh" / "run_refresh"
  assert os.path.islink(work / "hiwm_round0") and os.path.islink(work / "hiwm_policy_r0")
  cost = refreshed["hiwm_rounds"][1]["refresh"]
  assert cost["episodes"] == 2 and cost["real_steps"] > 0
  hiwm_new = refreshed["variants"]["hiwm"]
  assert hiwm_new["real_steps"] == cost["real_steps"]
  assert hiwm_new["workdir"] == str(work / "hiwm_policy_r1")
  assert refreshed["rerun"]["chain_hiwm"]["workdir"] == hiwm["workdir"]
  assert refreshed["hiwm_rounds"][1]["world_model"] == str(work / "hiwm_world_model_r1")
  tuned_wm, _, tuned_config = world_model.load_world_model(str(work / "hiwm_world_model_r1"))
  chain_wm, _, _ = world_model.load_world_model(str(wm_dir))
  np.testing.assert_array_equal(tuned_wm.obs_stats["std"], chain_wm.obs_stats["std"])
  assert "run_refresh_hiwm_real_r1" in tuned_config.wm_data.datasets

  # The branches-per-failure ablation from the finished chain, through its entry point: every K
  # corrects the same failure states with K branches each; the chain's own K reuses its first
  # Hi-WM round.
  ablation = subprocess.run(
      [sys.executable, "-m", "experiments.ablate_branches",
       "--config=experiments/configs/push.py:smoke", f"--config.data_dir={tmp_path / 'data'}",
       f"--work_dir={tmp_path / 'run'}", "--ks=1,2", f"--out={tmp_path / 'ablation'}"],
      cwd=REPO, capture_output=True, text=True, timeout=900,
      env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
  assert ablation.returncode == 0, ablation.stderr[-3000:]
  rows = json.loads((tmp_path / "ablation" / "ablation.json").read_text())["rows"]
  assert (tmp_path / "ablation" / "config.json").exists()
  states = {r["corrected_states"] for r in rows}
  assert len(states) == 1 and states.pop() == results["hiwm_rounds"][0]["corrected_states"] > 0
  for r in rows:
    assert r["branches"] == r["k"] * r["corrected_states"]
    assert r["real"]["episodes"] == results["config"]["eval"]["num_episodes"]
  assert rows[1]["corrective_steps"] == results["hiwm_rounds"][0]["corrective_steps"]
  assert not (tmp_path / "run" / "ablate_k2_round").exists()
  assert "| 1 | " in pipeline.ablation_table("push", "diffusion", rows)


def test_episode_agreement_reads_the_combined_results_as_tabled(tmp_path):
  from experiments import episode_agreement
  run = {"task": "push", "variants": {}, "evaluated": "per run"}
  (tmp_path / "push_flow").mkdir()
  (tmp_path / "push_flow" / "results.json").write_text(json.dumps(run))
  assert episode_agreement._load(str(tmp_path)) == [run]
  tabled = {**run, "evaluated": "again, at more seeds"}
  (tmp_path / "results.json").write_text(json.dumps({"results": [tabled], "gains": {}}))
  assert episode_agreement._load(str(tmp_path)) == [tabled]


def test_stored_outcomes_from_results_then_from_eval_json_at_the_same_seeds(tmp_path):
  from hiwm_jax import pipeline
  variant = {"workdir": str(tmp_path), "real": {"seeds": [10, 13], "success": [True, False, True]}}
  assert pipeline.stored_outcomes(variant) == [True, False, True]
  del variant["real"]["success"]
  assert pipeline.stored_outcomes(variant) is None  # no eval.json
  (tmp_path / "eval.json").write_text(json.dumps({"real": {"seeds": [10, 13],
                                                           "success": [False, False, True]}}))
  assert pipeline.stored_outcomes(variant) == [False, False, True]
  variant["real"]["seeds"] = [20, 23]  # eval.json evaluated other seeds: not these outcomes
  assert pipeline.stored_outcomes(variant) is None
