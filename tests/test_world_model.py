"""The world model: carry API contracts, training, checkpoints, evaluation (tiny, fast)."""
import dataclasses
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import push as push_config
from hiwm_jax import data, plots
from hiwm_jax.world_model import evaluate, load_world_model, train_world_model
from hiwm_jax.world_model.train import grow_params
from hiwm_jax.world_model.data import UnrollSampler, load_episodes, load_split


def _episode(rng, seed, steps=30):
  """A push-shaped (39-d) episode with simple physics: the hand moves 1 cm per unit action."""
  obs = np.zeros((steps + 1, 39), np.float32)
  cur = np.concatenate([rng.uniform(-0.1, 0.1, 3) + [0, 0.6, 0.1], [1.0],
                        rng.uniform(-0.1, 0.1, 3) + [0, 0.6, 0.02], [1, 0, 0, 0], np.zeros(7)])
  goal = rng.uniform(-0.1, 0.1, 3) + [0, 0.8, 0.02]
  actions = rng.uniform(-1, 1, (steps, 4)).astype(np.float32)
  prev = cur.copy()
  for t in range(steps + 1):
    obs[t] = np.concatenate([cur, prev, goal])
    if t < steps:
      prev, cur = cur, cur.copy()
      cur[0:3] += 0.01 * actions[t, :3]
  return data.make_episode(obs, actions, task="push", seed=seed, source="play",
                           success=bool(seed % 2), terminated=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(0)
  for name in ("demos", "play"):
    data.write_dataset(root / "push" / name, [_episode(rng, i) for i in range(5)],
                       obs_dim=39, action_dim=4)
  return str(root)


def _config(data_dir, **train):
  config = push_config.get_config("smoke")
  config.data_dir = data_dir
  config.world_model.train.update(train)
  return config


def _unit_model(config, task):
  """A world model of `config` with unit statistics: one built on no data."""
  from hiwm_jax import world_model
  stats = {"mean": np.zeros(task.obs_dim, np.float32), "std": np.ones(task.obs_dim, np.float32)}
  predicted = world_model.core.obs_structure(task).predicted
  return world_model.make(config, task, stats, np.full(predicted.shape, 0.01))


def _moving_params(wm):
  """Parameters of a network that predicts motion everywhere (init's output layer is zero)."""
  from hiwm_jax import world_model
  leaves, tree = jax.tree.flatten(world_model.init_params(wm, jax.random.PRNGKey(0)))
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("wm"))
  config = _config(data_dir, steps=60, log_every=10, checkpoint_every=60, lr=3e-3)
  wm, params = train_world_model(config, workdir)
  return wm, params, workdir


def test_training_lowers_the_loss_and_logs(trained):
  _, _, workdir = trained
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [json.loads(line)["loss"] for line in f]
  assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_checkpoint_round_trip_is_bit_identical(trained):
  wm, params, workdir = trained
  loaded, loaded_params, config = load_world_model(workdir)
  chex.assert_trees_all_equal(loaded_params, params)
  np.testing.assert_array_equal(loaded.obs_stats["std"], wm.obs_stats["std"])
  np.testing.assert_array_equal(loaded.delta_std, wm.delta_std)
  assert loaded.risk_scale == wm.risk_scale and config.task == "push"
  obs = np.full((wm.history, 39), 0.1, np.float32)
  step = lambda m, p: jax.jit(m.step)(p, m.init(p, obs), jnp.ones(4))
  chex.assert_trees_all_equal(step(loaded, loaded_params), step(wm, params))


def test_fine_tune_starts_from_the_source_and_keeps_its_units(trained, data_dir, tmp_path):
  wm, params, workdir = trained
  # New data in other units: fresh training would normalize differently; a fine-tune must not.
  rng = np.random.default_rng(1)
  data.write_dataset(tmp_path / "push" / "demos", [_episode(rng, i, steps=20) for i in range(4)],
                     obs_dim=39, action_dim=4)
  data.write_dataset(tmp_path / "push" / "play", [_episode(rng, i, steps=20) for i in range(4)],
                     obs_dim=39, action_dim=4)
  config = _config(str(tmp_path), steps=10, log_every=10, checkpoint_every=10, lr=3e-3,
                   init_from=workdir)
  train_world_model(config, str(tmp_path / "tuned"))
  tuned, _, _ = load_world_model(str(tmp_path / "tuned"))
  np.testing.assert_array_equal(tuned.obs_stats["mean"], wm.obs_stats["mean"])
  np.testing.assert_array_equal(tuned.delta_std, wm.delta_std)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    fresh_first = json.loads(f.readline())["loss"]
  with open(tmp_path / "tuned" / "metrics.jsonl") as f:
    tuned_first = json.loads(f.readline())["loss"]
  assert tuned_first < 0.8 * fresh_first  # it starts where the source ended, not from scratch
  config = _config(str(tmp_path), steps=10, init_from=workdir)
  config.world_model.hidden = (16,)
  with pytest.raises(ValueError, match="does not fit this config"):
    train_world_model(config, str(tmp_path / "misfit"))


def test_wrong_observation_shape_names_the_expected_shape(trained):
  wm, params, _ = trained
  with pytest.raises(ValueError, match=r"expected \(2, 39\)"):
    wm.init(params, np.zeros((2, 40), np.float32))
  with pytest.raises(ValueError, match=r"expected \(4,\)"):
    wm.step(params, wm.init(params, np.zeros((2, 39))), np.zeros(3))


def test_jitted_step_compiles_once(trained):
  wm, params, _ = trained
  step = jax.jit(chex.assert_max_traces(wm.step, n=1))
  state = wm.init(params, np.zeros((2, 39), np.float32))
  for k in range(3):
    state = step(params, state, jnp.full((4,), 0.1 * k))
  assert int(state.step) == 3


def test_step_carries_the_goal_and_copies_the_previous_frame(trained):
  wm, params, _ = trained
  obs = _episode(np.random.default_rng(1), 0)["steps"]["observation"][:2]
  state = wm.step(params, wm.init(params, obs), jnp.array([1.0, 0, 0, 0]))
  new = np.asarray(wm.observe(params, state))
  np.testing.assert_allclose(new[36:39], obs[-1, 36:39], atol=1e-6)  # goal carried
  np.testing.assert_allclose(new[18:36], obs[-1, 0:18], atol=1e-6)  # previous frame copied
  assert new.shape == (39,) and np.isfinite(float(wm.judge(params, state)["risk"]))


