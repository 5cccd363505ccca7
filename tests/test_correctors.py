"""The simulated person: when it calls a rollout wrong, where it rolls back, what it keeps."""
import jax
import numpy as np
import pytest

from hiwm_jax import envs, rollout
from hiwm_jax.session import correctors

T = 40


def _rollout(progress, *, risk=None, valid=None, done=None, policy_actions=None,
             observations=None):
  """A finished rollout with the given per-step signals (what the person watches)."""
  task = envs.task_fns("push")
  obs = np.zeros((T + 1, task.obs_dim), np.float32) if observations is None else observations
  zeros = np.zeros(T + 1, np.float32)
  return rollout.Rollout(
      cache=None, observations=obs, actions=np.zeros((T, 4), np.float32),
      policy_actions=np.zeros((T, 4), np.float32) if policy_actions is None else policy_actions,
      labels=np.ones(T, np.int32), success=zeros > 0,
      progress=np.asarray(progress, np.float32), risk=zeros if risk is None else risk,
      valid=np.ones(T + 1, bool) if valid is None else valid,
      done=np.zeros(T + 1, bool) if done is None else done)


def _person(**overrides):
  config = correctors.default_config()
  config.update({"gates": ("stall",), **overrides})
  return correctors.SimulatedPerson(envs.task_fns("push"), config)


def test_stall_gate_fires_when_progress_stops():
  person = _person(stall_steps=10, stall_min_gain=0.05)
  rising = np.linspace(0, 1, T + 1)
  assert person.failure_step(_rollout(rising)) is None
  stalled = np.minimum(rising, 0.3)  # progress stops at step 12
  assert person.failure_step(_rollout(stalled)) == 12 + 10 - 1  # first window with < 0.05 gain


def test_no_gate_after_success_and_invalid_states_always_fire():
  person = _person(stall_steps=5)
  done = np.arange(T + 1) >= 3
  assert person.failure_step(_rollout(np.zeros(T + 1), done=done)) is None
  valid = np.arange(T + 1) != 2
  assert person.failure_step(_rollout(np.linspace(0, 1, T + 1), valid=valid)) == 2


def test_risk_gate():
  person = _person(gates=("risk",), risk_threshold=2.0)
  risk = np.zeros(T + 1, np.float32)
  risk[17] = 2.5
  assert person.failure_step(_rollout(np.zeros(T + 1), risk=risk)) == 17


def test_expert_gap_gate_needs_consecutive_disagreement():
  task = envs.task_fns("push")
  obs = np.tile(np.asarray(envs.make("push").reset(seed=0)[0]), (T + 1, 1))
  expert = np.asarray(jax.vmap(lambda o: task.expert(o, jax.random.PRNGKey(0)))(obs[:T]))
  person = _person(gates=("expert_gap",), gap_threshold=0.5, gap_steps=3)
  assert person.failure_step(_rollout(np.zeros(T + 1), policy_actions=expert,
                                      observations=obs)) is None
  wrong = expert.copy()
  wrong[[5, 20, 21, 22], 0] += 1.0  # one step off, then three in a row
  assert person.failure_step(_rollout(np.zeros(T + 1), policy_actions=wrong,
                                      observations=obs)) == 22


def test_rollback_step_lands_on_a_plan_boundary():
  person = _person(rollback_steps=8)
  assert person.rollback_step(30, execute=8) == 16
  assert person.rollback_step(5, execute=8) == 0


def test_config_errors_name_the_problem():
  config = correctors.default_config()
  with pytest.raises(ValueError, match="multiple of policy.execute"):
    correctors.check_config(_with(config, correction_steps=12), execute=8)
  with pytest.raises(ValueError, match="corrector.gates"):
    correctors.check_config(_with(config, gates=("stall", "vibes")), execute=8)
  with pytest.raises(ValueError, match="corrector.keep"):
    correctors.check_config(_with(config, keep="best"), execute=8)


def _with(config, **updates):
  config = config.copy_and_resolve_references()
  config.update(updates)
  return config


@pytest.mark.parametrize("gates", [("stall",), ("expert_gap",), ("stall", "expert_gap")])
def test_real_world_gate_fires_where_the_world_model_gate_does(gates):
  """HG-DAgger's step-by-step gate and the person's whole-rollout gate: the same first step."""
  from hiwm_jax import hgdagger
  task = envs.task_fns("push")
  obs = np.tile(np.asarray(envs.make("push").reset(seed=0)[0]), (T + 1, 1))
  goal = obs[0, 36:39]
  moved = np.minimum(np.arange(T + 1), 12)[:, None] / 12  # the object nears the goal, then stops
  obs[:, 4:7] = obs[0, 4:7] + 0.5 * moved * (goal - obs[0, 4:7])
  progress = np.asarray(jax.vmap(task.progress)(obs))
  expert = np.asarray(jax.vmap(lambda o: task.expert(o, jax.random.PRNGKey(0)))(obs[:T]))
  proposed = expert.copy()
  proposed[[3, 15, 16, 17], 0] += 1.0
  person = _person(gates=gates, stall_steps=6, stall_min_gain=1e-3, gap_threshold=0.5,
                   gap_steps=3)
  batch = person.failure_step(_rollout(progress, policy_actions=proposed, observations=obs))
  online = hgdagger.OnlineGate(task, person.config)
  first = next(t for t in range(T) if online.observe(obs[t], proposed[t]))
  assert batch is not None and first == batch
