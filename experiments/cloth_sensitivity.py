r"""How much the cloth simulator itself amplifies a small error: the floor under any world
model's open-loop error.

From each start (every --stride steps of a play-like episode: random first steps, then the
noisy expert), every vertex is moved by N(0, sigma^2) per axis and the episode's own actions
are replayed; the mean vertex distance to the unmoved run is reported after 1, 10 and 50
steps, as `eval_wm` reports a world model's (with copy-last on the same starts). The
unperturbed replay's gap to the recorded episode checks that replay is exact. Starts whose
perturbed run pinches a different vertex than the unmoved one are counted apart: a closing
gripper takes the nearest vertex, so a tiny error can flip which one.

With --every_step, fresh noise moves the vertices before every step, not only at the start:
a stand-in for a world model whose own step errs a little, without bias, every step (a model's
errors come back each step; a single kick at the start is the floor under that).

With --observed_velocity, the vertices' velocities are set at the start to what the run's last
two observations show (their difference over the control period), as a world model starts
from real observations; the simulator then carries its own. With --every_step too, they are
set so before every step: the simulator as a world model whose whole state is the
observation history (`world_model.core.WMState`), exact physics in between. Pass
--sigmas_mm=0 for that alone.

With --config, the episodes are that config's held-out world-model split instead (recorded
demos, play and base-policy rollouts, replayed from their seeds and actions): at 50 steps,
the very windows `eval_wm` judges a world model on.

  python -m experiments.cloth_sensitivity [--episodes=16] [--sigmas_mm=0.001,0.1,0.7,2.2]
  python -m experiments.cloth_sensitivity --every_step --sigmas_mm=0.1,0.2,0.4
  python -m experiments.cloth_sensitivity --every_step --config=experiments/configs/cloth_fold.py \
      --config.data_dir=/tmp/hiwm3
  python -m experiments.cloth_sensitivity --observed_velocity [--every_step] --sigmas_mm=0 \
      --config=experiments/configs/cloth_fold.py --config.data_dir=/tmp/hiwm3
"""
import numpy as np
import tqdm
from absl import app, flags
from ml_collections import config_flags

from hiwm_jax import envs
from hiwm_jax.envs import cloth_fold
from hiwm_jax.envs.episode import expert_controller, run_episode
from hiwm_jax.world_model.data import load_split

_EPISODES = flags.DEFINE_integer("episodes", 16, "Play-like episodes (seeds 5,000,000 + i).")
_SIGMAS = flags.DEFINE_list("sigmas_mm", ["0.001", "0.1", "0.7", "2.2"],
                            "Per-axis perturbation std devs, millimetres.")
_HORIZONS = flags.DEFINE_list("horizons", ["1", "10", "50"], "Steps after the perturbation.")
_STRIDE = flags.DEFINE_integer("stride", 10, "Steps between starts.")
_EVERY_STEP = flags.DEFINE_bool("every_step", False, "Perturb before every step, not only at "
                                "the start.")
_OBSERVED_VELOCITY = flags.DEFINE_bool(
    "observed_velocity", False, "At the start (with --every_step: before every step), set the "
    "vertices' velocities to the last two observations' difference over the control period "
    "(the simulator's state as a world model holds it).")
_CONFIG = config_flags.DEFINE_config_file("config", None, "A cloth_fold config: replay its "
                                          "held-out world-model split instead of play.")
_SEED0 = 5_000_000  # apart from data, play, rollout, Hi-WM and evaluation seeds


def play_episodes(env, count):
  """(seed, observations [T+1, D], actions [T, A]) of `count` new play-like episodes."""
  controller = expert_controller(env.task, noise_scale=0.3)
  for i in range(count):
    episode = run_episode(env, controller, _SEED0 + i, random_prefix=20, random_action_prob=0.1)
    yield _SEED0 + i, episode.observations, episode.actions


def held_out_episodes(config):
  """(seed, observations, actions) of the config's held-out world-model episodes."""
  if config.task != "cloth_fold":
    raise app.UsageError(f"this measures the cloth simulator; --config is for {config.task}")
  for episode in load_split(config)[1]:
    steps = episode["steps"]
    yield (int(episode["episode_metadata"]["seed"]), steps["observation"],
           steps["action"][:-1])


