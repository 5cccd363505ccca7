"""Post-training: fine-tune the base policy on its demos plus the person's corrections.

    workdir = posttrain.posttrain(config, base_workdir, ("demos", "corrections"), workdir)

The mixture and its weights come from `config.posttrain`: windows are sampled by the label of
their step (Sirius-style: interventions up-weighted, the lead-up to a failure down-weighted).
The fine-tune starts from the base's EMA weights and keeps its observation statistics;
`policy_data.max_episodes` still caps "demos", so the base's few demos are the same few and
every correction is used.
"""
from __future__ import annotations

import copy
import os
from typing import Sequence

import ml_collections

from hiwm_jax.policies import train


def posttrain_config(config: ml_collections.ConfigDict, base_workdir: str,
                     datasets: Sequence[str] | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` that fine-tunes the policy in `base_workdir` on `datasets` (names under
  <data_dir>/<task>/; default config.posttrain.datasets) with config.posttrain's settings."""
  c = config.posttrain
  datasets = tuple(c.datasets if datasets is None else datasets)
  if not datasets or not all(isinstance(d, str) and d and os.sep not in d for d in datasets):
    raise ValueError(f"datasets must be non-empty dataset names under <data_dir>/<task>/ "
                     f"(e.g. ('demos', 'corrections')); got {datasets!r}")
  if not base_workdir:
    raise ValueError("posttrain needs the base policy's work directory; got an empty path")
  out = copy.deepcopy(config)
  out.train.update(init_from=os.fspath(base_workdir), steps=c.steps, lr=c.lr,
                   warmup_steps=c.warmup_steps)
  out.policy_data.datasets = datasets
  out.policy_data.label_weights.update(dict(c.label_weights))
  return out


def posttrain(config: ml_collections.ConfigDict, base_workdir: str,
              datasets: Sequence[str] | None, workdir: str) -> str:
  """Fine-tunes the base policy on `datasets` into `workdir` (resumable); returns workdir."""
  tuned = posttrain_config(config, base_workdir, datasets)
  missing = [p for p in train.dataset_paths(tuned) if not os.path.isdir(p)]
  if missing:
    raise FileNotFoundError(f"post-training datasets not found: {missing} (collect demos with "
                            "experiments/collect.py, corrections with experiments/hiwm_collect.py)")
  train.train_policy(tuned, workdir)
  return workdir
