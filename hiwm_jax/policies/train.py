"""Training a policy on RLDS episodes, fine-tuning one, and loading one back for use.

A policy work directory holds `config.json`, `checkpoints/<step>/` (train state + metadata
with the observation statistics the policy normalizes with), TensorBoard events and
`metrics.jsonl`. `load_policy(workdir)` rebuilds the pure policy and its EMA parameters
without the training data.
"""
from __future__ import annotations

import os

import chex
import jax
import ml_collections
import numpy as np

from hiwm_jax import checkpoint, data, policies, training
from hiwm_jax.data import normalization
from hiwm_jax.policies.base import Policy

DEMOS = "demos"  # the dataset of real demos; policy_data.max_episodes caps it


def dataset_paths(config: ml_collections.ConfigDict) -> list[str]:
  return [os.path.join(config.data_dir, config.task, name) for name in config.policy_data.datasets]


def capped_datasets(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The datasets `policy_data.max_episodes` caps: "demos" (the base's few demos) when it is in
  the mix, so post-training keeps those same few and uses every correction; else all of them."""
  names = tuple(config.policy_data.datasets)
  return (DEMOS,) if DEMOS in names else names


def load_training_episodes(config: ml_collections.ConfigDict) -> list[dict]:
  """The configured datasets' episodes; the first `max_episodes` of each capped dataset."""
  episodes = []
  cap = config.policy_data.max_episodes
  capped = capped_datasets(config)
  for name, path in zip(config.policy_data.datasets, dataset_paths(config)):
    dataset = data.open_dataset(path)
    limit = cap if name in capped else None
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if limit and count < limit:
      raise ValueError(f"{path} has {len(dataset)} episodes; the config asks for "
                       f"{limit} (collect more with "
                       "experiments/collect.py --config.collect.num_demos=...)")
    episodes += [dataset[i] for i in range(count)]
  return episodes


def label_weights(labels, weights_config) -> np.ndarray:
  """Per-window sampling weights [W] from per-window labels [W] (data.DEMO ... PRE_INTERVENTION)
  and a mapping label name -> weight (Sirius-style: up-weight the person's corrections)."""
  weights = {name: float(w) for name, w in dict(weights_config).items()}
  unknown = sorted(set(weights) - set(data.INTERVENTION_LABELS))
  if unknown:
    raise ValueError(f"label_weights has unknown labels {unknown}; known: "
                     f"{sorted(data.INTERVENTION_LABELS)}")
  bad = {name: w for name, w in weights.items() if not np.isfinite(w) or w < 0}
  if bad:
    raise ValueError(f"label_weights must be finite and >= 0; got {bad}")
  table = np.ones(max(data.INTERVENTION_LABELS.values()) + 1)  # unlisted labels weigh 1
  for name, w in weights.items():
    table[data.INTERVENTION_LABELS[name]] = w
  labels = np.asarray(labels)
  out = table[labels]  # [W]
  if not out.sum() > 0:
    present = sorted({name for name, v in data.INTERVENTION_LABELS.items() if v in labels})
    raise ValueError(f"label_weights give every window weight 0 (the data has labels "
                     f"{present}; weights {weights}); give at least one of them a weight > 0")
  return out


def sampling_weights(config: ml_collections.ConfigDict, labels) -> np.ndarray | None:
  """The WindowSampler weights for config.policy_data.label_weights; None (uniform, sampled
  exactly as without weights) when every window weighs the same."""
  weights_config = config.policy_data.get("label_weights")
  if weights_config is None:
    return None
  weights = label_weights(labels, weights_config)
  return None if np.all(weights == weights[0]) else weights


def example_batch(policy: Policy) -> dict:
  """A one-window batch of zeros: enough to initialize or shape-check parameters."""
  return {"observation": np.zeros((1, policy.history, policy.obs_dim), np.float32),
          "action": np.zeros((1, policy.chunk, policy.action_dim), np.float32),
          "action_mask": np.ones((1, policy.chunk), bool)}


def load_policy(workdir: str,
                step: int | None = None) -> tuple[Policy, dict, ml_collections.ConfigDict]:
  """(policy, EMA params, config) from a policy work directory; step defaults to the latest."""
  config = checkpoint.load_config(workdir)
  ckpt = checkpoint.Checkpointer(workdir, create=False)
  state, metadata = ckpt.restore(step=step)  # as saved: nested dicts, checked below
  ckpt.close()
  if "obs_stats" not in metadata:
    raise checkpoint.CheckpointError(f"{workdir} is not a policy work directory "
                                     "(its checkpoint metadata has no obs_stats)")
  obs_stats = normalization.stats_from_json({"observation": metadata["obs_stats"]})
  policy = policies.make(config.policy, metadata["obs_dim"], metadata["action_dim"],
                         obs_stats["observation"])
  params = state["ema_params"]
  check_params(policy, params, workdir)
  return policy, params, config


def check_params(policy: Policy, params, source: str) -> None:
  """Raises ValueError unless `params` fit `policy` (e.g. a base policy of another shape)."""
  expected = jax.eval_shape(policy.init, jax.random.PRNGKey(0), example_batch(policy))
  try:
    chex.assert_trees_all_equal_shapes_and_dtypes(params, expected)
  except AssertionError as e:
    raise ValueError(f"the parameters from {source} do not fit a {policy.name} policy built "
                     f"from this config (history, chunk, network sizes must match): {e}") from e


def train_policy(config: ml_collections.ConfigDict, workdir: str) -> tuple[Policy, dict]:
  """Trains (or, with config.train.init_from, fine-tunes) a policy; returns it and EMA params."""
  episodes = load_training_episodes(config)
  obs_dim = episodes[0]["steps"]["observation"].shape[1]
  action_dim = episodes[0]["steps"]["action"].shape[1]
  init_from = config.train.init_from
  if init_from:  # keep the base policy's normalization, or its weights would mean nothing
    base_policy, params, _ = load_policy(init_from)
    obs_stats = base_policy.obs_stats
  else:
    obs_stats = data.compute_stats(episodes)["observation"]
  policy = policies.make(config.policy, obs_dim, action_dim, obs_stats)
  if init_from:
    check_params(policy, params, init_from)
  sampler = data.WindowSampler(episodes, history=policy.history, chunk=policy.chunk)
  weights = sampling_weights(config, sampler.intervention)
  if weights is not None:
    sampler = data.WindowSampler(episodes, history=policy.history, chunk=policy.chunk,
                                 weights=weights)
  rng = jax.random.PRNGKey(config.train.seed)
  if not init_from:
    params = policy.init(jax.random.fold_in(rng, 0), sampler.batch(np.arange(1)))
  tx = training.make_optimizer(config.train, params)
  state = training.init_state(params, tx)
  checkpoint.save_config(workdir, config)
  seed = config.train.seed
  sample = lambda step: sampler.sample(np.random.default_rng([seed, step]), config.train.batch_size)
  metadata = {"obs_stats": normalization.stats_to_json({"observation": obs_stats})["observation"],
              "obs_dim": obs_dim, "action_dim": action_dim, "task": config.task,
              "num_episodes": len(episodes), "num_windows": len(sampler)}
  state = training.fit(state, training.make_train_step(policy.loss, tx, config.train.ema_decay),
                       sample, steps=config.train.steps, rng=jax.random.fold_in(rng, 1),
                       workdir=workdir, log_every=config.train.log_every,
                       checkpoint_every=config.train.checkpoint_every, metadata=metadata,
                       desc=f"{config.task} {config.policy.backbone}")
  return policy, state.ema_params

