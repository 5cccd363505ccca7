"""An append-only journal of JSON lines, each fsynced: a crash loses at most the line being written.

A line is written with one write() of `json + "\\n"` and then fsynced. On reopen, a last line that
is not complete JSON is a write torn by a crash: it is ignored, and cut off before the next append
so new lines never follow garbage. Any other line that is not JSON means the file was damaged or
edited, and reading it raises JournalError naming the line.
"""
from __future__ import annotations

import json
import os
from typing import Any


class JournalError(ValueError):
  """A journal line that is not the last one is not a JSON object."""


def read(path: str) -> tuple[list[tuple[int, dict]], int]:
  """(entries as (line number, object), byte length of the intact part of the file)."""
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  tail = lines.pop()  # b"" when the file ends with a newline; else an unterminated, torn write
  entries, offset = [], 0
  for number, line in enumerate(lines, 1):
    try:
      entry = json.loads(line.decode("utf-8"))
      if not isinstance(entry, dict):
        raise ValueError(f"a JSON {type(entry).__name__}, not an object")
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
      if number == len(lines) and not tail:
        break  # a torn last write (e.g. a block of zeros after a crash): ignored
      raise JournalError(f"line {number} of {path} is not a journal entry ({e}): "
                         f"{line[:80]!r}") from e
    entries.append((number, entry))
    offset += len(line) + 1
  return entries, offset


class Writer:
  """Appends entries durably, after cutting off a torn tail found by `read`."""

  def __init__(self, path: str, intact_length: int):
    self.path, self._intact = path, intact_length

  def append(self, entry: dict[str, Any]) -> None:
    line = (json.dumps(entry, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
    try:
      if self._intact is not None:
        if os.fstat(fd).st_size != self._intact:
          os.ftruncate(fd, self._intact)
        self._intact = None
      while line:
        line = line[os.write(fd, line):]
      os.fsync(fd)
    finally:
      os.close(fd)