def replay_from(env, seed, actions, t0, offsets, horizons, observed_velocity=None):
  """(mean vertex positions after each horizon [H, 64, 3], pinched vertex per step [max h]);
  offsets [max h, 64, 3] move the vertices before each step (zeros: not at all);
  observed_velocity [max h] bool: before those steps the vertices move as the last two
  observations show (None: never)."""
  obs, _ = env.reset(seed=seed)
  previous = obs  # a reset cloth is at rest
  for action in actions[:t0]:
    previous, obs = obs, env.step(action)[0]
  period = cloth_fold.SUBSTEPS * env.model.opt.timestep
  verts, pinched = [], []
  for k in range(1, max(horizons) + 1):
    if np.any(offsets[k - 1]):
      obs = env.nudge_vertices(offsets[k - 1])
    if observed_velocity is not None and observed_velocity[k - 1]:
      env.set_vertex_velocities(
          (cloth_fold.vertices(obs) - cloth_fold.vertices(previous)) / period)
    previous, obs = obs, env.step(actions[t0 + k - 1])[0]
    pinched.append(env.pinched_vertex())
    if k in horizons:
      verts.append(np.asarray(cloth_fold.vertices(obs)))
  return np.stack(verts), np.array(pinched)


def main(argv):
  del argv
  sigmas = [float(s) / 1000.0 for s in _SIGMAS.value]
  horizons = [int(h) for h in _HORIZONS.value]
  env = envs.make("cloth_fold")
  if _CONFIG.value is None:
    episodes, what = list(play_episodes(env, _EPISODES.value)), "play-like episodes"
  else:
    episodes, what = list(held_out_episodes(_CONFIG.value)), "held-out episodes"
  rng = np.random.default_rng(0)
  errors = {s: [] for s in sigmas}  # per start: [H] cm
  flipped = {s: [] for s in sigmas}  # per start: a different vertex was pinched
  replay_gap = 0.0  # the unperturbed replay against the recorded episode: 0 if deterministic
  copy_last = []  # per start: [H] cm, the start's cloth against the recorded one (eval_wm's)
  shape = (max(horizons), cloth_fold.N_VERTS, 3)  # offsets: before each step of a replay
  restarts = None  # steps before which the velocities are re-read from the observations
  if _OBSERVED_VELOCITY.value:
    restarts = np.arange(max(horizons)) < (max(horizons) if _EVERY_STEP.value else 1)
  for seed, observations, actions in tqdm.tqdm(episodes, desc="cloth episodes"):
    for t0 in range(0, len(actions) - max(horizons) + 1, _STRIDE.value):
      reference, ref_pinched = replay_from(env, seed, actions, t0, np.zeros(shape),
                                           horizons)
      recorded = np.stack([cloth_fold.vertices(observations[t0 + h]) for h in horizons])
      replay_gap = max(replay_gap, float(np.abs(reference - recorded).max()))
      start = cloth_fold.vertices(observations[t0])
      copy_last.append(100 * np.linalg.norm(recorded - start, axis=-1).mean(-1))
      for s in sigmas:
        offsets = np.zeros(shape)
        if _EVERY_STEP.value:
          offsets = rng.normal(0.0, s, shape)
        else:
          offsets[0] = rng.normal(0.0, s, shape[1:])
        verts, pinched = replay_from(env, seed, actions, t0, offsets, horizons, restarts)
        errors[s].append(100 * np.linalg.norm(verts - reference, axis=-1).mean(-1))
        flipped[s].append(bool(np.any(pinched != ref_pinched)))
  env.close()
  head = " | ".join(f"{h}-step (cm)" for h in horizons)
  when = "before every step" if _EVERY_STEP.value else "at the start"
  if _OBSERVED_VELOCITY.value:
    when += (", its velocity set to the observed one " +
             ("before every step" if _EVERY_STEP.value else "at the start"))
  print(f"cloth_fold, {len(episodes)} {what}, {len(errors[sigmas[0]])} starts, "
        f"perturbed {when}: "
        "mean vertex error after the same actions, perturbed vs unperturbed run; the "
        f"unperturbed replay differs from the recorded episode by at most {replay_gap:g} m")
  print(f"| sigma per axis (mm) | {head} | {horizons[-1]}-step, max (cm) | starts with "
        f"another vertex pinched | {horizons[-1]}-step without those (cm) |")
  print("|---" * (len(horizons) + 4) + "|")
  print("| copy-last | " + " | ".join(f"{e:.4f}" for e in np.mean(copy_last, 0)) +
        " | | | |")
  for s in sigmas:
    err, flip = np.array(errors[s]), np.array(flipped[s])
    rest = f"{err[~flip, -1].mean():.4f}" if (~flip).any() else "-"
    print(f"| {1000 * s:g} | " + " | ".join(f"{e:.4f}" for e in err.mean(0)) +
          f" | {err[:, -1].max():.3f} | {flip.sum()} ({flip.mean():.0%}) | {rest} |")


if __name__ == "__main__":
  app.run(main)