def test_vmapped_steps_equal_single_steps(trained):
  wm, params, _ = trained
  obs = np.random.default_rng(2).normal(0, 0.05, (3, 2, 39)).astype(np.float32)
  actions = np.random.default_rng(3).uniform(-1, 1, (3, 4)).astype(np.float32)
  step = jax.jit(lambda o, a: wm.step(params, wm.init(params, o), a))
  batched = jax.jit(jax.vmap(step))(obs, actions)
  for i in range(3):
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), step(obs[i], actions[i]),
                                atol=1e-6)


def test_judge_reports_nan_states_invalid_never_successful(trained):
  wm, params, _ = trained
  obs = np.zeros((2, 39), np.float32)
  obs[:, 4:7] = obs[:, 36:39] = [0.0, 0.8, 0.02]  # object on the goal: a success...
  assert bool(wm.judge(params, wm.init(params, obs))["success"])
  obs[-1, 0] = np.nan  # ...unless anything is non-finite
  for state in (wm.init(params, obs), wm.step(params, wm.init(params, obs), jnp.zeros(4))):
    verdict = jax.jit(wm.judge)(params, state)
    assert not bool(verdict["valid"]) and not bool(verdict["success"])
    assert float(verdict["progress"]) == 0.0 and float(verdict["risk"]) == np.inf


def test_missing_dataset_error_names_path_and_command(data_dir):
  config = _config(data_dir)
  with config.unlocked():
    config.wm_data.optional = ()
  with pytest.raises(FileNotFoundError, match=r"push/policy.*experiments\.collect "
                                              r"--config=experiments/configs/push\.py --policy="):
    load_split(config)
  train, held_out, used = load_split(_config(data_dir))  # smoke: policy is optional
  assert used == {"demos": 4, "play": 4} and len(train) == 6 and len(held_out) == 2
  assert [e["episode_metadata"]["dataset"] for e in held_out] == ["demos", "play"]
  assert len(load_episodes(config, "play")) == 5 and len(load_episodes(config, "play", 2)) == 2
  with pytest.raises(FileNotFoundError, match=r"push/push_flow_hgdagger"):
    load_episodes(config, "push_flow_hgdagger")  # e.g. eval_wm --datasets, a typo


def test_train_only_datasets_add_training_data_and_leave_the_held_out_split(data_dir):
  config = _config(data_dir)
  with config.unlocked():
    config.wm_data.update(datasets=("demos",), optional=())
  base_train, base_held, _ = load_split(config)
  with config.unlocked():
    config.wm_data.train_only = ("play",)
  train, held_out, used = load_split(config)
  assert used == {"demos": 4, "play": 4}  # the config caps each dataset at 4
  assert [e["episode_metadata"]["seed"] for e in held_out] == [
      e["episode_metadata"]["seed"] for e in base_held]
  assert len(train) == len(base_train) + 4
  with config.unlocked():
    config.wm_data.train_only = ("demos",)
  with pytest.raises(ValueError, match=r"train_only names 'demos'.*also lists"):
    load_split(config)


def test_unroll_windows_mask_the_episode_end(data_dir):
  episode = data.read_episodes(os.path.join(data_dir, "push", "demos"))[0]
  sampler = UnrollSampler([episode], history=2, unroll=8)
  batch = sampler.batch(np.array([[0, 29]]))  # [E=1, B=2]
  obs = episode["steps"]["observation"]
  np.testing.assert_array_equal(batch["history"][0, 0], obs[[0, 0]])
  np.testing.assert_array_equal(batch["next_obs"][0, 1, 0], obs[30])
  assert batch["mask"][0, 0].all() and batch["mask"][0, 1].tolist() == [True] + [False] * 7


def test_evaluation_runs_and_compares_with_copy_last(trained, data_dir, tmp_path):
  wm, params, _ = trained
  episodes = data.read_episodes(os.path.join(data_dir, "push", "play"))
  errors = evaluate.open_loop_errors(wm, params, episodes, horizons=(1, 25, 40), stride=10)
  assert errors[1]["starts"] == 15 and errors[25]["starts"] == 5  # starts 0, 10, 20 of T=30
  assert errors[40] == {"starts": 0}  # no episode runs that long: no NaN means
  assert errors[25]["hand_pos"]["wm"] < errors[25]["hand_pos"]["copy_last"]
  curves = evaluate.open_loop_curves(wm, params, episodes, 40, stride=10)
  assert curves["starts"].tolist() == [15] * 10 + [10] * 10 + [5] * 10 + [0] * 10
  assert np.isnan(curves["hand_pos"]["wm"][-1])  # no window that long
  assert evaluate.at_horizons(curves, (1, 25, 40)) == errors  # the table reads the curve
  agreement = evaluate.success_agreement(wm, params, episodes)
  assert agreement["episodes"] == 5 and 0 <= agreement["balanced_accuracy"] <= 1
  # Meta-World's hidden state is the controller target, which the actions alone set
  assert agreement["latent_departure"] == [-1] * 5
  assert agreement["disagreements_after_latent_departure"] == 0
  path = tmp_path / "growth.png"
  plots.error_growth(curves, str(path), "push")
  assert path.read_bytes()[:4] == b"\x89PNG"


def test_success_agreement_finds_where_a_replays_grasp_departs_from_the_real_one():
  """A real cloth episode whose recorded cloth lies a metre off after its start: the rule finds
  nothing to pinch in it where the replay (nothing moves in an untrained model) pinches corner
  A, at the expert's grasp step; the same episode cut before the grasp never departs."""
  from hiwm_jax import envs
  from experiments.configs import cloth_fold as cloth_config
  observations, actions, pinched = _cloth_grips()
  wm = _unit_model(cloth_config.get_config("smoke").world_model, envs.task_fns("cloth_fold"))
  params = _init_params(wm)  # a zero head: the cloth stays where it was
  grasp = int(np.argmax(pinched >= 0))
  assert grasp > 0
  away = observations.copy()
  away[1:, 4::3] += 1.0  # every vertex's x, a metre off

  def episode(obs, steps, success):
    return {"steps": {"observation": obs[:steps + 1],
                      "action": np.concatenate([actions[:steps], np.zeros((1, 4), np.float32)])},
            "episode_metadata": {"success": success, "source": "play"}}
  out = evaluate.success_agreement(wm, params, [episode(away, 60, True),
                                                episode(observations, grasp, False)])
  assert out["latent_departure"] == [grasp, -1]
  # the replay's cloth is where it started; the recorded one a metre off since step 1
  assert out["error_before_departure_cm"][0] == pytest.approx(100.0, rel=1e-4)
  assert out["error_before_departure_cm"][1] is None
  assert out["disagreements"] == out["disagreements_after_latent_departure"] == 1


