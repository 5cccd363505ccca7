"""The pictures a result needs: success bars with 95% intervals, WM vs real success scatter,
a world model's open-loop error against horizon."""
from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hiwm_jax import evaluate  # noqa: E402

_VARIANTS = ("base", "wm_closed_loop", "hgdagger", "hiwm")
_COLORS = {"base": "#999999", "wm_closed_loop": "#6baed6", "hgdagger": "#fdae6b",
           "hiwm": "#31a354"}


def success_bars(all_results: list[dict], path: str) -> None:
  """One group of bars per task x backbone: real success of every variant, with intervals."""
  groups = [f"{r['task']}\n{r['backbone']}" for r in all_results]
  fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(groups)), 3.6))
  width = 0.8 / len(_VARIANTS)
  for i, variant in enumerate(_VARIANTS):
    reals = [r["variants"][variant]["real"] for r in all_results]
    rate = np.array([100 * v["success_rate"] for v in reals])
    low = rate - np.array([100 * v["ci95"][0] for v in reals])
    high = np.array([100 * v["ci95"][1] for v in reals]) - rate
    x = np.arange(len(groups)) + (i - (len(_VARIANTS) - 1) / 2) * width
    ax.bar(x, rate, width, yerr=[low, high], capsize=3, label=variant, color=_COLORS[variant])
  ax.set_xticks(np.arange(len(groups)), groups)
  ax.set_ylabel("real success (%)")
  ax.set_ylim(0, 105)
  ax.legend(ncols=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.15))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def wm_vs_real(all_results: list[dict], path: str) -> None:
  """Every (task, backbone, variant) point: WM-measured vs real success, with Pearson r."""
  fig, ax = plt.subplots(figsize=(4.2, 4.2))
  real, wm = [], []
  for r in all_results:
    for variant in _VARIANTS:
      v = r["variants"][variant]
      real.append(100 * v["real"]["success_rate"])
      wm.append(100 * v["wm"]["success_rate"])
      ax.scatter(wm[-1], real[-1], color=_COLORS[variant], edgecolor="k", s=40,
                 label=variant if r is all_results[0] else None)
  ax.plot([0, 100], [0, 100], "k--", lw=0.8)
  title = "WM vs real success"
  if len(real) >= 2 and np.ptp(real) > 0 and np.ptp(wm) > 0:
    title += f" (Pearson r = {evaluate.agreement(real, wm)['pearson']:.2f}, n = {len(real)})"
  ax.set_title(title, fontsize=9)
  ax.set_xlabel("world-model success (%)")
  ax.set_ylabel("real success (%)")
  ax.set_xlim(-3, 103)
  ax.set_ylim(-3, 103)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def error_growth(curves: dict, path: str, title: str) -> None:
  """Open-loop position error against horizon (world_model.evaluate.open_loop_curves), a panel
  per position field: the world model solid, copying the last observation dashed."""
  fields = [f for f in curves if f not in ("starts", "positions")]  # positions: their mean
  horizon = np.arange(1, len(curves["starts"]) + 1)
  fig, axes = plt.subplots(1, len(fields), figsize=(3.4 * len(fields), 3.2), squeeze=False)
  for ax, field in zip(axes[0], fields):
    ax.plot(horizon, curves[field]["copy_last"], color="#999999", ls="--", label="copy last")
    ax.plot(horizon, curves[field]["wm"], color="#31a354", label="world model")
    ax.set_title(field, fontsize=9)
    ax.set_xlabel("open-loop steps")
    ax.set_xlim(1, horizon[-1])
    ax.set_ylim(bottom=0)
  axes[0, 0].set_ylabel("mean position error (cm)")
  axes[0, 0].legend(fontsize=7, loc="best")
  fig.suptitle("\n".join(textwrap.wrap(title, 70)), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
