"""Defaults shared by every task's config; a task file overrides what differs.

Config args (after the colon in `--config=...py:ARG`) are comma-separated words:
`quick` shrinks everything for a smoke run.
"""
import ml_collections


def parse_arg(arg: str | None) -> set[str]:
  words = {w.strip() for w in (arg or "").split(",") if w.strip()}
  unknown = words - {"quick"}
  if unknown:
    raise ValueError(f"unknown config arg(s) {sorted(unknown)}; known: ['quick']")
  return words


def task_config(task: str, arg: str | None = None, **collect_overrides) -> ml_collections.ConfigDict:
  words = parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.task = task
  config.max_steps = ml_collections.FieldReference(None, field_type=int)  # None: the task's own

  # Real-world data: expert demos and "play" (the expert knocked off-nominal and recovering).
  config.collect = ml_collections.ConfigDict(dict(
      num_demos=50,
      num_play=50,
      demo_seed_offset=0,  # episode i uses seed offset + i; evaluation seeds live elsewhere
      play_seed_offset=100_000,
      play_noise=0.3,  # Gaussian action noise on the expert, per step
      play_random_prefix_max=40,  # each play episode starts with U{0..max} random steps
      play_random_action_prob=0.1,  # later steps are random with this probability
  ))
  config.collect.update(collect_overrides)
  if "quick" in words:
    config.collect.num_demos = 3
    config.collect.num_play = 2
  config.lock()
  return config
