"""The real-world HG-DAgger baseline: the simulated person corrects the policy on the robot.

    summary = hgdagger.run_hgdagger(config, policy_workdir, corrective_budget, dataset_path)

The policy runs in the simulator (the real world) from the Hi-WM round's held-out seeds. The
person watches the real observations with the simulated person's gates (progress stall, expert
gap: `config.corrector`), takes over with the noisy expert for `correction_steps` steps when one
fires, then hands back; the real world cannot roll back, so the episode just goes on. Episodes
run until `corrective_budget` expert steps are spent (match Hi-WM's corrective steps); every
real step is counted, since that robot time is what Hi-WM removes.
"""
from __future__ import annotations

import collections

import jax
import ml_collections
import numpy as np
import tqdm

from hiwm_jax import envs
from hiwm_jax.data import rlds
from hiwm_jax.envs.base import TaskFns
from hiwm_jax.policies.train import load_policy
from hiwm_jax.session import correctors

REAL_GATES = ("stall", "expert_gap")  # "risk" is the world model's; the real world has none


class OnlineGate:
  """SimulatedPerson's gate, fed one real step at a time: observe(obs, proposed) -> fired."""

  def __init__(self, task: TaskFns, config: ml_collections.ConfigDict):
    gates = [g for g in config.gates if g in REAL_GATES]
    if not gates:
      raise ValueError(f"HG-DAgger needs a real-world gate among {REAL_GATES}; corrector.gates "
                       f"is {tuple(config.gates)}")
    self.gates, self.config = tuple(gates), config
    # progress and the noise-free expert's action at one observation, jitted once
    self._look = jax.jit(lambda obs: (task.progress(obs), task.expert(obs, jax.random.PRNGKey(0))))
    self.reset()

  def reset(self) -> None:
    """Forget what was seen (a new episode, or the person just handed back control)."""
    self._progress = collections.deque(maxlen=self.config.stall_steps + 1)
    self._far_run = 0

  def observe(self, obs: np.ndarray, proposed: np.ndarray) -> bool:
    c = self.config
    progress, expert = (np.asarray(x) for x in self._look(obs))
    self._progress.append(float(progress))
    fired = False
    if "stall" in self.gates and len(self._progress) > c.stall_steps:
      fired |= self._progress[-1] - self._progress[0] < c.stall_min_gain
    if "expert_gap" in self.gates:
      far = np.linalg.norm(np.asarray(proposed) - expert) > c.gap_threshold
      self._far_run = self._far_run + 1 if far else 0
      fired |= self._far_run >= c.gap_steps
    return bool(fired)


def pre_intervention_labels(labels: np.ndarray, starts, pre_steps: int) -> np.ndarray:
  """Relabels the POLICY steps in the `pre_steps` before each intervention start."""
  labels = labels.copy()
  for s in starts:
    lead = labels[max(0, s - pre_steps):s]
    lead[lead == rlds.POLICY] = rlds.PRE_INTERVENTION
  return labels


def run_hgdagger(config: ml_collections.ConfigDict, policy_workdir: str, corrective_budget: int,
                 dataset_path: str | None = None, *, max_episodes: int = 1000) -> dict:
  """Real episodes with the person in the loop until `corrective_budget` expert steps are spent
  (the episode that spends it runs to its end, policy only); writes them as an RLDS dataset
  (source "policy", labels POLICY / INTERVENTION / PRE_INTERVENTION) and returns a summary."""
  if corrective_budget < 1 or max_episodes < 1:
    raise ValueError(f"corrective_budget and max_episodes must be >= 1; got "
                     f"{corrective_budget} and {max_episodes}")
  policy, params, _ = load_policy(policy_workdir)
  correctors.check_config(config.corrector, policy.execute)
  env = envs.make(config.task, max_steps=config.max_steps)
  gate = OnlineGate(env.task, config.corrector)
  act = jax.jit(policy.act)
  noise = config.corrector.expert_noise
  expert = jax.jit(lambda obs, key: env.task.expert(obs, key, noise))
  counts = dict(episodes=0, successes=0, real_steps=0, corrective_steps=0, interventions=0)
  episodes = []
  seed = config.hiwm.seed_offset
  try:
    with tqdm.tqdm(total=corrective_budget, desc=f"{config.task} HG-DAgger", unit="corr step",
                   leave=False) as bar:
      while counts["corrective_steps"] < corrective_budget and counts["episodes"] < max_episodes:
        before = counts["corrective_steps"]
        episodes.append(_episode(env, policy, params, act, expert, gate, seed, config,
                                 corrective_budget, counts))
        bar.update(counts["corrective_steps"] - before)
        seed += 1
  finally:
    env.close()
  summary = {"task": config.task, "policy": policy_workdir, **counts,
             "corrective_budget": corrective_budget,
             "budget_spent": counts["corrective_steps"] >= corrective_budget,
             "seeds": [config.hiwm.seed_offset, seed], "dataset": None}
  if dataset_path:
    summary["dataset"] = rlds.write_dataset(
        dataset_path, episodes, obs_dim=env.task.obs_dim, action_dim=env.task.action_dim,
        description=f"HG-DAgger (simulated person, real world) corrections of {policy_workdir}")
  return summary


def _episode(env, policy, params, act, expert, gate: OnlineGate, seed: int,
             config: ml_collections.ConfigDict, budget: int, counts: dict) -> dict:
  """One real episode with interventions; updates `counts`; returns it as an RLDS episode."""
  c = config.corrector
  obs, _ = env.reset(seed=seed)
  key = jax.random.PRNGKey(seed)
  gate.reset()
  history, queue = [obs] * policy.history, []
  observations, actions, labels, rewards, starts = [obs], [], [], [], []
  expert_left, success, terminated = 0, False, False
  for t in range(env.max_steps):
    history = history[1:] + [obs]
    key_t = jax.random.fold_in(key, t)
    if not expert_left:
      if not queue:  # plan a chunk, execute its first `execute` actions (as PolicyController)
        queue = list(np.asarray(act(params, np.stack(history), key_t))[:policy.execute])
      proposed = queue.pop(0)
      left = budget - counts["corrective_steps"]
      if left > 0 and gate.observe(obs, proposed):
        expert_left, queue = min(c.correction_steps, left), []
        starts.append(t)
        counts["interventions"] += 1
    if expert_left:
      action = np.asarray(expert(obs, jax.random.fold_in(key_t, 1)))
      labels.append(rlds.INTERVENTION)
      expert_left -= 1
      counts["corrective_steps"] += 1
      if not expert_left:
        gate.reset()  # handed back: the policy gets a fresh look
    else:
      action = proposed
      labels.append(rlds.POLICY)
    obs, reward, terminated, truncated, info = env.step(action)
    observations.append(obs)
    actions.append(np.asarray(action, np.float32))
    rewards.append(reward)
    success |= info["success"]
    if terminated or truncated:
      break
  counts["episodes"] += 1
  counts["successes"] += int(success)
  counts["real_steps"] += len(actions)
  labels = pre_intervention_labels(np.asarray(labels, np.int32), starts,
                                   config.hiwm.pre_intervention_steps)
  return rlds.make_episode(np.stack(observations), np.stack(actions), rewards=rewards,
                           task=config.task, seed=seed, source="policy", success=bool(success),
                           terminated=bool(terminated), intervention=labels)
