"""Scripted-expert success per task: plain, and after a random-action prefix (recovery).

The expert will play the person who corrects a policy, so it must also recover from states
it did not cause. Seeds are 0..N-1 for every column.

  python -m experiments.expert_success [--episodes=50] [--random_prefix=30]
"""
from absl import app, flags
import tqdm

from hiwm_jax import envs
from hiwm_jax.envs.episode import expert_controller, run_episode

_TASKS = flags.DEFINE_list("tasks", envs.names(), "Tasks to evaluate.")
_EPISODES = flags.DEFINE_integer("episodes", 50, "Randomized episodes per task and column.")
_PREFIX = flags.DEFINE_integer("random_prefix", 30, "Random-action steps before the expert.")


def success_rate(env, prefix: int, episodes: int) -> float:
  controller = expert_controller(env.task)
  wins = sum(run_episode(env, controller, seed, random_prefix=prefix).success
             for seed in tqdm.trange(episodes, desc=f"{env.task.name} prefix={prefix}",
                                     leave=False))
  return wins / episodes


def main(argv):
  del argv
  n, k = _EPISODES.value, _PREFIX.value
  print(f"| task | expert success ({n} ep) | after {k} random steps ({n} ep) |\n|---|---|---|")
  for name in _TASKS.value:
    env = envs.make(name)
    plain, recovered = success_rate(env, 0, n), success_rate(env, k, n)
    print(f"| {name} | {100 * plain:.0f}% | {100 * recovered:.0f}% |")
    env.close()


if __name__ == "__main__":
  app.run(main)