def test_success_phase_errors_split_windows_at_the_first_real_success(trained):
  """An expert episode run past its success: its windows split where the same expert, stopped
  at success by the simulator, stopped; a stopped episode has only windows before."""
  from hiwm_jax import collect, envs
  from hiwm_jax.envs.episode import expert_controller, run_episode
  wm, params, _ = trained
  [episode] = collect.full_horizon_episodes(push_config.get_config("smoke"), 1, 700_000)
  env = envs.make("push")
  stopped = run_episode(env, expert_controller(env.task), 700_000)
  k, T = len(stopped.actions), len(episode["steps"]["action"]) - 1
  assert stopped.success and k < T - 25
  out = evaluate.success_phase_errors(wm, params, [episode], horizon=25, stride=10)
  starts = np.arange(0, T - 25 + 1, 10)  # the windows that run 25 steps
  assert out["before_success"]["starts"] == np.sum(starts + 25 <= k)
  assert out["holding_success"]["starts"] == np.sum((starts < k) & (starts + 25 > k)) > 0
  assert out["after_success"]["starts"] == np.sum(starts >= k) > 0
  assert out["after_success"]["wm"] >= 0 and out["field"] == "object_pos"
  alone = evaluate.success_phase_errors(wm, params, [collect.to_rlds(stopped, "push", "demo")],
                                        horizon=25, stride=10)
  assert alone["holding_success"]["starts"] == alone["after_success"]["starts"] == 0
  assert alone["before_success"]["starts"] == len(range(0, k - 25 + 1, 10))
  too_short = evaluate.success_phase_errors(wm, params, [episode], horizon=T + 1)
  assert [too_short[g]["starts"] for g in ("before_success", "after_success")] == [0, 0]


def test_open_loop_windows_carry_the_real_latents_their_rollouts_must_follow(trained, data_dir):
  """experiments/wm_error_tail splits windows by whether the rollout's latent departs from the
  real one; push's mocap target follows the actions alone, so it never departs, and the real
  latents line up with the steps they follow."""
  wm, params, _ = trained
  assert wm.latent_dim == 3
  episodes = data.read_episodes(os.path.join(data_dir, "push", "play"))
  w = evaluate.open_loop_windows(wm, episodes, length=25, stride=10)
  chex.assert_shape([w["history"], w["target_latents"]], [(15, 2, 39), (15, 25, 3)])
  real = wm.episode_latents(episodes[0]["steps"]["observation"],
                            episodes[0]["steps"]["action"][:-1])
  np.testing.assert_array_equal(w["latent"][1], real[10])
  np.testing.assert_array_equal(w["target_latents"][1, :20], real[11:31])
  _, _, latents = evaluate.rollouts(wm, params, w["history"], w["actions"], w["latent"])
  np.testing.assert_allclose(np.asarray(latents)[w["valid"]], w["target_latents"][w["valid"]],
                             atol=1e-6)


def test_cloth_gripper_goes_exactly_where_it_is_commanded():
  """The mocap gripper is not learned: the WM moves it as the simulator does."""
  from hiwm_jax import envs, world_model
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  env = envs.make("cloth_fold")
  obs, _ = env.reset(seed=0)
  wm = _unit_model(cloth_config.get_config("smoke").world_model, task)
  params = world_model.init_params(wm, jax.random.PRNGKey(0))
  state = wm.init(params, wm.initial_history(obs))
  for action in ([1.0, -0.5, 0.2, 1.0], [0.3, 0.3, -1.0, -1.0]):
    real, *_ = env.step(np.asarray(action, np.float32))
    state = wm.step(params, state, jnp.asarray(action))
    np.testing.assert_allclose(wm.observe(params, state)[:4], real[:4], atol=1e-6)
  env.close()


def _cloth_with_gripper_over_corner_a(task, height=0.004):
  """A reset cloth observation, its corner A [3], and the same with the open gripper `height`
  metres above corner A (closing there pinches it)."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  obs, _ = envs.make("cloth_fold").reset(seed=0)
  corner = np.asarray(cloth_fold.vertices(jnp.asarray(obs)))[cloth_fold.CORNER_A]
  over = obs.copy()
  over[task.obs_layout["gripper_pos"]] = corner + [0.0, 0.0, height]
  return obs, corner, over


def test_a_resting_cloth_stays_exactly_still_in_the_world_model():
  """The still rule (structure.py): whatever the network says, a cloth at rest that nothing
  holds keeps every vertex; without the rule, the same network moves it; a pinch moves it."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  obs, _, over = _cloth_with_gripper_over_corner_a(task, height=0.01)
  config = cloth_config.get_config("smoke").world_model
  assert config.still_rule
  wm = _unit_model(config, task)
  params = _moving_params(wm)
  verts = lambda s: np.asarray(cloth_fold.vertices(wm.observe(params, s)))
  state = wm.init(params, wm.initial_history(obs))  # a repeated observation: at rest
  away = jnp.array([0.0, 0.0, 1.0, -1.0])
  still = wm.step(params, state, away)
  np.testing.assert_array_equal(verts(still), verts(state))
  assert float(still.risk) == 0.0  # no member predicts motion there
  config.still_rule = False
  free = _unit_model(config, task)
  assert np.abs(verts(free.step(params, state, away)) - verts(state)).max() > 1e-3
  held = wm.init(params, wm.initial_history(over))
  pinched = wm.step(params, held, jnp.array([0.0, 0.0, 0.0, 1.0]))
  assert np.abs(verts(pinched) - verts(held)).max() > 1e-3


