"""One Hi-WM round: the base policy rolls out in the world model, a person corrects it there.

    summary = hiwm_round.run_round(config, policy_workdir, wm_workdir, out_dir)

Start states are real first observations at held-out seeds (the simulator is only reset, never
stepped). All rollouts run as one vmapped scan; the person (`config.corrector`) watches each
through what the world model shows, rolls back before the failure, and tries K corrections
from there in one vmapped call. Everything goes into a crash-safe session (`out_dir/session`);
the kept corrections, each with the policy's lead-up, are exported as an RLDS dataset.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from hiwm_jax import checkpoint, envs, rollout, world_model
from hiwm_jax.data import rlds
from hiwm_jax.policies.train import load_policy
from hiwm_jax.session import Session, correctors, export_corrections

SESSION_DIR, SUMMARY_FILE = "session", "hiwm_summary.json"


def start_observations(task: str, seeds) -> np.ndarray:
  """Real first observations [N, obs_dim] at these seeds: the robot's start states."""
  env = envs.make(task)
  try:
    return np.stack([env.reset(seed=int(s))[0] for s in seeds]).astype(np.float32)
  finally:
    env.close()


def round_seed_offset(hiwm_config: ml_collections.ConfigDict, round_index: int) -> int:
  """The first start-state seed of a round: the same starts every round, or the next
  `num_rollouts` unseen ones (new real first observations cost a camera frame, no robot time)."""
  if round_index < 0:
    raise ValueError(f"round_index must be >= 0; got {round_index}")
  step = hiwm_config.num_rollouts if hiwm_config.new_starts_each_round else 0
  return hiwm_config.seed_offset + round_index * step


def _verdict(out: rollout.Rollout, length: int) -> dict:
  """The world model's per-step verdict over the first `length` steps of a rollout."""
  return {"success": np.asarray(out.done[:length + 1]),
          "progress": np.asarray(out.progress[:length + 1]),
          "risk": np.asarray(out.risk[:length + 1])}


def _length(out: rollout.Rollout, limit: int) -> int:
  """Steps until the world model first judges success (inclusive), at most `limit`."""
  done = np.flatnonzero(np.asarray(out.done[1:limit + 1]))
  return int(done[0]) + 1 if len(done) else limit


def _add_rollout(session: Session, node: int, out: rollout.Rollout, length: int, t0: int,
                 meta: dict) -> int:
  return session.add_branch(node, t0, np.asarray(out.actions[:length]),
                            np.asarray(out.labels[:length]),
                            np.asarray(out.observations[:length + 1]), _verdict(out, length),
                            meta)


