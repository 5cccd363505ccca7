"""hiwm_jax.session: the intervention tree round-trips, survives kill -9, exports to RLDS, and
refuses damaged directories without touching them."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiwm_jax import data
from hiwm_jax.session import Session, SessionError, export_corrections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P, I, PRE = data.POLICY, data.INTERVENTION, data.PRE_INTERVENTION


@flax.struct.dataclass
class _WMState:
  latent: jax.Array
  extra: dict
  horizon: int = flax.struct.field(pytree_node=False, default=3)


def _state(seed=0):
  rng = np.random.default_rng(seed)
  return _WMState(latent=jnp.asarray(rng.normal(size=(2, 5)), jnp.float32),
                  extra={"h": jnp.asarray(rng.normal(size=4), jnp.bfloat16),
                         "t": jnp.int32(seed), "stack": [jnp.zeros(2), jnp.arange(3)]})


def _branch_args(i, T=4, obs_dim=3, action_dim=2):
  """Deterministic branch i: what add_branch gets, so a reopened session can be checked."""
  rng = np.random.default_rng(100 + i)
  return {"actions": rng.uniform(-1, 1, (T, action_dim)).astype(np.float32),
          "labels": np.array([P, PRE, I, I][:T] + [P] * (T - 4), np.int32),
          "observations": rng.normal(size=(T + 1, obs_dim)).astype(np.float32),
          "verdict": {"success": i % 2 == 0, "progress": np.linspace(0, 0.1 * i, T + 1),
                      "risk": np.float32(0.25 * i)},
          "meta": {"branch_index": i % 3, "corrector": "scripted", "wm_checkpoint": "/wm/ckpt/7"}}


def _assert_branch(got, want):
  np.testing.assert_array_equal(got.actions, want["actions"])
  np.testing.assert_array_equal(got.labels, want["labels"])
  np.testing.assert_array_equal(got.observations, want["observations"])
  assert got.labels.dtype == np.int32 and got.actions.dtype == np.float32
  assert set(got.verdict) == set(want["verdict"])
  for k, v in want["verdict"].items():
    np.testing.assert_array_equal(got.verdict[k], v, err_msg=k)
  assert got.meta == want["meta"]


def _new_session(path, n_branches=2):
  s = Session.create(path, {"task": "push", "seed": 11})
  root = s.add_node(_state(0), np.zeros((2, 3)))
  for i in range(n_branches):
    s.add_branch(root, 0, **_branch_args(i))
  return s


def _snapshot(path):
  """Every file under `path` with its bytes."""
  out = {}
  for folder, _, files in os.walk(path):
    for name in files:
      with open(os.path.join(folder, name), "rb") as f:
        out[os.path.relpath(os.path.join(folder, name), path)] = f.read()
  return out


# --- round trip -------------------------------------------------------------------------------

def test_add_and_reopen_is_bit_identical(tmp_path):
  s = _new_session(tmp_path / "s", n_branches=2)
  child_state = _state(1)
  child = s.add_node(child_state, np.ones((2, 3), np.float32), parent=1, step=2)
  s.add_branch(child, 2, **_branch_args(2))

  back = Session.open(tmp_path / "s")
  assert back.meta == {"task": "push", "seed": 11}
  assert back.nodes() == [0, 1] and back.branches() == [0, 1, 2]
  assert back.branches(node_id=1) == [2] and back.branches(node_id=0) == [0, 1]
  assert back.node_info(1) == {"id": 1, "parent": 1, "step": 2}
  assert back.branch_info(2) == {"id": 2, "node": 1, "rollback_step": 2, "T": 4,
                                 "meta": _branch_args(2)["meta"]}
  for node_id, want in [(0, _state(0)), (1, child_state)]:
    for like in (want, jax.eval_shape(lambda w=want: w)):
      got = back.node(node_id, like=like).state
      assert isinstance(got, _WMState)
      chex.assert_trees_all_equal(got, want)
      chex.assert_trees_all_equal_dtypes(got, want)
  node = back.node(1)  # no example: nested dicts and lists from the saved paths
  assert (node.parent, node.step) == (1, 2)
  np.testing.assert_array_equal(node.obs_history, np.ones((2, 3)))
  assert set(node.state) == {"latent", "extra"} and isinstance(node.state["extra"]["stack"], list)
  chex.assert_trees_all_equal(node.state["extra"], child_state.extra)
  assert node.state["extra"]["h"].dtype == jnp.bfloat16
  for i in range(3):
    got = back.branch(i)
    _assert_branch(got, _branch_args(i))
    assert (got.node, got.rollback_step) == ((0, 0, 1)[i], (0, 0, 2)[i])
  # New ids continue where the journal left off.
  assert back.add_branch(0, 1, **_branch_args(3)) == 3
  assert back.add_node(_state(2), np.zeros((1, 3)), parent=3, step=4) == 2


def test_prng_key_leaves_round_trip(tmp_path):
  s = Session.create(tmp_path / "s")
  state = {"key": jax.random.key(3), "raw": jax.random.PRNGKey(4)}
  s.add_node(state, np.zeros((1, 2)))
  got = Session.open(tmp_path / "s").node(0, like=state).state
  assert jax.dtypes.issubdtype(got["key"].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(got["key"]), jax.random.key_data(state["key"]))
  np.testing.assert_array_equal(got["raw"], state["raw"])


# --- crash safety -----------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
    from hiwm_jax.session import Session
    from test_session import _branch_args
    s = Session.open({path!r})
    i = len(s.branches())
    while True:
      branch = s.add_branch(0, 0, **_branch_args(i, T=64, obs_dim=40, action_dim=7))
      print(branch, flush=True)
      i += 1
""")