def test_a_resting_puck_clear_of_the_hand_stays_exactly_still_in_the_world_model():
  """Push's still rule freezes the puck (position and orientation), not the hand; near the
  hand, or without the rule, the same network moves the puck."""
  from hiwm_jax import envs
  task = envs.task_fns("push")
  obs, _ = envs.make("push").reset(seed=0)
  config = push_config.get_config("smoke").world_model
  assert config.still_rule
  wm = _unit_model(config, task)
  params = _moving_params(wm)
  puck = lambda s: np.asarray(wm.observe(params, s))[4:11]
  hand = lambda s: np.asarray(wm.observe(params, s))[0:3]
  action = jnp.array([0.5, 0.0, 0.0, -1.0])
  far = obs.copy()
  far[0:3] = obs[4:7] + [0.0, 0.0, 0.2]  # 20 cm above the puck, at rest
  state = wm.init(params, wm.initial_history(far))
  still = wm.step(params, state, action)
  np.testing.assert_array_equal(puck(still), puck(state))
  assert np.abs(hand(still) - hand(state)).max() > 1e-3  # the hand is still predicted
  near = obs.copy()
  near[0:3] = obs[4:7] + [0.05, 0.0, 0.0]
  close = wm.init(params, wm.initial_history(near))
  assert np.abs(puck(wm.step(params, close, action)) - puck(close)).max() > 1e-3
  config.still_rule = False
  free = _unit_model(config, task)
  assert np.abs(puck(free.step(params, state, action)) - puck(state)).max() > 1e-3


def test_a_command_latent_carries_the_mocap_target_the_actions_set():
  """world_model.command_latent: the state carries Meta-World's mocap target exactly as the
  simulator moves it, training windows start from it, and the network sees its pull."""
  from hiwm_jax import envs
  task = envs.task_fns("push")
  env = envs.make("push")
  obs, _ = env.reset(seed=2)
  config = push_config.get_config("smoke").world_model
  config.command_latent = True
  wm = _unit_model(config, task)
  params = _moving_params(wm)  # a network whose output is not zero
  state = wm.init(params, wm.initial_history(obs))
  np.testing.assert_allclose(state.latent, env.mocap_pos, atol=1e-5)
  observations, actions = [obs], np.random.default_rng(0).uniform(-1, 1, (12, 4))
  step = jax.jit(lambda s, a: wm.step(params, s, a))
  for action in actions.astype(np.float32):
    observations.append(env.step(action)[0])
    state = step(state, jnp.asarray(action))
    np.testing.assert_allclose(state.latent, env.mocap_pos, atol=1e-5)
  env.close()
  latents = wm.episode_latents(np.stack(observations), actions)
  np.testing.assert_allclose(latents[-1], state.latent, atol=1e-6)
  episode = data.make_episode(np.stack(observations), actions.astype(np.float32), task="push",
                              seed=2, source="demo", success=False, terminated=False)
  sampler = UnrollSampler([episode], history=2, unroll=4, latents=[latents])
  np.testing.assert_array_equal(sampler.batch(np.array([0, 5]))["latent"], latents[[0, 5]])
  start = wm.init(params, wm.initial_history(obs))
  pulled = wm.init(params, wm.initial_history(obs), start.latent + 0.05)
  hand = lambda s: np.asarray(wm.observe(params, step(s, jnp.zeros(4))))[0:3]
  assert np.abs(hand(pulled) - hand(start)).max() > 1e-4  # the pull reaches the network
  with pytest.raises(ValueError, match=r"latent has shape \(2,\); expected \(3,\)"):
    wm.init(params, wm.initial_history(obs), np.zeros(2))
  config.command_latent = False
  assert _unit_model(config, task).init(params, wm.initial_history(obs)).latent.shape == (0,)



def _cloth_grips():
  """A simulated cloth episode with every kind of grip: the expert grasps corner A and
  carries it, then random moves open, close (missing or pinching) and let go.
  Returns (observations [61, D], actions [60, 4], the simulator's pinched vertex after each
  action [60], -1 for none)."""
  from hiwm_jax import envs
  from hiwm_jax.envs.episode import expert_controller
  env = envs.make("cloth_fold")
  obs, _ = env.reset(seed=1)
  expert = expert_controller(envs.task_fns("cloth_fold"))
  observations, actions, pinched = [obs], [], []
  rng = np.random.default_rng(0)
  for t in range(60):
    action = (expert(obs, t, jax.random.PRNGKey(t)) if t < 40 else
              np.append(rng.uniform(-1, 1, 3), rng.choice([-1.0, 1.0])))
    obs = env.step(np.asarray(action, np.float32))[0]
    observations.append(obs), actions.append(action), pinched.append(env.pinched_vertex())
  env.close()
  return np.stack(observations), np.stack(actions).astype(np.float32), np.array(pinched)


def test_a_pinch_latent_carries_the_vertex_the_cloth_simulator_pinches():
  """world_model.pinch_latent: the cloth's hidden grip, integrated from the actions, is the
  simulator's own pinch at every step (a grasp, a carry, a release, a missed grasp); the
  network sees it; without the flag no latent is kept."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  observations, actions, pinched = _cloth_grips()
  assert (pinched == cloth_fold.CORNER_A).any() and (pinched == -1).any()
  config = cloth_config.get_config("smoke").world_model
  assert config.pinch_latent
  wm = _unit_model(config, task)
  latents = wm.episode_latents(observations, actions)
  chex.assert_shape(latents, (61, cloth_fold.N_VERTS))
  expected = np.zeros((60, cloth_fold.N_VERTS), np.float32)
  expected[pinched >= 0, pinched[pinched >= 0]] = 1.0
  np.testing.assert_array_equal(latents[1:], expected)
  np.testing.assert_array_equal(latents[0], 0.0)  # a reset holds nothing
  params = _moving_params(wm)
  held = observations[20]  # mid-carry: pinch_at reads the hold off a closed gripper
  assert expected[19, cloth_fold.CORNER_A] == 1.0
  np.testing.assert_array_equal(wm.init(params, wm.initial_history(held)).latent,
                                expected[19])
  step = lambda latent: np.asarray(wm.observe(params, wm.step(
      params, wm.init(params, wm.initial_history(held), latent), jnp.array([0.0, 0, 0, 1]))))
  assert np.abs(step(expected[19]) - step(np.zeros(cloth_fold.N_VERTS))).max() > 1e-4
  config.pinch_latent = False
  assert _unit_model(config, task).init(params, wm.initial_history(held)).latent.shape == (0,)


def test_mirror_augment_doubles_the_cloth_data_with_the_pinches_mirrored_too(data_dir):
  """world_model.mirror_augment: a mirrored cloth episode's pinch, integrated by the world
  model's own rule, is the original's with the vertices mirrored (the rule commutes with the
  symmetry); mirroring twice gives the episode back; a task without a mirror is refused."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from hiwm_jax.world_model.data import mirrored
  from experiments.configs import cloth_fold as cloth_config
  observations, actions, pinched = _cloth_grips()
  episode = data.make_episode(observations, actions, task="cloth_fold", seed=1, source="play",
                              success=False, terminated=False)
  (mirror,) = mirrored([episode], "cloth_fold")
  np.testing.assert_array_equal(mirrored([mirror], "cloth_fold")[0]["steps"]["observation"],
                                episode["steps"]["observation"])
  np.testing.assert_array_equal(mirror["steps"]["is_first"], episode["steps"]["is_first"])
  wm = _unit_model(cloth_config.get_config("smoke").world_model, envs.task_fns("cloth_fold"))
  latents = wm.episode_latents(episode["steps"]["observation"], episode["steps"]["action"])
  mirror_latents = wm.episode_latents(mirror["steps"]["observation"], mirror["steps"]["action"])
  transposed = np.arange(cloth_fold.N_VERTS).reshape(cloth_fold.N_SIDE, -1).T.ravel()
  assert latents.sum() >= 20  # the episode grips
  np.testing.assert_array_equal(mirror_latents, latents[:, transposed])
  with pytest.raises(ValueError, match="no mirror symmetry"):
    mirrored(load_episodes(_config(data_dir), "demos"), "push")


