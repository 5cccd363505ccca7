"""Arrays on disk for a session: atomic, checksummed .npz files and pytrees stored with their paths.

A pytree is saved as its leaves plus a manifest (each leaf's key path and dtype), so it comes back
either into the structure of an example tree (e.g. a `jax.eval_shape` of the world model's `init`)
or, with no example, as nested dicts and lists — enough to inspect a node without its code.
Dtypes numpy's .npz cannot describe (bfloat16, typed PRNG keys) are stored as raw bits and viewed
back, so a restored tree is bit-identical.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

_MANIFEST = "__manifest__"


class ArrayFileError(ValueError):
  """An array file is missing, damaged, or does not match the tree asked for."""


def write_npz(path: str, arrays: Mapping[str, np.ndarray]) -> str:
  """Writes `arrays` to `path` atomically (temp file, fsync, os.replace); returns its sha256."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  data = buf.getvalue()
  folder = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  fsync_dir(folder)
  return hashlib.sha256(data).hexdigest()


def read_npz(path: str, sha256: str | None = None) -> dict[str, np.ndarray]:
  """The arrays in `path`; ArrayFileError if it is missing, unreadable or fails its checksum."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ArrayFileError(f"cannot read array file {path} ({e})") from e
  if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
    raise ArrayFileError(f"array file {path} does not match the checksum journaled for it; "
                         "it was changed or damaged after it was written")
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except Exception as e:  # numpy/zipfile raise many types for a damaged file
    raise ArrayFileError(f"array file {path} is not a readable .npz ({type(e).__name__}: {e})"
                         ) from e


def fsync_dir(folder: str) -> None:
  """Makes a rename or a new file in `folder` durable."""
  fd = os.open(folder, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def tree_to_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
  """`tree`'s leaves as host arrays named `<prefix>0..n`, plus `<prefix>__manifest__`."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  arrays, manifest = {}, []
  for i, (path, leaf) in enumerate(flat):
    raw, dtype = _to_host(leaf)
    arrays[f"{prefix}{i}"] = raw
    manifest.append({"path": [_key_to_json(k) for k in path], "dtype": dtype})
  arrays[prefix + _MANIFEST] = np.array(json.dumps(manifest))
  return arrays


def arrays_to_tree(arrays: Mapping[str, np.ndarray], prefix: str, like: Any = None,
                   what: str = "tree") -> Any:
  """Inverse of tree_to_arrays: into `like`'s structure (shapes and dtypes checked), or, without
  `like`, into nested dicts/lists rebuilt from the saved key paths."""
  try:
    manifest = json.loads(str(arrays[prefix + _MANIFEST]))
    leaves = [_from_host(arrays[f"{prefix}{i}"], m["dtype"]) for i, m in enumerate(manifest)]
    paths = [[_key_from_json(k) for k in m["path"]] for m in manifest]
  except (KeyError, ValueError, TypeError) as e:
    raise ArrayFileError(f"the stored {what} is incomplete or garbled ({type(e).__name__}: {e})"
                         ) from e
  if like is None:
    return _rebuild(paths, leaves)
  want, treedef = jax.tree_util.tree_flatten(like)
  if len(want) != len(leaves):
    raise ArrayFileError(f"the stored {what} has {len(leaves)} leaves but the example tree has "
                         f"{len(want)}; pass an example of the same structure (or none)")
  for path, got, w in zip(paths, leaves, want):
    shape, dtype = tuple(getattr(w, "shape", np.shape(w))), _dtype(w)
    if tuple(got.shape) != shape or _dtype(got) != dtype:
      raise ArrayFileError(f"the stored {what} leaf {_keystr(path)} is {got.dtype} {got.shape}; "
                           f"the example tree wants {dtype} {shape}")
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _dtype(x):
  dtype = getattr(x, "dtype", None)
  return np.asarray(x).dtype if dtype is None else dtype


def _to_host(leaf) -> tuple[np.ndarray, str]:
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    impl = jax.random.key_impl(leaf)
    name = impl if isinstance(impl, str) else getattr(impl, "name", str(impl))
    return np.asarray(jax.random.key_data(leaf)), f"key<{name}>"
  x = np.asarray(leaf)
  if x.dtype == object:
    raise TypeError(f"cannot store a leaf of type {type(leaf).__name__}: a session stores arrays")
  name = jnp.dtype(x.dtype).name
  if x.dtype.kind == "V":  # ml_dtypes (bfloat16, float8...): .npz would lose the dtype
    x = x.view(f"u{x.dtype.itemsize}")
  return x, name


def _from_host(x: np.ndarray, dtype: str):
  if dtype.startswith("key<"):
    return jax.random.wrap_key_data(x, impl=dtype[4:-1])
  want = jnp.dtype(dtype)
  return x.view(want) if want.kind == "V" else x.astype(want, copy=False)


def _key_to_json(k) -> list:
  if isinstance(k, jax.tree_util.GetAttrKey):
    return ["attr", k.name]
  if isinstance(k, jax.tree_util.DictKey):
    if not isinstance(k.key, (str, int)) or isinstance(k.key, bool):
      raise TypeError(f"cannot store a dict key {k.key!r}: use str or int keys")
    return ["key", k.key]
  if isinstance(k, jax.tree_util.SequenceKey):
    return ["index", k.idx]
  if isinstance(k, jax.tree_util.FlattenedIndexKey):
    return ["flat", k.key]
  raise TypeError(f"cannot store a tree path entry {k!r}")


def _key_from_json(k) -> tuple[str, Any]:
  kind, key = k
  if kind not in ("attr", "key", "index", "flat"):
    raise ValueError(f"unknown path entry kind {kind!r}")
  return kind, key


def _keystr(path) -> str:
  return "".join(f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in path) or "<root>"


def _rebuild(paths, leaves):
  """Nested dicts from key paths; a level whose keys are all sequence indices becomes a list."""
  if len(paths) == 1 and not paths[0]:
    return leaves[0]
  root: dict = {}
  for path, leaf in zip(paths, leaves):
    node = root
    for kind, key in path[:-1]:
      node = node.setdefault((kind, key), {})
    node[path[-1]] = leaf

  def finish(node):
    if not isinstance(node, dict):
      return node
    if node and all(kind in ("index", "flat") for kind, _ in node):
      return [finish(node[k]) for k in sorted(node, key=lambda k: k[1])]
    return {key: finish(v) for (_, key), v in node.items()}

  return finish(root)