def test_killed_mid_branch_reopens_and_continues(tmp_path):
  path = str(tmp_path / "s")
  _new_session(path, n_branches=0)
  code = _CHILD.format(repo=REPO, tests=os.path.join(REPO, "tests"), path=path)
  child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  seen = []
  try:
    for line in iter(child.stdout.readline, ""):  # "" when the child died
      seen.append(int(line))
      if len(seen) == 4:
        break
  finally:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
  assert seen == [0, 1, 2, 3], child.stderr.read()
  s = Session.open(path)
  ids = s.branches()
  assert ids[:4] == seen and ids == list(range(len(ids)))  # finished branches, no holes
  for i in ids:
    _assert_branch(s.branch(i), _branch_args(i, T=64, obs_dim=40, action_dim=7))
  new = s.add_branch(0, 0, **_branch_args(len(ids)))
  assert new == len(ids)
  again = Session.open(path)
  assert again.branches() == ids + [new]
  _assert_branch(again.branch(new), _branch_args(new))


def test_torn_journal_tail_and_orphan_file_are_ignored(tmp_path):
  path = tmp_path / "s"
  _new_session(path, n_branches=2)
  # A crash after the array file of branch 2 was written but mid-way through its journal line.
  (path / "branches" / "2.npz").write_bytes(b"half a file")
  with open(path / "journal.jsonl", "ab") as f:
    f.write(b'{"kind": "branch", "id": 2, "fi')
  s = Session.open(path)
  assert s.branches() == [0, 1]
  assert s.add_branch(0, 0, **_branch_args(2)) == 2
  lines = (path / "journal.jsonl").read_text().splitlines()
  assert len(lines) == 4 and all(json.loads(line) for line in lines)  # the torn bytes are gone
  _assert_branch(Session.open(path).branch(2), _branch_args(2))


# --- export -----------------------------------------------------------------------------------

def test_export_round_trip(tmp_path):
  s = _new_session(tmp_path / "s", n_branches=2)
  child = s.add_node(_state(1), np.zeros((2, 3)), parent=1, step=3)
  s.add_branch(child, 3, **_branch_args(2, T=6))
  out = export_corrections(s, [2, 0], tmp_path / "corrections", "push")
  episodes = data.read_episodes(out)
  assert len(episodes) == 2
  for ep, i, node, parent, T in [(episodes[0], 2, child, 1, 6), (episodes[1], 0, 0, -1, 4)]:
    want = _branch_args(i, T=T)
    steps = ep["steps"]
    np.testing.assert_array_equal(steps["observation"], want["observations"])
    np.testing.assert_array_equal(steps["action"][:-1], want["actions"])
    np.testing.assert_array_equal(steps["intervention"][:-1], want["labels"])
    success = want["verdict"]["success"]
    assert steps["is_terminal"][-1] == success
    assert ep["episode_metadata"] == {
        "task": "push", "seed": 11, "source": "world_model_correction", "success": success,
        "node": node, "branch": i, "parent_branch": parent,
        "rollback_step": s.branch_info(i)["rollback_step"], "branch_index": i % 3,
        "corrector": "scripted", "wm_checkpoint": "/wm/ckpt/7", "verdict_success": success,
        "verdict_progress": float(np.float32(want["verdict"]["progress"][-1])),
        "verdict_risk": float(want["verdict"]["risk"])}
  with pytest.raises(ValueError, match=r"branches \[7\] are not in session"):
    export_corrections(s, [0, 7], tmp_path / "other", "push")
  with pytest.raises(ValueError, match="got no branch ids"):
    export_corrections(s, [], tmp_path / "other", "push")
  assert not os.path.exists(tmp_path / "other")