def test_recorded_latent_trains_each_step_with_the_simulators_own_pinch():
  """world_model.recorded_latent: windows carry the recorded pinch after each action; with
  the flag the loss steps with it, without it the loss ignores it. One step from a real
  state is where the model's own pinch is the simulator's: there the two losses agree, which
  pins the recorded latents to the right step (one off and the grasp's loss would differ)."""
  from hiwm_jax import envs
  from hiwm_jax.world_model.train import make_loss
  from experiments.configs import cloth_fold as cloth_config
  observations, actions, pinched = _cloth_grips()
  wm = _unit_model(cloth_config.get_config("smoke").world_model, envs.task_fns("cloth_fold"))
  latents = wm.episode_latents(observations, actions)
  episode = data.make_episode(observations, actions, task="cloth_fold", seed=1, source="play",
                              success=False, terminated=False)
  grasp = int(np.argmax(pinched >= 0))  # the action that pinches first
  windows = np.arange(grasp - 2, grasp + 2)
  params, key = _moving_params(wm), jax.random.PRNGKey(0)
  member = lambda b: jax.tree.map(lambda x: np.broadcast_to(x, (wm.ensemble_size,) + x.shape), b)

  one = member(UnrollSampler([episode], history=2, unroll=1, latents=[latents]).batch(windows))
  np.testing.assert_array_equal(one["next_latent"][0, :, 0], latents[windows + 1])
  assert one["next_latent"][0, 2, 0].any() and not one["latent"][0, 2].any()  # the grasp
  assert make_loss(wm, 1.0, recorded_latent=True)(params, one, key)[0] == make_loss(wm, 1.0)(
      params, one, key)[0]

  sampler = UnrollSampler([episode], history=2, unroll=4, latents=[latents])
  four = member(sampler.batch(windows))
  np.testing.assert_array_equal(four["next_latent"][0, 0], latents[windows[0] + 1:][:4])
  np.testing.assert_array_equal(member(sampler.batch(np.array([59])))["next_latent"][0, 0],
                                np.repeat(latents[60:], 4, axis=0))  # the episode's end: kept
  dropped = dict(four, next_latent=np.zeros_like(four["next_latent"]))  # nothing ever held
  recorded, plain = make_loss(wm, 1.0, recorded_latent=True), make_loss(wm, 1.0)
  assert recorded(params, dropped, key)[0] != recorded(params, four, key)[0]
  assert plain(params, dropped, key)[0] == plain(params, four, key)[0]

def test_the_cloth_world_model_in_its_fold_line_frame_turns_and_shifts_with_the_cloth():
  """world_model.canonical_frame: the network works in the fold line's frame, so a cloth
  turned and shifted on the table (its history and the move with it) steps to the same state
  turned and shifted, to float precision; in world coordinates it does not."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from hiwm_jax.envs.episode import expert_controller
  from hiwm_jax.world_model.structure import rotate_positions
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  env = envs.make("cloth_fold")
  obs, _ = env.reset(seed=2)
  expert = expert_controller(task)
  observations = [obs]
  for t in range(21):  # the expert grasps corner A and starts the carry: the cloth moves
    obs = env.step(np.asarray(expert(obs, t, jax.random.PRNGKey(t)), np.float32))[0]
    observations.append(obs)
  env.close()
  history = np.stack(observations[-2:])
  action = np.asarray(expert(obs, 21, jax.random.PRNGKey(21)), np.float32) * [0.6, 0.6, 0.6, 1]
  yaw, shift = 0.7, jnp.array([0.02, -0.03, 0.0])
  turn = jnp.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
  positions = tuple(cloth_fold.OBS_LAYOUT[f] for f in ("gripper_pos", "cloth_verts"))
  positions = tuple(zip(("gripper_pos", "cloth_verts"), positions))
  moved = lambda o: rotate_positions(jnp.asarray(o), turn, positions, -shift)
  turned_action = jnp.asarray(action).at[:3].set(turn @ action[:3])
  origin, rotation = cloth_fold.fold_line_frame(jnp.asarray(history[-1]))
  hinge = cloth_fold.vertices(rotate_positions(jnp.asarray(history[-1]), rotation, positions,
                                               origin))[jnp.array(cloth_fold.HINGE)]
  np.testing.assert_allclose(hinge[:, 1], 0.0, atol=1e-6)  # the fold line is the frame's x axis
  np.testing.assert_allclose(hinge[0, 0], -hinge[1, 0], atol=1e-6)  # about its midpoint

  config = cloth_config.get_config("smoke").world_model
  for frame in (True, False):
    config.canonical_frame = frame
    wm = _unit_model(config, task)
    params = _moving_params(wm)
    step = lambda hist, act: wm.observe(params, wm.step(params, wm.init(params, hist), act))
    there = step(history, jnp.asarray(action))
    assert np.abs(there - history[-1])[4:].max() > 1e-3  # the network moves the cloth
    error = np.abs(moved(there) - step(jax.vmap(moved)(jnp.asarray(history)), turned_action))
    if frame:
      assert error.max() < 1e-5, error.max()
    else:
      assert error.max() > 1e-3, error.max()


def test_a_physics_prior_world_model_steps_as_the_written_out_physics_until_trained():
  """world_model.physics_prior: the network corrects the cloth's written-out physics
  (cloth_physics.py), so an untrained one (zero output layer) steps a held cloth exactly as
  the physics does and leaves an unheld one to the network; it needs the pinch latent."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from hiwm_jax.world_model import cloth_physics, init_params
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  _, corner, over = _cloth_with_gripper_over_corner_a(task)
  config = cloth_config.get_config("smoke").world_model
  config.physics_prior = True
  wm = _unit_model(config, task)
  params = init_params(wm, jax.random.PRNGKey(0))
  state = wm.init(params, wm.initial_history(over))
  for action in ([0.0, 0.0, 0.0, 1.0], [0.3, 0.2, 1.0, 1.0], [0.3, 0.2, 1.0, 1.0]):
    previous, before = wm.unnormalize(state.obs_history[-2:])  # history 2: the velocity
    state = wm.step(params, state, jnp.asarray(action))
    assert float(state.latent[cloth_fold.CORNER_A]) == 1.0
    physics = cloth_physics.next_observation(previous, before, jnp.asarray(action),
                                             state.latent, cloth_physics.Physics(**config.physics))
    np.testing.assert_allclose(wm.observe(params, state), physics, atol=1e-5)
  lifted = cloth_fold.vertices(wm.observe(params, state))[cloth_fold.CORNER_A, 2]
  assert float(lifted) > float(corner[2]) + 0.02  # the physics carried corner A up
  config.physics_prior = False
  plain = _unit_model(config, task)
  moved = plain.step(params, plain.init(params, plain.initial_history(over)),
                     jnp.array([0.3, 0.2, 1.0, 1.0]))
  np.testing.assert_array_equal(plain.observe(params, moved)[4:], over[4:])  # copies
  config.physics_prior, config.pinch_latent = True, False
  with pytest.raises(ValueError, match="pinch_latent=True"):
    _unit_model(config, task)



