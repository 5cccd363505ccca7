"""The base/reference policy table: real success per task x backbone x demo count.

  python -m experiments.policy_table --runs='/tmp/hiwm/runs/*' [--out=results/policies.md]
Reads each work directory's config.json and eval_real.json (written by
experiments.eval_policy); directories without an evaluation are listed as missing.
"""
import glob
import json
import os

from absl import app, flags

from hiwm_jax import checkpoint

_RUNS = flags.DEFINE_list("runs", None, "Policy work directories (globs allowed).")
_OUT = flags.DEFINE_string("out", None, "Also write the table (markdown) here.")
flags.mark_flags_as_required(["runs"])


def row(workdir: str) -> dict:
  config = checkpoint.load_config(workdir)
  out = {"run": os.path.basename(os.path.normpath(workdir)), "task": config.task,
         "backbone": config.policy.backbone, "demos": config.policy_data.max_episodes,
         "steps": config.train.steps, "batch": config.train.batch_size}
  path = os.path.join(workdir, "eval_real.json")
  if os.path.exists(path):
    with open(path) as f:
      out.update(json.load(f))
  return out


def table(rows: list[dict]) -> str:
  lines = ["| task | backbone | demos | train steps x batch | real success | 95% CI | run |",
           "|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: (r["task"], r["backbone"], r["demos"])):
    if "successes" in r:
      low, high = r["ci95"]
      success = f"{r['successes']}/{r['episodes']} = {100 * r['success_rate']:.0f}%"
      ci = f"{100 * low:.0f}-{100 * high:.0f}%"
    else:
      success, ci = "not evaluated", ""
    lines.append(f"| {r['task']} | {r['backbone']} | {r['demos']} | {r['steps']} x {r['batch']} "
                 f"| {success} | {ci} | {r['run']} |")
  return "\n".join(lines)


def main(argv):
  del argv
  workdirs = sorted({d for pattern in _RUNS.value for d in glob.glob(pattern)
                     if os.path.exists(os.path.join(d, checkpoint.CONFIG_FILE))})
  if not workdirs:
    raise app.UsageError(f"no policy work directories (with {checkpoint.CONFIG_FILE}) match "
                         f"{_RUNS.value}")
  text = table([row(d) for d in workdirs])
  print(text)
  if _OUT.value:
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
