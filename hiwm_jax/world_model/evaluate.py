"""Judging the world model against the real world (held-out simulator episodes).

open_loop_curves: from real histories, replay the real actions open loop; position error in cm
at every horizon, beside the copy-the-last-observation baseline (open_loop_errors: at a few).
success_agreement: replay each whole episode from its first real observation; does the WM's
`judge` call success where the simulator did, and where did its hidden state part from the real?
success_phase_errors: the open-loop error before, across and after the first real success.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hiwm_jax.world_model.core import WorldModel


def _pad(x: np.ndarray, length: int) -> np.ndarray:
  """x [T, ...] cut or zero-padded to [length, ...]."""
  out = np.zeros((length,) + x.shape[1:], x.dtype)
  out[:min(length, len(x))] = x[:length]
  return out


def rollouts(wm: WorldModel, params, histories, actions, latents=None):
  """(observations [N, T, D] in task units, judged success [N, T], hidden states [N, T, C])
  after each of actions [N, T, A] from histories [N, h, D] (and hidden states [N, C]; default:
  read off the last observation, exact at a reset)."""
  def one(history, acts, latent):
    states = wm.rollout(params, wm.init(params, history, latent), acts)
    return (jax.vmap(lambda s: wm.observe(params, s))(states),
            jax.vmap(lambda s: wm.judge(params, s)["success"])(states), states.latent)
  latents = None if latents is None else jnp.asarray(latents)  # None: init's default
  return jax.jit(jax.vmap(one))(jnp.asarray(histories), jnp.asarray(actions), latents)


def position_error_cm(wm: WorldModel, pred, true) -> dict[str, np.ndarray]:
  """{field: mean Euclidean error over its points, cm} plus "positions": the mean of fields."""
  out = {}
  for name, s in wm.structure.positions:
    diff = (pred[..., s] - true[..., s]).reshape(*pred.shape[:-1], -1, 3)
    out[name] = 100.0 * np.linalg.norm(diff, axis=-1).mean(-1)
  out["positions"] = np.mean([out[name] for name, _ in wm.structure.positions], axis=0)
  return out


def open_loop_windows(wm: WorldModel, episodes: Sequence[dict], length: int,
                      stride: int = 10) -> dict[str, np.ndarray]:
  """Open-loop windows starting every `stride` steps of every episode, from its real history
  and hidden state (integrated from its actions: the robot's own targets and grip):
  {"history" [N, h, D], "latent" [N, C], "actions" [N, L, A], "targets" [N, L, D], "last"
  [N, D], "valid" [N, L] (the episode still runs), "target_latents" [N, L, C], "episode" [N]
  and "start" [N] (which episode, which step)}, zero-padded."""
  keys = ("history", "latent", "actions", "targets", "last", "valid", "target_latents",
          "episode", "start")
  out = {k: [] for k in keys}
  for i, ep in enumerate(episodes):
    obs, action = ep["steps"]["observation"], ep["steps"]["action"][:-1]  # [T+1, D], [T, A]
    T = len(action)
    episode_latents = wm.episode_latents(obs, action)
    for s in range(0, T, stride):
      out["history"].append(obs[np.maximum(np.arange(s - wm.history + 1, s + 1), 0)])
      out["latent"].append(episode_latents[s])
      out["actions"].append(_pad(action[s:], length))
      out["targets"].append(_pad(obs[s + 1:], length))
      out["last"].append(obs[s])
      out["valid"].append(np.arange(1, length + 1) <= T - s)
      out["target_latents"].append(_pad(episode_latents[s + 1:], length))
      out["episode"].append(i)
      out["start"].append(s)
  return {k: np.stack(v) for k, v in out.items()}


def _window_errors(wm: WorldModel, params, w: dict) -> tuple[dict, dict]:
  """Per-window position errors {field: [N, L] cm} of the rollouts of open_loop_windows' `w`,
  and of copying each window's last real observation."""
  pred = rollouts(wm, params, w["history"], w["actions"], w["latent"])[0]
  copy = np.broadcast_to(w["last"][:, None], w["targets"].shape)
  return (position_error_cm(wm, np.asarray(pred), w["targets"]),
          position_error_cm(wm, copy, w["targets"]))


def success_phase_errors(wm: WorldModel, params, episodes: Sequence[dict], horizon: int = 50,
                         stride: int = 10) -> dict:
  """Open-loop error at `horizon` (the last position field, cm, beside copy-last) split by
  where each window lies against its episode's first real success: ending at or before it,
  holding it (the fold laid down, the object placed), or starting at or after it (at rest).
  Episodes that never succeed count as before. Meant for episodes that run past success
  (collect.full_horizon_episodes): collected ones stop at it, so all their windows are before."""
  field = wm.structure.positions[-1][0]
  w = open_loop_windows(wm, episodes, horizon, stride)
  keep = w["valid"][:, horizon - 1]
  if not keep.any():  # no episode runs `horizon` steps
    return {"field": field, "horizon": horizon, **{
        name: {"starts": 0, "wm": None, "copy_last": None}
        for name in ("before_success", "holding_success", "after_success")}}
  w = {k: v[keep] for k, v in w.items()}
  wm_err, copy_err = _window_errors(wm, params, w)
  error, copy_error = wm_err[field][:, horizon - 1], copy_err[field][:, horizon - 1]
  success = jax.jit(jax.vmap(wm.task.success))
  first = []
  for ep in episodes:
    reached = np.asarray(success(jnp.asarray(ep["steps"]["observation"])))
    first.append(int(np.argmax(reached)) if reached.any() else np.iinfo(np.int32).max)
  first = np.asarray(first, np.int64)[w["episode"]]
  end = w["start"] + horizon
  groups = {"before_success": end <= first,
            "holding_success": (w["start"] < first) & (end > first),
            "after_success": w["start"] >= first}
  return {"field": field, "horizon": horizon, **{
      name: {"starts": int(m.sum()), "wm": float(error[m].mean()) if m.any() else None,
             "copy_last": float(copy_error[m].mean()) if m.any() else None}
      for name, m in groups.items()}}


def latent_departures(latents, target_latents, tol: float = 1e-4) -> np.ndarray:
  """[N] the first step at which each rollout's latent [N, T, C] departs from the real one
  [N, T, C] (the action that made the world model pinch another cloth vertex, or none);
  -1 where it never does."""
  departed = np.any(np.abs(np.asarray(latents) - np.asarray(target_latents)) > tol, axis=-1)
  return np.where(departed.any(axis=1), np.argmax(departed, axis=1), -1)


def error_before(error, steps) -> np.ndarray:
  """[N] each rollout's error [N, T] in the observation its step `steps` [N] started from (0 at
  the real start), NaN where the step is -1 (latent_departures' never): at a departure, large
  if the rollout had drifted, small if a millimetre decided."""
  before = np.concatenate([np.zeros((len(error), 1)), error[:, :-1]], axis=1)
  return np.where(steps >= 0, before[np.arange(len(error)), np.maximum(steps, 0)], np.nan)


def open_loop_curves(wm: WorldModel, params, episodes: Sequence[dict], length: int,
                     stride: int = 10) -> dict:
  """The mean open-loop error at every horizon 1..length: {"starts": [L] windows still running
  h steps in, field: {"wm": [L] cm, "copy_last": [L] cm}} (NaN where no window runs that far).

  Open-loop rollouts start every `stride` steps of every episode (from its real history), so a
  horizon averages the starts whose episode still runs that many steps later.
  """
  w = open_loop_windows(wm, episodes, length, stride)
  wm_err, copy_err = _window_errors(wm, params, w)
  valid = w["valid"]
  starts = valid.sum(0)

  def mean(err):  # [N, L] -> [L], over the windows valid at each horizon
    total = np.where(valid, err, 0.0).sum(0, dtype=np.float64)
    return np.where(starts > 0, total / np.maximum(starts, 1), np.nan)
  return {"starts": starts, **{field: {"wm": mean(wm_err[field]),
                                       "copy_last": mean(copy_err[field])} for field in wm_err}}


def at_horizons(curves: dict, horizons: Sequence[int]) -> dict:
  """{horizon: {field: {"wm": cm, "copy_last": cm}, "starts": n}} read off open_loop_curves (a
  horizon no episode reaches has only {"starts": 0})."""
  out = {}
  for h in horizons:
    out[h] = {"starts": int(curves["starts"][h - 1])}
    for field, c in curves.items() if out[h]["starts"] else ():
      if field != "starts":
        out[h][field] = {"wm": float(c["wm"][h - 1]), "copy_last": float(c["copy_last"][h - 1])}
  return out


def open_loop_errors(wm: WorldModel, params, episodes: Sequence[dict],
                     horizons: Sequence[int] = (1, 10, 50), stride: int = 10) -> dict:
  """open_loop_curves at `horizons` only: {horizon: {field: {"wm", "copy_last"}, "starts"}}."""
  return at_horizons(open_loop_curves(wm, params, episodes, max(horizons), stride), horizons)


def success_agreement(wm: WorldModel, params, episodes: Sequence[dict]) -> dict:
  """Replays each episode's actions from its first real observation; the WM's success
  (judge's success at any step, as the simulator's episode success) against the real one.

  Also the step at which each replay's hidden state first departs from the one integrated
  from the real episode (`latent_departure`, -1: never): the cloth's grasp, a discrete choice a
  millimetre of predicted cloth can flip, after which the replay carries another vertex or none.
  Meta-World's controller target follows the actions alone, so it never departs. Beside it,
  the replay's error (the last position field, cm) in the observation the departing step
  started from: large, the replay had drifted; small, a cliff a millimetre decided."""
  length = max(len(ep["steps"]["action"]) - 1 for ep in episodes)
  hists = np.stack([wm.initial_history(ep["steps"]["observation"][0]) for ep in episodes])
  acts = np.stack([_pad(ep["steps"]["action"][:-1], length) for ep in episodes])
  steps = np.array([len(ep["steps"]["action"]) - 1 for ep in episodes])
  mask = np.arange(length)[None] < steps[:, None]
  pred, success, latents = rollouts(wm, params, hists, acts)
  wm_success = np.any(np.asarray(success) & mask, axis=1)
  real_latents = np.stack([_pad(wm.episode_latents(ep["steps"]["observation"],
                                                   ep["steps"]["action"][:-1])[1:], length)
                           for ep in episodes])
  departure = latent_departures(np.where(mask[..., None], latents, 0.0), real_latents)
  field = wm.structure.positions[-1][0]
  error = position_error_cm(wm, np.asarray(pred), np.stack(
      [_pad(ep["steps"]["observation"][1:], length) for ep in episodes]))[field]
  real = np.array([ep["episode_metadata"]["success"] for ep in episodes])
  sources = np.array([ep["episode_metadata"]["source"] for ep in episodes])
  tpr = float(np.mean(wm_success[real])) if real.any() else float("nan")
  tnr = float(np.mean(~wm_success[~real])) if (~real).any() else float("nan")
  disagree = wm_success != real
  return {"episodes": len(episodes), "real_successes": int(real.sum()),
          "real_failures": int((~real).sum()), "agreement": float(np.mean(~disagree)),
          "balanced_accuracy": float(np.nanmean([tpr, tnr])), "true_positive_rate": tpr,
          "true_negative_rate": tnr,
          "by_source": {str(s): float(np.mean((~disagree)[sources == s]))
                        for s in np.unique(sources)},
          "disagreements": int(disagree.sum()),
          "disagreements_after_latent_departure": int(np.sum(disagree & (departure >= 0))),
          "latent_departure": departure.tolist(),
          "error_before_departure_cm": [None if np.isnan(e) else float(e)
                                        for e in error_before(error, departure)],
          "wm_success": wm_success.tolist(), "real_success": real.tolist()}
