"""Kept branches of a session -> an RLDS corrective dataset (source "world_model_correction").

Each branch becomes one episode: its observations and actions, its per-step labels (policy /
intervention / pre-intervention) and, in the episode metadata, where it sits in the tree and what
the world model judged, so a trainer can weight or filter corrections without the session.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from hiwm_jax.data import rlds
from hiwm_jax.session.tree import Branch, Session


def branch_episode(session: Session, branch: Branch, *, task: str, seed: int,
                   pre_steps: int | None = None) -> dict:
  """One branch as an RLDS episode; success and terminal are the world model's verdict.

  pre_steps: None exports the branch alone. An int prepends the lead-up: the parent branch's
  steps up to the node (from the start state, so the episode is whole), its last `pre_steps`
  labelled PRE_INTERVENTION (the steps that led to the failure; Sirius down-weights them).
  """
  node = session.node_info(branch.node)  # {id, parent, step}
  observations, actions, labels = branch.observations, branch.actions, branch.labels
  if pre_steps is not None and node["parent"] is not None:
    parent, t = session.branch(node["parent"]), node["step"]
    lead_labels = parent.labels[:t].copy()
    lead_labels[max(0, t - pre_steps):] = rlds.PRE_INTERVENTION
    observations = np.concatenate([parent.observations[:t], observations])
    actions = np.concatenate([parent.actions[:t], actions])
    labels = np.concatenate([lead_labels, labels])
  success = bool(_final(branch.verdict["success"]))
  meta = branch.meta
  correction = {
      "node": branch.node, "branch": branch.id,
      "parent_branch": -1 if node["parent"] is None else node["parent"],
      "rollback_step": branch.rollback_step,
      "branch_index": int(meta.get("branch_index", -1)),
      "corrector": str(meta.get("corrector", "")),
      "wm_checkpoint": str(meta.get("wm_checkpoint", "")),
      "verdict_success": success,
      "verdict_progress": float(_final(branch.verdict["progress"])),
      "verdict_risk": float(_final(branch.verdict["risk"])),
  }
  return rlds.make_episode(observations, actions, task=task, seed=seed,
                           source="world_model_correction", success=success, terminated=success,
                           intervention=labels, correction=correction)


def export_corrections(session: Session, branch_ids: Iterable[int], path, task: str, *,
                       seed: int | None = None, description: str = "",
                       overwrite: bool = False, pre_steps: int | None = None) -> str:
  """Writes branches `branch_ids` (in that order) as an RLDS dataset at `path` (atomically).

  seed: the episodes' seed (default: the session meta's "seed", else 0); pre_steps: see
  `branch_episode`. Returns the path.
  """
  ids = list(branch_ids)
  if not ids:
    raise ValueError("export_corrections got no branch ids; nothing to export")
  unknown = [i for i in ids if i not in session.branches()]
  if unknown:
    raise ValueError(f"branches {unknown} are not in session {session.path}; its branches: "
                     f"{session.branches()}")
  seed = int(session.meta.get("seed", 0)) if seed is None else seed
  first = session.branch(ids[0])
  obs_dim, action_dim = first.observations.shape[1], first.actions.shape[1]
  episodes = (branch_episode(session, session.branch(i), task=task, seed=seed,
                             pre_steps=pre_steps) for i in ids)
  return rlds.write_dataset(path, episodes, obs_dim=obs_dim, action_dim=action_dim,
                            description=description or f"corrections from session "
                                                       f"{session.path}",
                            overwrite=overwrite)


def _final(x) -> np.ndarray:
  """A verdict entry's value on the final state: a scalar as is, a per-step array's last entry."""
  x = np.asarray(x)
  return x.reshape(-1)[-1] if x.ndim else x
