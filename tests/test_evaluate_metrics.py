"""WM success of a policy from real start states, and real-vs-WM agreement metrics."""
import jax
import numpy as np
import pytest

from hiwm_jax import evaluate, hiwm_round, rollout

STEPS = 16


def test_agreement_of_a_perfect_ranking():
  real = [0.1, 0.4, 0.5, 0.9]
  out = evaluate.agreement(real, [0.5 * r + 0.2 for r in real])
  assert out == pytest.approx({"pearson": 1.0, "spearman": 1.0, "mmrv": 0.0})


def test_agreement_with_a_known_rank_violation():
  # policies 0 and 1 swap places in the WM: each one's worst violation is |0.2 - 0.5| = 0.3
  out = evaluate.agreement([0.2, 0.5, 0.9], [0.6, 0.4, 0.8])
  assert out["mmrv"] == pytest.approx((0.3 + 0.3 + 0.0) / 3)
  assert out["spearman"] == pytest.approx(0.5)  # ranks (1,2,3) vs (2,1,3)
  assert out["pearson"] == pytest.approx(np.corrcoef([0.2, 0.5, 0.9], [0.6, 0.4, 0.8])[0, 1])
  # the largest violation counts, not the sum: 0 is misranked against 1 (0.1) and 2 (0.6)
  out = evaluate.agreement([0.2, 0.3, 0.8], [0.9, 0.5, 0.6])
  assert out["mmrv"] == pytest.approx((0.6 + 0.1 + 0.6) / 3)


def test_agreement_ties_and_bad_input():
  out = evaluate.agreement([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])
  assert out["mmrv"] == 0.0 and np.isnan(out["pearson"]) and np.isnan(out["spearman"])
  assert evaluate.agreement([0.1, 0.2, 0.2], [0.1, 0.3, 0.3])["spearman"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match="same length >= 2"):
    evaluate.agreement([0.1, 0.2], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match="same length >= 2"):
    evaluate.agreement([0.1], [0.1])
  with pytest.raises(ValueError, match="must be finite"):
    evaluate.agreement([0.1, float("nan")], [0.1, 0.2])


@pytest.fixture(scope="module")
def parts(tiny_push_models):
  """A small untrained push world model and flow policy, and real first observations."""
  wm, wm_params, policy, policy_params = tiny_push_models
  first_obs = hiwm_round.start_observations("push", [evaluate.EVAL_SEED_OFFSET + i
                                                     for i in range(3)])
  return wm, wm_params, policy, policy_params, first_obs


def test_evaluate_wm_rates_are_deterministic_and_match_single_rollouts(parts):
  wm, wm_params, policy, policy_params, first_obs = parts
  key = jax.random.PRNGKey(4)
  summary = evaluate.evaluate_wm(wm, wm_params, policy, policy_params, first_obs, key, STEPS)
  assert summary == evaluate.evaluate_wm(wm, wm_params, policy, policy_params, first_obs, key,
                                         STEPS), "same key, same verdicts"
  assert summary["episodes"] == 3 and 0.0 <= summary["success_rate"] <= 1.0
  assert 0.0 <= summary["ci95"][0] <= summary["success_rate"] <= summary["ci95"][1] <= 1.0
  assert summary["successes"] == sum(summary["success"])
  # rollout i is rollout.run alone from first_obs[i] with the i-th split key
  i = 1
  carry = rollout.start(wm, wm_params, first_obs[i][None], policy.history)
  alone = rollout.run(wm, wm_params, policy, policy_params, carry,
                      jax.random.split(key, 3)[i], STEPS)
  assert summary["success"][i] == bool(alone.done[-1])


def test_evaluate_wm_rejects_bad_start_states(parts):
  wm, wm_params, policy, policy_params, first_obs = parts
  with pytest.raises(ValueError, match=r"first_obs must be \[N >= 1, obs_dim=39\]"):
    evaluate.evaluate_wm(wm, wm_params, policy, policy_params, first_obs[0],
                         jax.random.PRNGKey(0), STEPS)


def test_episode_agreement_counts_each_kind_of_disagreement():
  real = [True, True, False, False, False]
  wm = [True, False, True, True, False]
  a = evaluate.episode_agreement(real, wm)
  assert (a["both_succeed"], a["wm_false_failure"], a["wm_false_success"], a["both_fail"]) == \
      (1, 1, 2, 1)
  assert a["agreement"] == 2 / 5 and a["wm_false_success_rate"] == 2 / 3
  assert evaluate.episode_agreement([True], [True])["wm_false_success_rate"] is None
  with pytest.raises(ValueError, match="same length"):
    evaluate.episode_agreement([True, False], [True])


def test_agreement_interval_brackets_the_point_estimate_and_shrinks_with_episodes():
  rng = np.random.default_rng(0)
  rates = np.array([0.1, 0.3, 0.5, 0.7, 0.9])

  def outcomes(episodes):  # the WM agrees with the real episode 85% of the time
    real = rng.random((5, episodes)) < rates[:, None]
    return real, np.where(rng.random(real.shape) < 0.85, real, ~real)

  real, wm = outcomes(50)
  point = evaluate.agreement(real.mean(1), wm.mean(1))
  ci = evaluate.agreement_interval(real, wm, num_resamples=500)
  for k in ("pearson", "spearman", "mmrv"):
    assert ci[k][0] <= point[k] <= ci[k][1], k
  assert ci == evaluate.agreement_interval(real, wm, num_resamples=500), "fixed seed"
  wide = ci["pearson"][1] - ci["pearson"][0]
  real, wm = outcomes(800)
  ci = evaluate.agreement_interval(real, wm, num_resamples=500)
  assert ci["pearson"][1] - ci["pearson"][0] < wide / 2
  with pytest.raises(ValueError, match=r"\[policies >= 2, episodes >= 1\]"):
    evaluate.agreement_interval(real[:1], wm[:1])
