"""Robot trajectories: RLDS episodes in TFDS (TF-free), training windows, normalization."""
from hiwm_jax.data.normalization import compute_stats, normalize, unnormalize
from hiwm_jax.data.rlds import (DEMO, INTERVENTION, INTERVENTION_LABELS, POLICY,
                                PRE_INTERVENTION, SOURCES, DatasetError, EpisodeDataset,
                                check_episode, load_stats, make_episode, open_dataset,
                                read_episodes, write_dataset)
from hiwm_jax.data.windows import WindowSampler

__all__ = [
    "DEMO", "INTERVENTION", "INTERVENTION_LABELS", "POLICY", "PRE_INTERVENTION", "SOURCES",
    "DatasetError", "EpisodeDataset", "WindowSampler", "check_episode", "compute_stats",
    "load_stats", "make_episode", "normalize", "open_dataset", "read_episodes", "unnormalize",
    "write_dataset",
]