def run_round(config: ml_collections.ConfigDict, policy_workdir: str, wm_workdir: str,
              out_dir: str, dataset_path: str | None = None, person: bool = True,
              round_index: int = 0) -> dict:
  """Rollouts, gating, rollback, branching and export; returns (and saves) the summary.

  person=False is the WM closed-loop baseline: the same rollouts, no person; the rollouts the
  world model judges successful are kept (and exported) instead of corrections.
  round_index picks the start states when `hiwm.new_starts_each_round` is set.
  """
  c = config.hiwm
  policy, policy_params, _ = load_policy(policy_workdir)
  wm, wm_params, _ = world_model.load_world_model(wm_workdir)
  if wm.task.name != config.task:
    raise ValueError(f"the world model in {wm_workdir} is for {wm.task.name}, not {config.task}")
  corrector = correctors.SimulatedPerson(wm.task, config.corrector)
  correctors.check_config(config.corrector, policy.execute)
  horizon = config.max_steps or wm.task.max_steps
  first_seed = round_seed_offset(c, round_index)
  session = Session.create(os.path.join(out_dir, SESSION_DIR),  # refuses to reuse a session
                           {"task": config.task, "policy": os.path.abspath(policy_workdir),
                            "world_model": os.path.abspath(wm_workdir), "seed": first_seed})
  checkpoint.save_config(out_dir, config)

  seeds = np.arange(first_seed, first_seed + c.num_rollouts)
  first_obs = start_observations(config.task, seeds)
  starts = jax.vmap(lambda o: rollout.start(wm, wm_params, o[None], policy.history))(
      jnp.asarray(first_obs))
  rng = jax.random.PRNGKey(c.seed)
  run_all = jax.jit(jax.vmap(lambda carry, key: rollout.run(
      wm, wm_params, policy, policy_params, carry, key, horizon)))
  outs = rollout.as_numpy(run_all(starts, jax.random.split(jax.random.fold_in(rng, 0),
                                                           c.num_rollouts)))
  correct = jax.jit(lambda carry, key, t0: corrector.correct(
      wm, wm_params, policy, policy_params, carry, key, c.branch_steps, t0))

  counts = dict(rollouts=c.num_rollouts, wm_successes=0, wm_failures=0, failures_caught=0,
                false_alarms=0, corrected_states=0, branches=0, corrective_steps=0, kept=0,
                kept_corrective_steps=0)
  kept_ids = []
  for i in tqdm.trange(c.num_rollouts, desc=f"{config.task} Hi-WM round", unit="rollout"):
    out = jax.tree.map(lambda x: x[i], outs)
    failed = not bool(out.done[-1])
    counts["wm_failures" if failed else "wm_successes"] += 1
    root = session.add_node(rollout.rollback(out.cache, 0), out.cache.obs_history[0])
    length = _length(out, horizon)
    policy_branch = _add_rollout(session, root, out, length, 0,
                                 {"kind": "policy", "rollout": i, "seed": int(seeds[i])})
    if not person:  # the closed-loop baseline keeps the world model's successes
      if not failed:
        kept_ids.append(policy_branch)
        counts["kept"] += 1
      continue
    failure = corrector.failure_step(out)
    if failure is None or failure >= length:
      continue
    counts["failures_caught" if failed else "false_alarms"] += 1
    t = corrector.rollback_step(failure, policy.execute)
    carry = rollout.rollback(out.cache, t)
    node = session.add_node(carry, carry.obs_history, parent=policy_branch, step=t)
    branches = rollout.as_numpy(correct(carry, jax.random.fold_in(rng, 1 + i), t))
    keep = corrector.keep(branches)
    counts["corrected_states"] += 1
    for k in range(len(keep)):
      branch = jax.tree.map(lambda x: x[k], branches)
      steps = _length(branch, max(1, horizon - t))
      corrective = int(np.sum(branch.labels[:steps] == rlds.INTERVENTION))
      bid = _add_rollout(session, node, branch, steps, t, {
          "kind": "correction", "rollout": i, "branch_index": k, "failure_step": failure,
          "kept": bool(keep[k]), "corrector": "simulated_person", "wm_checkpoint": wm_workdir})
      counts["branches"] += 1
      counts["corrective_steps"] += corrective
      if keep[k]:
        kept_ids.append(bid)
        counts["kept"] += 1
        counts["kept_corrective_steps"] += corrective

  summary = {"task": config.task, "mode": "hiwm" if person else "wm_closed_loop",
             "policy": policy_workdir, "world_model": wm_workdir, "session": session.path,
             **counts, "dataset": None}
  if kept_ids and dataset_path:
    summary["dataset"] = export_corrections(
        session, kept_ids, dataset_path, config.task,
        pre_steps=c.pre_intervention_steps if person and c.export_lead_up else None,
        description=f"Hi-WM corrections of {policy_workdir} in {wm_workdir}")
  with open(os.path.join(out_dir, SUMMARY_FILE), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def summary_line(s: dict) -> str:
  if s["mode"] == "wm_closed_loop":
    return (f"{s['task']} WM closed loop: {s['rollouts']} WM rollouts, {s['wm_successes']} "
            f"judged successful and kept")
  return (f"{s['task']}: {s['rollouts']} WM rollouts, {s['wm_failures']} failed, "
          f"{s['failures_caught']} caught ({s['false_alarms']} false alarms), "
          f"{s['branches']} branches from {s['corrected_states']} states, "
          f"{s['corrective_steps']} corrective steps, {s['kept']} kept "
          f"({s['kept_corrective_steps']} corrective steps)")