def test_export_with_lead_up_prepends_the_parent_branch(tmp_path):
  s = _new_session(tmp_path / "s", n_branches=2)  # branch 1 hangs from the start node 0
  child = s.add_node(_state(1), np.zeros((2, 3)), parent=1, step=3)
  s.add_branch(child, 3, **_branch_args(2, T=6))
  out = export_corrections(s, [2], tmp_path / "corrections", "push", pre_steps=2)
  steps = data.read_episodes(out)[0]["steps"]
  parent, branch = _branch_args(1), _branch_args(2, T=6)
  np.testing.assert_array_equal(
      steps["observation"], np.concatenate([parent["observations"][:3], branch["observations"]]))
  np.testing.assert_array_equal(
      steps["action"][:-1], np.concatenate([parent["actions"][:3], branch["actions"]]))
  lead = parent["labels"][:3].copy()
  lead[1:] = PRE  # the last pre_steps=2 steps before the node
  np.testing.assert_array_equal(steps["intervention"][:-1],
                                np.concatenate([lead, branch["labels"]]))


# --- bad directories and inputs ---------------------------------------------------------------

def _remove_meta(path):
  os.remove(path / "session.json")


def _garble_meta(path):
  (path / "session.json").write_text('{"format": "hiwm_jax.sess')


def _remove_branch_file(path):
  os.remove(path / "branches" / "1.npz")


def _garble_middle_line(path):
  lines = (path / "journal.jsonl").read_bytes().split(b"\n")
  lines[1] = b"not json at all"
  (path / "journal.jsonl").write_bytes(b"\n".join(lines))


def _edit_entry(path):
  lines = (path / "journal.jsonl").read_text().splitlines()
  entry = json.loads(lines[2])
  entry["node"] = 9
  lines[2] = json.dumps(entry)
  (path / "journal.jsonl").write_text("\n".join(lines) + "\n")


def _other_version(path):
  meta = json.loads((path / "session.json").read_text())
  meta["version"] = 99
  (path / "session.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("spoil, message", [
    (_remove_meta, "is not a session (no session.json); open the directory Session.create"),
    (_garble_meta, "session.json is unreadable or garbled"),
    (_remove_branch_file, "journal line 3 of session {path} refers to branches/1.npz, which is "
                          "missing; restore that file"),
    (_garble_middle_line, "line 2 of {path}/journal.jsonl is not a journal entry"),
    (_edit_entry, "journal line 3 of session {path} is not a valid entry (ValueError: branch 1 "
                  "starts from unknown node 9)"),
    (_other_version, "has format version 99; this code reads version 1"),
])
def test_malformed_session_gives_clear_error_and_changes_nothing(tmp_path, spoil, message):
  path = tmp_path / "s"
  _new_session(path, n_branches=2)
  spoil(path)
  before = _snapshot(path)
  with pytest.raises(SessionError) as e:
    Session.open(path)
  assert message.format(path=path) in str(e.value)
  assert _snapshot(path) == before


def test_damaged_array_file_is_caught_on_read(tmp_path):
  path = tmp_path / "s"
  _new_session(path, n_branches=2)
  file = path / "branches" / "0.npz"
  file.write_bytes(file.read_bytes()[:-10] + b"0" * 10)
  before = _snapshot(path)
  s = Session.open(path)
  with pytest.raises(SessionError, match="branches/0.npz does not match the checksum journaled"):
    s.branch(0)
  _assert_branch(s.branch(1), _branch_args(1))
  assert _snapshot(path) == before


