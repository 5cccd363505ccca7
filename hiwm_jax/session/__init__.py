"""The intervention tree (nodes = cached WM states, branches = who acted), persisted crash-safe,
and export of kept branches to an RLDS corrective dataset."""
from hiwm_jax.session.export import branch_episode, export_corrections
from hiwm_jax.session.tree import (BRANCH_LABELS, VERDICT_KEYS, Branch, Node, Session,
                                   SessionError)

__all__ = ["BRANCH_LABELS", "VERDICT_KEYS", "Branch", "Node", "Session", "SessionError",
           "branch_episode", "export_corrections"]
