"""The paper's comparison over tasks x backbones: the combined table, WM-vs-real agreement, plots.

  python -m experiments.paper_table --tasks=pick_place,push,cloth_fold \
      --backbones=diffusion,flow --work_root=/tmp/hiwm/chains --out=results/paper
Runs (or resumes) experiments.hiwm's chain for every pair — one world model per task, shared by
both backbones — then writes <out>/table.md, results.json and plots. --only_table skips running
and tables whatever chains have finished. --ablate_k=1,4,16 adds the branches-per-failure
ablation for the first task and backbone. --judge_wm_root=DIR measures WM success in the world
models DIR/<task>_world_model (e.g. retrained on more data) instead of each chain's own.
--eval_episodes=N evaluates every finished policy again, real and in the world model, at the first
N evaluation seeds (cached beside each policy), for tighter intervals; use a new --out.
"""
import importlib
import json
import os

from absl import app, flags

from hiwm_jax import evaluate, pipeline, plots

_TASKS = flags.DEFINE_list("tasks", ["pick_place", "push", "cloth_fold"], "Task configs.")
_BACKBONES = flags.DEFINE_list("backbones", ["diffusion", "flow"], "Policy backbones.")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "Extra config args, e.g. quick.")
_ROUNDS = flags.DEFINE_integer("rounds", None, "Overrides the configs' hiwm.rounds (Hi-WM and "
                               "WM closed-loop rounds); later rounds resume from earlier ones.")
_WORK_ROOT = flags.DEFINE_string("work_root", "/tmp/hiwm/chains", "Chains' work directories.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Overrides the configs' data_dir (datasets; "
                                "each chain's corrections are written there too).")
_OUT = flags.DEFINE_string("out", "results/paper", "Where the combined results go.")
_ONLY_TABLE = flags.DEFINE_bool("only_table", False, "Table finished chains; run nothing.")
_ABLATE_K = flags.DEFINE_list("ablate_k", [], "Branches per failure state to ablate, e.g. 1,4,16.")
_JUDGE_WM_ROOT = flags.DEFINE_string(
    "judge_wm_root", "", "Measure every policy's WM success in <root>/<task>_world_model "
    "instead of the world model its chain used (real success is unchanged).")
_EVAL_EPISODES = flags.DEFINE_integer(
    "eval_episodes", None, "Evaluate every policy again, real and in the world model, at this "
    "many evaluation seeds (>= the chains' own; the first ones are the chains' own).")


def _config(task: str, backbone: str):
  arg = ",".join(a for a in (f"backbone={backbone}", _CONFIG_ARG.value) if a)
  config = importlib.import_module(f"experiments.configs.{task}").get_config(arg)
  shared_wm = os.path.join(_WORK_ROOT.value, f"{task}_world_model")
  with config.unlocked():
    config.hiwm.world_model = config.hiwm.world_model or shared_wm
    config.data_dir = _DATA_DIR.value or config.data_dir
    if _ROUNDS.value is not None:
      config.hiwm.rounds = _ROUNDS.value
  return config


def main(argv):
  del argv
  all_results = []
  for task in _TASKS.value:
    for backbone in _BACKBONES.value:
      run = f"{task}_{backbone}"
      out = os.path.join(_OUT.value, run)
      if _ONLY_TABLE.value:
        path = os.path.join(out, pipeline.RESULTS_FILE)
        if os.path.exists(path):
          with open(path) as f:
            all_results.append(json.load(f))
        continue
      all_results.append(pipeline.run_chain(_config(task, backbone),
                                            os.path.join(_WORK_ROOT.value, run), out))
  if not all_results:
    raise app.UsageError(f"no finished chain under {_OUT.value}")
  if _EVAL_EPISODES.value:
    all_results = [pipeline.evaluate_again(r, _EVAL_EPISODES.value) for r in all_results]
  if _JUDGE_WM_ROOT.value:
    all_results = [pipeline.judge_in_world_model(
        r, os.path.join(_JUDGE_WM_ROOT.value, f"{r['task']}_world_model")) for r in all_results]
  os.makedirs(_OUT.value, exist_ok=True)
  text = pipeline.table(all_results)
  gains = pipeline.gains(all_results)
  gains_ci = pipeline.gains_interval(all_results)
  ci = lambda k: " [{:+.1f}, {:+.1f}]".format(*gains_ci[k]) if gains_ci else ""
  text += (f"\n\nHi-WM real-success gain, mean over {len(all_results)} task x backbone pairs: "
           f"{gains['over_base']:+.1f}{ci('over_base')} points over base, "
           f"{gains['over_wm_closed_loop']:+.1f}{ci('over_wm_closed_loop')} over WM closed loop "
           "(paper: +37.9, +19.0)" + (", 95% bootstrap intervals in brackets" if gains_ci else "")
           + ".\n")
  if gains_ci:
    gains["ci95"] = gains_ci
  if _JUDGE_WM_ROOT.value:
    text += (f"WM success measured in the world models {_JUDGE_WM_ROOT.value}/<task>_world_model, "
             "not the ones the chains corrected in.\n")
  real, wm, labels = pipeline.points(all_results)
  groups = {"all": list(range(len(labels)))}  # point indices: all, then each task's
  for task in sorted({r["task"] for r in all_results}):
    groups[task] = [i for i, label in enumerate(labels) if label.startswith(task + "/")]
  agreement = {name: evaluate.agreement(real[idx], wm[idx]) if len(idx) >= 2 else None
               for name, idx in groups.items() if name == "all" or len(idx) >= 2}
  # With per-episode outcomes: 95% bootstrap intervals over start states, beside each metric.
  per_episode = pipeline.outcomes(all_results)
  intervals = {name: evaluate.agreement_interval(per_episode[0][groups[name]],
                                                 per_episode[1][groups[name]])
               for name, a in agreement.items() if a and per_episode is not None}
  fmt = lambda name, k, a: (f"{a[k]:.3f}" + (" [{:.2f}, {:.2f}]".format(*intervals[name][k])
                                             if name in intervals else ""))
  text += "\n| points | n | Pearson r | Spearman rho | MMRV |\n|---|---|---|---|---|\n"
  for name, a in agreement.items():
    if a:
      text += (f"| {name} | {len(groups[name])} | {fmt(name, 'pearson', a)} | "
               f"{fmt(name, 'spearman', a)} | {fmt(name, 'mmrv', a)} |\n")
  if intervals:
    text += ("\nIn brackets: 95% bootstrap intervals, start states resampled (the same draw "
             "for every policy).\n")
    for name in intervals:
      agreement[name]["ci95"] = intervals[name]
  if _ABLATE_K.value and not _ONLY_TABLE.value:
    task, backbone = _TASKS.value[0], _BACKBONES.value[0]
    rows = pipeline.ablate_branches(_config(task, backbone),
                                    os.path.join(_WORK_ROOT.value, f"{task}_{backbone}"),
                                    [int(k) for k in _ABLATE_K.value])
    text += "\n" + pipeline.ablation_table(task, backbone, rows) + "\n"
  print(text)
  with open(os.path.join(_OUT.value, "table.md"), "w") as f:
    f.write(text)
  with open(os.path.join(_OUT.value, "results.json"), "w") as f:
    json.dump({"results": all_results, "gains": gains, "agreement": agreement}, f, indent=2)
  plots.success_bars(all_results, os.path.join(_OUT.value, "success.png"))
  plots.wm_vs_real(all_results, os.path.join(_OUT.value, "wm_vs_real.png"))
  print(f"written to {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