def test_missing_or_foreign_directory(tmp_path):
  with pytest.raises(SessionError, match=f"no session at {tmp_path}/nope: directory does not "
                                         "exist; start one with Session.create"):
    Session.open(tmp_path / "nope")
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "keep.txt").write_text("mine")
  with pytest.raises(SessionError, match="notes is not a session"):
    Session.open(tmp_path / "notes")
  assert _snapshot(tmp_path / "notes") == {"keep.txt": b"mine"}
  with pytest.raises(SessionError, match="keep.txt: it is not a directory"):
    Session.open(tmp_path / "notes" / "keep.txt")


def test_create_refuses_a_non_empty_directory(tmp_path):
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "keep.txt").write_text("mine")
  with pytest.raises(SessionError, match="notes: it is not an empty directory; choose a new"):
    Session.create(tmp_path / "notes")
  assert _snapshot(tmp_path / "notes") == {"keep.txt": b"mine"}
  _new_session(tmp_path / "s")
  before = _snapshot(tmp_path / "s")
  with pytest.raises(SessionError, match="not an empty directory"):
    Session.create(tmp_path / "s")
  assert _snapshot(tmp_path / "s") == before
  (tmp_path / "file").write_text("x")
  with pytest.raises(SessionError, match="not an empty directory"):
    Session.create(tmp_path / "file")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert Session.create(empty).nodes() == []


def _with(**change):
  return {**_branch_args(0), **change}


@pytest.mark.parametrize("node, step, kwargs, message", [
    (5, 0, _with(), "unknown node 5; nodes: [0]"),
    (0, -1, _with(), "rollback_step must be an int >= 0; got -1"),
    (0, 0, _with(actions=np.zeros((4,))), "actions must be a real array with 2 dims"),
    (0, 0, _with(observations=np.zeros((4, 3))),
     "observations [T+1, obs_dim]; got actions (4, 2) and observations (4, 3)"),
    (0, 0, _with(actions=np.full((4, 2), np.nan)), "actions has non-finite values"),
    (0, 0, _with(labels=[P, P, data.DEMO, I]), "labels [0] are not policy/intervention"),
    (0, 0, _with(labels=[P, P]), "labels must be integer [4]"),
    (0, 0, _with(verdict={"success": True}), "verdict lacks ['progress', 'risk']"),
    (0, 0, _with(verdict={"success": "yes", "progress": 0, "risk": 0}),
     "verdict['success'] must be numbers or bools"),
    (0, 0, _with(meta={"corrector": object()}), "branch meta must be JSON"),
])
def test_add_branch_rejects(tmp_path, node, step, kwargs, message):
  s = _new_session(tmp_path / "s", n_branches=0)
  before = _snapshot(tmp_path / "s")
  with pytest.raises(ValueError) as e:
    s.add_branch(node, step, **kwargs)
  assert message in str(e.value)
  assert _snapshot(tmp_path / "s") == before


def test_add_node_and_restore_reject(tmp_path):
  s = _new_session(tmp_path / "s", n_branches=1)
  with pytest.raises(ValueError, match=r"unknown parent branch 4; branches: \[0\]"):
    s.add_node(_state(), np.zeros((1, 3)), parent=4, step=0)
  with pytest.raises(ValueError, match=r"step must be an int in \[0, 4\] of parent branch 0"):
    s.add_node(_state(), np.zeros((1, 3)), parent=0, step=5)
  with pytest.raises(ValueError, match="step=2 needs the parent branch"):
    s.add_node(_state(), np.zeros((1, 3)), step=2)
  with pytest.raises(TypeError, match="cannot store a leaf of type object"):
    s.add_node({"f": object()}, np.zeros((1, 3)))
  with pytest.raises(SessionError, match="state of node 0 has 5 leaves but the example tree "
                                         "has 1"):
    s.node(0, like={"x": jnp.zeros(3)})
  wrong = _state().replace(latent=jnp.zeros((2, 6)))
  with pytest.raises(SessionError, match=r"leaf \.latent is float32 \(2, 5\); the example tree "
                                         r"wants float32 \(2, 6\)"):
    s.node(0, like=wrong)
  with pytest.raises(KeyError, match=r"no branch 3 in session .*; branch ids: \[0\]"):
    s.branch(3)
  assert s.nodes() == [0]