def test_the_physics_gradient_changes_what_a_step_passes_back_not_what_it_predicts():
  """world_model.physics_gradient: the prior's step is the same, but its gradient comes from
  the cheaper surrogate physics instead of being stopped: an untrained model's held cloth
  then depends on the observation before the last (the velocity the physics carries on),
  which a stopped prior passes nothing back to. Needs the prior; finite at rest."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from hiwm_jax.world_model import cloth_physics, init_params
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  _, _, over = _cloth_with_gripper_over_corner_a(task)
  config = cloth_config.get_config("smoke").world_model
  assert not config.physics_gradient  # off by default
  config.physics_prior = True
  stopped = _unit_model(config, task)
  config.physics_gradient = True
  passing = _unit_model(config, task)
  params = init_params(passing, jax.random.PRNGKey(0))
  state = passing.init(params, passing.initial_history(over))
  for action in ([0.0, 0.0, 0.0, 1.0], [0.3, 0.2, 1.0, 1.0]):  # grasp corner A, lift it
    state = passing.step(params, state, jnp.asarray(action))
  lift = jnp.array([0.3, 0.2, 1.0, 1.0])

  def held_corner(wm, before_last):  # corner A after one more step, from a moved history
    moved = state.replace(obs_history=state.obs_history.at[0].set(before_last))
    return cloth_fold.vertices(wm.observe(params, wm.step(params, moved, lift)))[
        cloth_fold.CORNER_A]

  np.testing.assert_allclose(held_corner(passing, state.obs_history[0]),
                             held_corner(stopped, state.obs_history[0]), atol=1e-6)
  through = [jax.jacobian(held_corner, argnums=1)(wm, state.obs_history[0])
             for wm in (passing, stopped)]
  assert np.all(np.isfinite(through[0])) and np.abs(through[0]).max() > 0.01
  np.testing.assert_array_equal(through[1], 0.0)
  resting = jnp.asarray(over)  # at rest on the table, friction's slide is zero: still finite
  rest_grad = jax.jacobian(cloth_physics.next_vertices, argnums=1)(
      resting, resting, jnp.zeros(4), jnp.zeros(cloth_fold.N_VERTS))
  assert np.all(np.isfinite(rest_grad))
  config.physics_prior = False
  with pytest.raises(ValueError, match="physics_gradient.*physics_prior=True"):
    _unit_model(config, task)


def _edge_error(obs):
  """The largest departure (metres) of a cloth observation's edges from their rest length."""
  from hiwm_jax.envs import cloth_fold
  from hiwm_jax.world_model import cloth_physics
  ends = np.array(cloth_physics.edges())
  rest = np.where(ends[:, 1] - ends[:, 0] == cloth_fold.N_SIDE + 1, 2 ** 0.5, 1.0)
  verts = np.asarray(cloth_fold.vertices(jnp.asarray(obs)))
  return np.abs(np.linalg.norm(verts[ends[:, 0]] - verts[ends[:, 1]], axis=-1) -
                cloth_fold.SPACING * rest).max()


def test_constraint_passes_put_a_moving_cloth_back_on_its_edges_and_keep_the_rest():
  """world_model.constraint_passes: the network's predicted cloth is projected onto the edges'
  rest lengths, the held vertex stays where the network put it, the gripper where it was
  commanded, and a resting cloth stays exactly still."""
  from hiwm_jax import envs
  from hiwm_jax.envs import cloth_fold
  from experiments.configs import cloth_fold as cloth_config
  task = envs.task_fns("cloth_fold")
  obs, _, over = _cloth_with_gripper_over_corner_a(task)
  config = cloth_config.get_config("smoke").world_model
  assert config.constraint_passes == 0  # off by default
  free = _unit_model(config, task)
  config.constraint_passes = 8
  projected = _unit_model(config, task)
  params = _moving_params(free)
  grip = jnp.array([0.3, 0.2, 1.0, 1.0])
  after = lambda wm: wm.observe(params, wm.step(params, wm.init(params, wm.initial_history(
      over)), grip))
  loose, tight = after(free), after(projected)
  assert _edge_error(over) < 1e-5 and _edge_error(loose) > 2e-3  # the network stretches it
  assert _edge_error(tight) < _edge_error(loose) / 5
  a = slice(4 + 3 * cloth_fold.CORNER_A, 7 + 3 * cloth_fold.CORNER_A)
  np.testing.assert_array_equal(tight[a], loose[a])  # the held vertex is pinned
  np.testing.assert_array_equal(tight[:4], loose[:4])  # the gripper as commanded
  state = projected.init(params, projected.initial_history(obs))  # at rest, nothing held
  still = projected.step(params, state, jnp.array([0.0, 0.0, 1.0, -1.0]))
  np.testing.assert_array_equal(projected.observe(params, still)[4:], obs[4:])
  config.constraint_passes = -1
  with pytest.raises(ValueError, match="constraint_passes must be >= 0"):
    _unit_model(config, task)


