"""The intervention tree: nodes are cached world-model states, branches are who acted from them.

A session lives in a work directory and survives a crash (kill -9 loses at most the branch being
added; reopening resumes it):

  <dir>/session.json          format marker, version and the caller's metadata (written once)
  <dir>/journal.jsonl         one JSON line per node or branch, appended and fsynced
  <dir>/nodes/<id>.npz        a node's state pytree (leaves + key paths) and observation history
  <dir>/branches/<id>.npz     a branch's actions, labels, observations and verdict

An array file is written atomically and its journal line appended only once it is in place, so
every journal entry refers to a complete file (checked by sha256 when read). A node's parent is
the branch whose rollout produced its state (None for a start state from real observations), so
the tree alternates node -> branches -> nodes. One process writes a session at a time.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import flax.struct
import numpy as np

from hiwm_jax.data import rlds
from hiwm_jax.session import arrays, journal

META_FILE, JOURNAL_FILE = "session.json", "journal.jsonl"
NODES_DIR, BRANCHES_DIR = "nodes", "branches"
_FORMAT, _VERSION = "hiwm_jax.session", 1
# Who chose each step of a branch: the policy or the person (rlds labels).
BRANCH_LABELS = (rlds.POLICY, rlds.INTERVENTION, rlds.PRE_INTERVENTION)
VERDICT_KEYS = ("success", "progress", "risk")
_UNTOUCHED = "nothing in it was changed"
# Journal entry kind -> (its table on Session, its folder, the keys its entries carry).
_KINDS = {
    "node": ("_nodes", NODES_DIR, {"parent", "step", "sha256"}),
    "branch": ("_branches", BRANCHES_DIR,
               {"node", "rollback_step", "T", "verdict", "meta", "sha256"}),
}


class SessionError(ValueError):
  """A session directory is missing, not a session, or damaged."""


@flax.struct.dataclass
class Node:
  """A cached world-model state to branch from, and the observations that led to it."""
  state: Any
  obs_history: np.ndarray  # [H, obs_dim]
  id: int = flax.struct.field(pytree_node=False)
  parent: int | None = flax.struct.field(pytree_node=False, default=None)  # branch id
  step: int | None = flax.struct.field(pytree_node=False, default=None)  # step in that branch


@flax.struct.dataclass
class Branch:
  """One continuation from a node: the actions taken, who chose them, what the WM showed and
  what it judged."""
  actions: np.ndarray  # [T, A] float32
  labels: np.ndarray  # [T] int32, one of BRANCH_LABELS
  observations: np.ndarray  # [T+1, obs_dim] float32
  verdict: dict  # {success, progress, risk, ...}: scalars or per-step arrays
  id: int = flax.struct.field(pytree_node=False)
  node: int = flax.struct.field(pytree_node=False)
  rollback_step: int = flax.struct.field(pytree_node=False)
  meta: dict = flax.struct.field(pytree_node=False, default_factory=dict)


class Session:
  """A session directory opened for reading and appending. Use `create` or `open`."""

  def __init__(self, path: str, meta: dict, entries: list[tuple[int, dict]], intact: int):
    self.path, self.meta = path, meta
    self._nodes: dict[int, dict] = {}
    self._branches: dict[int, dict] = {}
    for number, entry in entries:
      self._admit(number, entry)
    self._writer = journal.Writer(os.path.join(path, JOURNAL_FILE), intact)

  # --- opening ---------------------------------------------------------------------------------

  @classmethod
  def create(cls, path, meta: Mapping[str, Any] | None = None) -> "Session":
    """A new session in `path`, which must not exist or be an empty directory."""
    path = os.path.abspath(os.fspath(path))
    meta = dict(meta or {})
    _check_json("session meta", meta)
    if os.path.lexists(path) and (not os.path.isdir(path) or os.listdir(path)):
      raise SessionError(f"cannot create a session in {path}: it is not an empty directory; "
                         "choose a new directory, or Session.open it if it is a session")
    os.makedirs(path, exist_ok=True)
    for folder in (NODES_DIR, BRANCHES_DIR):
      os.makedirs(os.path.join(path, folder))
    open(os.path.join(path, JOURNAL_FILE), "xb").close()
    # session.json last, atomically: a directory without it was never a session.
    tmp = os.path.join(path, f".{META_FILE}.tmp")
    with open(tmp, "w") as f:
      json.dump({"format": _FORMAT, "version": _VERSION, "meta": meta}, f, indent=2)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, META_FILE))
    arrays.fsync_dir(path)
    return cls(path, meta, [], 0)

  @classmethod
  def open(cls, path) -> "Session":
    """The session in `path`, to read and continue; raises SessionError if it is not intact."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
      what = "it is not a directory" if os.path.lexists(path) else "directory does not exist"
      raise SessionError(f"no session at {path}: {what}; start one with Session.create")
    meta_file = os.path.join(path, META_FILE)
    if not os.path.isfile(meta_file):
      raise SessionError(f"{path} is not a session (no {META_FILE}); open the directory "
                         "Session.create made, or create a new session in an empty directory")
    try:
      with open(meta_file) as f:
        head = json.load(f)
      if head.get("format") != _FORMAT or not isinstance(head.get("meta"), dict):
        raise ValueError(f"format is {head.get('format')!r}, expected {_FORMAT!r}")
    except (OSError, ValueError, AttributeError) as e:
      raise SessionError(f"session meta file {meta_file} is unreadable or garbled ({e}); "
                         f"restore it from a backup or start a new session elsewhere; "
                         f"{_UNTOUCHED}") from e
    if head.get("version") != _VERSION:
      raise SessionError(f"session {path} has format version {head.get('version')!r}; this "
                         f"code reads version {_VERSION}; {_UNTOUCHED}")
    journal_file = os.path.join(path, JOURNAL_FILE)
    try:
      entries, intact = journal.read(journal_file)
    except (OSError, journal.JournalError) as e:
      raise SessionError(f"the journal of session {path} is damaged: {e}; restore "
                         f"{JOURNAL_FILE} from a backup; {_UNTOUCHED}") from e
    return cls(path, head["meta"], entries, intact)

  def _admit(self, number: int, entry: dict) -> None:
    """Checks one journal entry against the directory and the entries before it."""
    where = f"journal line {number} of session {self.path}"
    try:
      kind, id_, file = entry["kind"], entry["id"], entry["file"]
      table, folder, keys = _KINDS[kind]
      table = getattr(self, table)
      if not isinstance(id_, int) or id_ in table:
        raise ValueError(f"{kind} id {id_!r} is not a new integer")
      if file != f"{folder}/{id_}.npz" or not keys <= set(entry):
        raise ValueError(f"{kind} entries name {folder}/<id>.npz and have keys {sorted(keys)}")
      if kind == "branch" and entry["node"] not in self._nodes:
        raise ValueError(f"branch {id_} starts from unknown node {entry['node']!r}")
      if kind == "node" and entry["parent"] is not None and entry["parent"] not in self._branches:
        raise ValueError(f"node {id_} has unknown parent branch {entry['parent']!r}")
    except (KeyError, TypeError, ValueError) as e:
      raise SessionError(f"{where} is not a valid entry ({type(e).__name__}: {e}); the journal "
                         f"was edited or damaged; {_UNTOUCHED}") from e
    if not os.path.isfile(os.path.join(self.path, file)):
      raise SessionError(f"{where} refers to {file}, which is missing; restore that file (or "
                         f"the whole directory) from a backup; {_UNTOUCHED}")
    table[id_] = entry

  # --- adding ----------------------------------------------------------------------------------

  def add_node(self, state: Any, obs_history, parent: int | None = None,
               step: int | None = None) -> int:
    """Caches a world-model state (any pytree of arrays); returns the new node id.

    parent/step: the branch whose rollout reached this state and at which step (0..T), or None
    for a start state.
    """
    if parent is None:
      if step is not None:
        raise ValueError(f"step={step} needs the parent branch it indexes")
    else:
      if parent not in self._branches:
        raise ValueError(f"unknown parent branch {parent!r}; branches: {sorted(self._branches)}")
      T = self._branches[parent]["T"]
      if not _is_int(step) or not 0 <= step <= T:
        raise ValueError(f"step must be an int in [0, {T}] of parent branch {parent}; got "
                         f"{step!r}")
      step = int(step)
    history = np.asarray(obs_history) if not hasattr(obs_history, "dtype") else obs_history
    if history.dtype == object or history.ndim < 1:
      raise ValueError(f"obs_history must be an array [H, obs_dim]; got {history.dtype} "
                       f"{history.shape}")
    payload = {**arrays.tree_to_arrays(state, "state/"),
               **arrays.tree_to_arrays(history, "obs_history/")}
    id_ = _next_id(self._nodes)
    entry = {"kind": "node", "id": id_, "parent": parent, "step": step}
    return self._commit(entry, NODES_DIR, payload, self._nodes)

  def add_branch(self, node_id: int, rollback_step: int, actions, labels, observations,
                 verdict: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> int:
    """Records one continuation from node `node_id`; returns the new branch id.

    actions [T, A]; labels [T] (rlds POLICY / INTERVENTION / PRE_INTERVENTION); observations
    [T+1, obs_dim]; verdict {success, progress, risk, ...} (scalars or per-step arrays); meta:
    JSON, e.g. {"branch_index": k, "corrector": name, "wm_checkpoint": path}.
    """
    if node_id not in self._nodes:
      raise ValueError(f"unknown node {node_id!r}; nodes: {sorted(self._nodes)}")
    if not _is_int(rollback_step) or rollback_step < 0:
      raise ValueError(f"rollback_step must be an int >= 0; got {rollback_step!r}")
    act = _finite("actions", actions, 2)  # [T, A]
    obs = _finite("observations", observations, 2)  # [T+1, obs_dim]
    T = act.shape[0]
    if T < 1 or obs.shape[0] != T + 1:
      raise ValueError(f"need actions [T, A] with T >= 1 and observations [T+1, obs_dim]; got "
                       f"actions {act.shape} and observations {obs.shape}")
    lab = _labels(labels, T)
    ver = _verdict(verdict)
    meta = dict(meta or {})
    _check_json("branch meta", meta)
    payload = {"actions": act, "labels": lab, "observations": obs,
               **{f"verdict/{k}": v for k, v in ver.items()}}
    entry = {"kind": "branch", "id": _next_id(self._branches), "node": int(node_id),
             "rollback_step": int(rollback_step), "T": T, "verdict": sorted(ver), "meta": meta}
    return self._commit(entry, BRANCHES_DIR, payload, self._branches)

  def _commit(self, entry: dict, folder: str, payload: dict, table: dict) -> int:
    """Array file in place first, then its journal line: an entry never names a partial file."""
    file = f"{folder}/{entry['id']}.npz"
    entry["file"] = file
    entry["sha256"] = arrays.write_npz(os.path.join(self.path, file), payload)
    self._writer.append(entry)
    table[entry["id"]] = entry
    return entry["id"]

  # --- reading ---------------------------------------------------------------------------------

  def nodes(self) -> list[int]:
    """Node ids, in the order added."""
    return list(self._nodes)

  def branches(self, node_id: int | None = None) -> list[int]:
    """Branch ids (those from `node_id` if given), in the order added."""
    return [i for i, e in self._branches.items() if node_id is None or e["node"] == node_id]

  def node_info(self, node_id: int) -> dict:
    """{id, parent, step} of a node, without loading its arrays."""
    entry = self._entry(self._nodes, "node", node_id)
    return {k: entry[k] for k in ("id", "parent", "step")}

  def branch_info(self, branch_id: int) -> dict:
    """{id, node, rollback_step, T, meta} of a branch, without loading its arrays."""
    entry = self._entry(self._branches, "branch", branch_id)
    return {"id": entry["id"], "node": entry["node"], "rollback_step": entry["rollback_step"],
            "T": entry["T"], "meta": dict(entry["meta"])}

  def node(self, node_id: int, like: Any = None) -> Node:
    """Node `node_id`; its state takes `like`'s structure (e.g. a `jax.eval_shape` of the world
    model's init), or without it comes back as nested dicts of arrays."""
    entry = self._entry(self._nodes, "node", node_id)
    payload = self._load(entry)
    try:
      state = arrays.arrays_to_tree(payload, "state/", like, what=f"state of node {node_id}")
      history = arrays.arrays_to_tree(payload, "obs_history/", what=f"node {node_id}'s history")
    except arrays.ArrayFileError as e:
      raise SessionError(f"{e} (session {self.path}, {entry['file']})") from e
    return Node(state=state, obs_history=history, id=node_id,
                parent=entry["parent"], step=entry["step"])

  def branch(self, branch_id: int) -> Branch:
    entry = self._entry(self._branches, "branch", branch_id)
    payload = self._load(entry)
    verdict = {k: payload[f"verdict/{k}"] for k in entry["verdict"]}
    return Branch(actions=payload["actions"], labels=payload["labels"],
                  observations=payload["observations"], verdict=verdict, id=branch_id,
                  node=entry["node"], rollback_step=entry["rollback_step"],
                  meta=dict(entry["meta"]))

  def _entry(self, table: dict, kind: str, id_: int) -> dict:
    if id_ not in table:
      raise KeyError(f"no {kind} {id_!r} in session {self.path}; {kind} ids: {sorted(table)}")
    return table[id_]

  def _load(self, entry: dict) -> dict:
    try:
      return arrays.read_npz(os.path.join(self.path, entry["file"]), entry["sha256"])
    except arrays.ArrayFileError as e:
      raise SessionError(f"{e}; restore it from a backup (session {self.path})") from e


def _next_id(table: dict) -> int:
  return max(table, default=-1) + 1


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_json(what: str, value) -> None:
  try:
    json.dumps(value, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{what} must be JSON (str keys; str, number, bool, None, list, dict "
                     f"values); {e}") from e


def _finite(name: str, x, ndim: int) -> np.ndarray:
  x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) \
      or x.ndim != ndim:
    raise ValueError(f"{name} must be a real array with {ndim} dims; got {x.dtype} {x.shape}")
  x = x.astype(np.float32)
  if not np.isfinite(x).all():
    raise ValueError(f"{name} has non-finite values (NaN or inf)")
  return x


def _labels(labels, T: int) -> np.ndarray:
  lab = np.asarray(labels)
  if lab.shape != (T,) or not np.issubdtype(lab.dtype, np.integer):
    raise ValueError(f"labels must be integer [{T}]; got {lab.dtype} {lab.shape}")
  unknown = sorted(set(lab.tolist()) - set(BRANCH_LABELS))
  if unknown:
    raise ValueError(f"labels {unknown} are not policy/intervention/pre-intervention "
                     f"{BRANCH_LABELS} (rlds labels)")
  return lab.astype(np.int32)


def _verdict(verdict) -> dict[str, np.ndarray]:
  if not isinstance(verdict, Mapping) or any(not isinstance(k, str) for k in verdict):
    raise ValueError(f"verdict must be a dict with str keys; got {type(verdict).__name__}")
  missing = [k for k in VERDICT_KEYS if k not in verdict]
  if missing:
    raise ValueError(f"verdict lacks {missing}; the world model's judge gives {VERDICT_KEYS}")
  out = {}
  for k, v in verdict.items():
    v = np.asarray(v)
    if v.dtype == object or v.dtype.kind not in "biuf":
      raise ValueError(f"verdict[{k!r}] must be numbers or bools; got {v.dtype}")
    out[k] = v
  return out
