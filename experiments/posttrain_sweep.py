r"""Fine-tunes a finished chain's variants again with other recipes (steps, learning rate).

Does the fine-tune, rather than the data, limit a variant? Each variant keeps the data its
chain collected (Hi-WM corrections of every round, the WM closed loop's kept rollouts, the real
HG-DAgger sessions); each recipe fine-tunes it once from the base on the demos and all of it.
Recipes are compared on validation seeds, apart from the evaluation seeds, so that choosing one
does not tune to the reported numbers:

  python -m experiments.posttrain_sweep --results=/tmp/paper3_200/push_diffusion/results.json \
      --recipes=3000@1e-3,9000@1e-3 --work_root=/tmp/hiwm/sweep --out=/tmp/sweep

writes <out>/s<steps>_lr<lr>/<run>/results.json (every variant, base included, evaluated real
and in the chain's world model at --eval_episodes evaluation seeds: feed it to
`paper_table --only_table --out=<out>/s<steps>_lr<lr>`) and <out>/<run>_validation.json (real
success at --val_episodes validation seeds per recipe and variant; with --chain_policies, of the
chain's own policies too).
"""
import json
import os

from absl import app, flags

from hiwm_jax import checkpoint, envs, evaluate, pipeline
from hiwm_jax.policies.train import load_policy

_RESULTS = flags.DEFINE_string("results", None, "A finished chain's results.json.", required=True)
_RECIPES = flags.DEFINE_list("recipes", ["3000@1e-3"], "STEPS@LR fine-tune recipes.")
_VARIANTS = flags.DEFINE_list("variants", ["wm_closed_loop", "hgdagger", "hiwm"],
                              "Variants to fine-tune again.")
_WORK_ROOT = flags.DEFINE_string("work_root", "/tmp/hiwm/sweep", "Where the policies go.")
_OUT = flags.DEFINE_string("out", "/tmp/sweep", "Where results and validation tables go.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Overrides the chain's data_dir.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 200, "Evaluation seeds per policy (0: "
                                      "fine-tune and validate only).")
_VAL_EPISODES = flags.DEFINE_integer("val_episodes", 100, "Validation seeds per policy.")
_VAL_SEED_OFFSET = flags.DEFINE_integer(
    "val_seed_offset", 2_000_000, "First validation seed: apart from data (0..), play "
    "(100k), policy rollouts (200k), Hi-WM starts (300k) and evaluation (1M) seeds.")
_CHAIN_POLICIES = flags.DEFINE_bool("chain_policies", False, "Also validate the chain's own "
                                    "policies (the recipe the chain used, round by round).")


def parse_recipe(text: str) -> tuple[int, float]:
  """'3000@1e-3' -> (3000, 0.001)."""
  steps, sep, lr = text.partition("@")
  try:
    out = int(steps), float(lr)
  except ValueError:
    out = None
  if not sep or out is None or out[0] < 1 or not 0 < out[1] < 1:
    raise ValueError(f"a recipe is STEPS@LR with STEPS >= 1 and 0 < LR < 1, e.g. 3000@1e-3; "
                     f"got {text!r}")
  return out


def recipe_name(steps: int, lr: float) -> str:
  """A file-name-safe label: (3000, 0.001) -> 's3000_lr0.001'."""
  return f"s{steps}_lr{lr:g}"


def validate(task: str, workdir: str, episodes: int, seed_offset: int) -> float:
  """Real success at the validation seeds, cached in the policy's val_<offset>_<n>.json."""
  path = os.path.join(workdir, f"val_{seed_offset}_{episodes}.json")
  if not os.path.exists(path):
    policy, params, _ = load_policy(workdir)
    env = envs.make(task)
    try:
      real, _ = evaluate.evaluate_real(env, policy, params, episodes, seed_offset,
                                       desc=f"{task} validation {os.path.basename(workdir)}")
    finally:
      env.close()
    checkpoint.write_json(path, real)
  with open(path) as f:
    return json.load(f)["success_rate"]


def main(argv):
  del argv
  recipes = {recipe_name(*parse_recipe(r)): parse_recipe(r) for r in _RECIPES.value}
  with open(_RESULTS.value) as f:
    results = json.load(f)
  task, run = results["task"], results["run"]
  val = lambda d: validate(task, d, _VAL_EPISODES.value, _VAL_SEED_OFFSET.value)
  table = {}
  if _CHAIN_POLICIES.value:
    table["chain"] = {n: val(v["workdir"]) for n, v in results["variants"].items()}
  for name, (steps, lr) in recipes.items():
    print(f"{run}: recipe {name}")
    out = pipeline.refit(results, steps, lr, os.path.join(_WORK_ROOT.value, name, run),
                         _EVAL_EPISODES.value, tuple(_VARIANTS.value), _DATA_DIR.value)
    if _EVAL_EPISODES.value:
      out_dir = os.path.join(_OUT.value, name, run)
      os.makedirs(out_dir, exist_ok=True)
      checkpoint.write_json(os.path.join(out_dir, pipeline.RESULTS_FILE), out)
      checkpoint.write_text(os.path.join(out_dir, "table.md"), pipeline.table([out]) + "\n")
    table[name] = {n: val(out["variants"][n]["workdir"]) for n in _VARIANTS.value}
  os.makedirs(_OUT.value, exist_ok=True)
  summary = {"run": run, "val_seed_offset": _VAL_SEED_OFFSET.value,
             "val_episodes": _VAL_EPISODES.value, "success": table}
  checkpoint.write_json(os.path.join(_OUT.value, f"{run}_validation.json"), summary)
  print(f"{run}: real success at {_VAL_EPISODES.value} validation seeds (%)")
  for name, row in table.items():
    print(f"  {name:12s} " + "  ".join(f"{v} {100 * s:.0f}" for v, s in row.items()))


if __name__ == "__main__":
  app.run(main)
