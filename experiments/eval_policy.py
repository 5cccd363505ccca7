"""Real success of a trained policy: N simulator episodes at fixed held-out seeds.

  python -m experiments.eval_policy --workdir=/tmp/hiwm/runs/push_diffusion [--episodes=50]
Writes <workdir>/eval_real.json (summary and per-episode outcomes) and prints the summary.
--seed_offset=2000000 evaluates on a validation range instead (eval_real_2000000.json): choose
settings there, so the evaluation seeds stay untouched by the choice.
"""
import json
import os

from absl import app, flags

from hiwm_jax import envs, evaluate
from hiwm_jax.policies.train import load_policy

_WORKDIR = flags.DEFINE_string("workdir", None, "A policy work directory.")
_EPISODES = flags.DEFINE_integer("episodes", None, "Episodes (default: the config's eval).")
_SEED_OFFSET = flags.DEFINE_integer("seed_offset", None, "First seed (default: the config's "
                                    "evaluation seeds, config.eval.seed_offset).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  policy, params, config = load_policy(_WORKDIR.value)
  env = envs.make(config.task, max_steps=config.max_steps)
  validation = _SEED_OFFSET.value is not None
  summary, results = evaluate.evaluate_real(
      env, policy, params, _EPISODES.value or config.eval.num_episodes,
      seed_offset=_SEED_OFFSET.value if validation else config.eval.seed_offset,
      desc=f"{config.task} {policy.name}")
  env.close()
  summary.update(backbone=config.policy.backbone, workdir=os.path.abspath(_WORKDIR.value),
                 outcomes=[bool(r.success) for r in results])
  name = f"eval_real_{_SEED_OFFSET.value}.json" if validation else "eval_real.json"
  with open(os.path.join(_WORKDIR.value, name), "w") as f:
    json.dump(summary, f, indent=2)
  low, high = summary["ci95"]
  print(f"{config.task} {config.policy.backbone}: real success {summary['successes']}/"
        f"{summary['episodes']} = {100 * summary['success_rate']:.0f}% "
        f"(seeds {summary['seeds'][0]}-{summary['seeds'][1] - 1}) "
        f"(95% CI {100 * low:.0f}-{100 * high:.0f}%)")


if __name__ == "__main__":
  app.run(main)