def test_input_noise_shifts_only_the_free_positions_and_zero_noise_is_the_plain_loss(data_dir):
  from hiwm_jax import envs
  from hiwm_jax.world_model.train import make_loss, noised_dims
  task = envs.task_fns("cloth_fold")
  config = _config(data_dir)
  config.world_model.update(pinch_latent=True)
  wm = _unit_model(config.world_model, task)
  assert set(noised_dims(wm)) == set(range(4, task.obs_dim))  # the vertices: not the gripper,
  # which the actions set exactly, nor its closed flag
  push = envs.task_fns("push")
  assert set(noised_dims(_unit_model(config.world_model, push))) == {0, 1, 2, 4, 5, 6}

  params = _moving_params(wm)
  rng = np.random.default_rng(0)
  E, B, K = wm.ensemble_size, 3, 4
  obs = rng.normal(0, 0.1, (E, B, wm.history + K, task.obs_dim)).astype(np.float32)
  obs[..., 3] = 0.0  # open gripper: no pinch
  batch = {"history": obs[:, :, :wm.history], "next_obs": obs[:, :, wm.history:],
           "action": rng.uniform(-1, 1, (E, B, K, 4)).astype(np.float32),
           "mask": np.ones((E, B, K), bool),
           "latent": np.zeros((E, B, wm.latent_dim), np.float32),
           "next_latent": np.zeros((E, B, K, wm.latent_dim), np.float32)}
  key = jax.random.PRNGKey(0)
  plain = make_loss(wm, 1.0)(params, batch, key)[0]
  assert make_loss(wm, 1.0, 0.0)(params, batch, key)[0] == plain
  noisy = jax.jit(make_loss(wm, 1.0, 0.01))
  assert noisy(params, batch, key)[0] == noisy(params, batch, key)[0]  # deterministic per key
  assert noisy(params, batch, key)[0] != plain
  assert noisy(params, batch, jax.random.PRNGKey(1))[0] != noisy(params, batch, key)[0]


def test_negative_input_noise_is_refused_by_name(data_dir, tmp_path):
  config = _config(data_dir, steps=2)
  config.world_model.input_noise = -0.001
  with pytest.raises(ValueError, match="input_noise"):
    train_world_model(config, str(tmp_path))


def test_task_loss_units_weigh_position_errors_in_metres_as_eval_wm_does():
  """world_model.loss_units="task": a squared error in normalized units, weighed, is a fixed
  multiple of the same error in metres on the positions, whatever each dim's std; the other
  dims keep weight 1. "normalized" weighs every dim alike."""
  from hiwm_jax import envs, world_model
  from hiwm_jax.world_model.train import dim_weights, noised_dims
  task = envs.task_fns("push")
  rng = np.random.default_rng(0)
  stats = {"mean": np.zeros(task.obs_dim, np.float32),
           "std": rng.uniform(0.01, 0.5, task.obs_dim).astype(np.float32)}
  predicted = world_model.core.obs_structure(task).predicted
  delta = rng.uniform(0.01, 0.2, predicted.shape).astype(np.float32)
  wm = world_model.make(push_config.get_config("smoke").world_model, task, stats, delta)
  positions = np.isin(predicted, noised_dims(wm))
  std = stats["std"][predicted]
  # the multi-step loss is in std units, the one-step loss in typical-step units
  for weights, scale in zip(dim_weights(wm, "task"), (std, std * delta)):
    ratios = []
    for _ in range(3):
      metres = np.where(positions, rng.normal(0, 0.01, predicted.size), 0.0)
      ratios.append(np.sum(weights * (metres / scale) ** 2) / np.sum(metres ** 2))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)
    np.testing.assert_allclose(weights[~positions], 1.0)
    np.testing.assert_allclose(weights[positions].mean(), 1.0, rtol=1e-5)
  for weights in dim_weights(wm, "normalized"):
    np.testing.assert_array_equal(weights, 1.0)


def test_unknown_loss_units_are_refused_by_name(data_dir, tmp_path):
  config = _config(data_dir, steps=2)
  config.world_model.loss_units = "cm"
  with pytest.raises(ValueError, match="loss_units must be one of .*'task'.*got 'cm'"):
    train_world_model(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before anything was written


def test_a_memory_is_carried_rewritten_and_read_by_the_next_step(data_dir, tmp_path):
  """world_model.memory: zeros at init; each step writes every member's next memory, which
  the step after reads; a trained model round-trips through its checkpoint."""
  config = _config(data_dir, steps=10, log_every=10, checkpoint_every=10, lr=3e-3)
  config.world_model.memory = 8
  wm, params = train_world_model(config, str(tmp_path))
  e = wm.ensemble_size
  state = wm.init(params, np.zeros((2, 39), np.float32))
  chex.assert_trees_all_equal(state.memory, jnp.zeros((e, 8), jnp.float32))
  moving, action = _moving_params(wm), jnp.array([0.5, -0.2, 0.1, 0.0])
  nxt = jax.jit(wm.step)(moving, state, action)
  chex.assert_shape(nxt.memory, (e, 8))
  assert np.abs(np.asarray(nxt.memory)).min() > 0  # every member wrote its memory
  stepped = lambda s: np.asarray(wm.observe(moving, wm.step(moving, s, action)))
  assert np.abs(stepped(nxt) - stepped(nxt.replace(memory=-nxt.memory))).max() > 1e-7
  loaded, loaded_params, _ = load_world_model(str(tmp_path))
  chex.assert_trees_all_equal(loaded_params, params)
  assert loaded.memory == 8


def test_a_memory_for_the_cloth_graph_or_below_zero_is_refused_by_name():
  from experiments.configs import cloth_fold as cloth_config
  from hiwm_jax import envs
  config = cloth_config.get_config("graph").world_model
  config.memory = 4
  with pytest.raises(ValueError, match="world_model.memory"):
    _unit_model(config, envs.task_fns("cloth_fold"))
  config = push_config.get_config("smoke").world_model
  config.memory = -1
  with pytest.raises(ValueError, match="world_model.memory"):
    _unit_model(config, envs.task_fns("push"))


def test_latent_departures_find_the_first_step_a_rollouts_latent_leaves_the_real_one():
  """wm_error_tail's split of lost windows: the first departing step, -1 if none departs."""
  real = np.zeros((3, 5, 2), np.float32)
  rolled = real.copy()
  rolled[1, 2:, 0] = 1.0  # departs at step 2 and stays off
  rolled[2, 4, 1] = 1e-5  # within tolerance: float noise is no departure
  np.testing.assert_array_equal(evaluate.latent_departures(rolled, real), [-1, 2, -1])
  rolled[2, 0, 1] = 1.0  # departs at the first step
  np.testing.assert_array_equal(evaluate.latent_departures(rolled, real), [-1, 2, 0])


def test_grip_phases_name_each_step_by_what_its_action_does_to_the_grip():
  """experiments/wm_phase_errors: a grasp, a carry, a release, the settling steps after it
  (counted until SETTLE_STEPS), then rest; a second grasp starts over."""
  from experiments.wm_phase_errors import SETTLE_STEPS, phases
  held = np.array([0, 0, 1, 1, 1, 0] + [0] * (SETTLE_STEPS + 1) + [1, 0], bool)
  names = phases(held)
  assert len(names) == len(held) - 1
  assert list(names[:5]) == ["rest", "grasp step", "carry", "carry", "release step"]
  assert list(names[5:5 + SETTLE_STEPS]) == [f"{k} after release"
                                            for k in range(1, SETTLE_STEPS + 1)]
  assert list(names[5 + SETTLE_STEPS:]) == ["rest", "grasp step", "release step"]


def _init_params(wm):
  from hiwm_jax import world_model
  return world_model.init_params(wm, jax.random.PRNGKey(3))


def test_a_grown_network_starts_as_its_source_and_trains(trained, data_dir, tmp_path):
  """world_model.train.init_grow: a trained model grown by a memory predicts as it did, and
  training goes on from there; a network that would have to shrink is refused by name."""
  wm, params, workdir = trained
  # lr so small the trained model stays the source: it trains as the source's fine-tune does
  config = _config(data_dir, steps=10, log_every=10, checkpoint_every=10, lr=1e-6,
                   init_from=workdir, init_grow=True)
  config.world_model.memory = 4
  grown_wm, tuned = train_world_model(config, str(tmp_path / "grown"))
  assert grown_wm.memory == 4
  grown = grow_params(params, _init_params(grown_wm))
  obs = np.full((wm.history, 39), 0.1, np.float32)
  actions = jax.random.uniform(jax.random.PRNGKey(0), (5, 4), minval=-1.0, maxval=1.0)
  chex.assert_trees_all_close(  # to round-off: the wider first layer sums in another order
      grown_wm.rollout(grown, grown_wm.init(grown, obs), actions).obs_history,
      wm.rollout(params, wm.init(params, obs), actions).obs_history, rtol=1e-5, atol=1e-6)
  plain = _config(data_dir, steps=10, log_every=10, checkpoint_every=10, lr=1e-6,
                  init_from=workdir)  # the same fine-tune without the memory
  train_world_model(plain, str(tmp_path / "plain"))
  first_loss = lambda run: json.loads((tmp_path / run / "metrics.jsonl").read_text()
                                      .splitlines()[0])["loss"]
  np.testing.assert_allclose(first_loss("grown"), first_loss("plain"), rtol=1e-3)
  head = tuned["params"]["members"][f"Dense_{len(config.world_model.hidden)}"]["kernel"]
  assert np.abs(np.asarray(head[..., -4:])).max() > 0  # the memory's outputs got a gradient
  with pytest.raises(ValueError, match="cannot grow a weight of shape"):
    grow_params(_init_params(grown_wm), params)
  with pytest.raises(ValueError, match="cannot grow hidden layer 0 of width"):
    wide = dataclasses.replace(wm, module=wm.module.clone(
        hidden=tuple(w + 1 for w in wm.module.hidden)))
    grow_params(params, _init_params(wide))
  config.world_model.hidden = (16,)  # another depth would not start as the source
  with pytest.raises(ValueError, match="init_grow only adds a memory"):
    train_world_model(config, str(tmp_path / "deeper"))
  config.world_model.hidden = tuple(3 * w // 2 for w in wm.module.hidden)  # not a whole factor
  with pytest.raises(ValueError, match="widens its hidden layers by whole factors"):
    train_world_model(config, str(tmp_path / "wider"))


def test_a_widened_network_starts_as_its_source_and_its_copies_part(trained, data_dir,
                                                                    tmp_path):
  """init_grow with every hidden layer twice as wide (and a memory): each unit copied, the
  grown model predicts as its source; training makes a unit's two copies differ."""
  wm, params, workdir = trained
  config = _config(data_dir, steps=10, log_every=10, checkpoint_every=10, lr=1e-3,
                   init_from=workdir, init_grow=True)
  config.world_model.update(hidden=tuple(2 * w for w in wm.module.hidden), memory=3)
  wide_wm, tuned = train_world_model(config, str(tmp_path / "wide"))
  assert wide_wm.module.hidden == config.world_model.hidden
  grown = grow_params(params, _init_params(wide_wm), jax.random.PRNGKey(3))
  obs = np.full((wm.history, 39), 0.1, np.float32)
  actions = jax.random.uniform(jax.random.PRNGKey(0), (5, 4), minval=-1.0, maxval=1.0)
  chex.assert_trees_all_close(
      wide_wm.rollout(grown, wide_wm.init(grown, obs), actions).obs_history,
      wm.rollout(params, wm.init(params, obs), actions).obs_history, rtol=1e-5, atol=1e-6)
  inputs = params["params"]["members"]["Dense_0"]["kernel"].shape[1]  # the memory's rows follow
  first = grown["params"]["members"]["Dense_0"]["kernel"][:, :inputs]  # [E, in, 2 * width]
  width = wm.module.hidden[0]
  np.testing.assert_array_equal(first[..., :width], first[..., width:])  # copies at the start
  trained_first = np.asarray(tuned["params"]["members"]["Dense_0"]["kernel"])[:, :inputs]
  assert np.abs(trained_first[..., :width] - trained_first[..., width:]).max() > 1e-5
