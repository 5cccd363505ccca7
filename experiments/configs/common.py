"""Defaults shared by every task's config; a task file overrides what differs.

Config args (after the colon in `--config=...py:ARG`) are comma-separated:
  quick             the whole Hi-WM chain (experiments/hiwm.py) in about 10 minutes on 2 cores
  smoke             shrink everything to seconds, for tests (results mean nothing)
  backbone=NAME     the policy backbone: diffusion (default) or flow
  many              train the policy on many demos (the data-rich reference, not the base)
  graph             cloth_fold only: the world model's network passes messages over the
                    cloth's vertex grid (a GPU job: about 40 training steps/s on an H200, about
                    one every 3 s on 2 CPU cores) instead of the default MLP ensemble
  (smoke also lets the world model train on whichever datasets exist)

Datasets live in <data_dir>/<task>/<name>: demos, play, full-horizon episodes (where
configured), and policy rollouts.
"""
import ml_collections

from hiwm_jax import policies
from hiwm_jax.session import correctors

_FLAGS = {"quick", "smoke", "many", "graph"}
_KEYS = {"backbone"}


def parse_arg(arg: str | None) -> dict:
  """'quick,backbone=flow' -> {'quick': True, 'backbone': 'flow'}; unknown words fail."""
  out = {}
  for word in (w.strip() for w in (arg or "").split(",") if w.strip()):
    key, _, value = word.partition("=")
    if (value and key not in _KEYS) or (not value and key not in _FLAGS):
      raise ValueError(f"unknown config arg {word!r}; known: {sorted(_FLAGS)} and "
                       f"{sorted(k + '=...' for k in _KEYS)}")
    out[key] = value or True
  return out


def task_config(task: str, arg: str | None = None, *, base_demos: dict[str, int],
                many_demos: int, **collect_overrides) -> ml_collections.ConfigDict:
  """The full config for one task. base_demos: per backbone, the few demos the base policy
  learns from, chosen so it fails often enough to be corrected (the backbones learn at different
  rates); many_demos: the data-rich reference."""
  args = parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.task = task
  config.max_steps = ml_collections.FieldReference(None, field_type=int)  # None: the task's own
  config.data_dir = "/tmp/hiwm"  # datasets live in <data_dir>/<task>/<name>

  # Real-world data: expert demos and "play" (the expert knocked off-nominal and recovering).
  config.collect = ml_collections.ConfigDict(dict(
      num_demos=many_demos + many_demos // 10,  # tries; failures are dropped (demos succeed)
      num_play=50,
      demo_seed_offset=0,  # episode i uses seed offset + i; evaluation seeds live elsewhere
      play_seed_offset=100_000,
      play_noise=0.3,  # Gaussian action noise on the expert, per step
      play_random_prefix_max=40,  # each play episode starts with U{0..max} random steps
      play_random_action_prob=0.1,  # later steps are random with this probability
      num_policy=50,  # with --policy: recorded rollouts of a trained policy
      policy_seed_offset=200_000,
      # episodes that run on past the first success to the horizon (collect.py), dataset
      # "full_horizon", which the world model trains on whole (wm_data.train_only). On the
      # cloth, 200 cut the 50-step error on new full-horizon episodes by 38%, 43% in windows
      # holding the release (results/world_model); Meta-World tasks were not measured: 0.
      # Turning it off takes --config.wm_data.train_only='()' too.
      num_full_horizon=0,
      full_horizon_seed_offset=700_000,
  ))
  config.collect.update(collect_overrides)

  config.policy = policies.default_config()
  config.policy.backbone = args.get("backbone", "diffusion")
  if config.policy.backbone not in base_demos:
    raise ValueError(f"unknown policy backbone {config.policy.backbone!r}; known: "
                     f"{', '.join(sorted(base_demos))}")
  config.policy_data = ml_collections.ConfigDict(dict(
      datasets=("demos",),
      # caps "demos" only (post-training adds corrections whole)
      max_episodes=many_demos if args.get("many") else base_demos[config.policy.backbone],
      # windows are sampled in proportion to the weight of their step's label; all equal:
      # uniform (as without weights)
      label_weights=dict(demo=1.0, policy=1.0, intervention=1.0, pre_intervention=1.0),
  ))
  config.train = ml_collections.ConfigDict(dict(
      steps=3000, batch_size=128, lr=1e-3, warmup_steps=200, weight_decay=1e-4, clip_norm=1.0,
      ema_decay=0.995, seed=0, log_every=100, checkpoint_every=1000,
      init_from="",  # a policy work directory to fine-tune from (post-training)
      freeze=(),  # regexes over parameter paths kept fixed when fine-tuning
  ))
  config.eval = ml_collections.ConfigDict(dict(num_episodes=50, seed_offset=1_000_000))

  # The world model: an ensemble of residual MLPs over the observation history and the action.
  config.world_model = ml_collections.ConfigDict(dict(
      history=2, ensemble_size=5,
      # "mlp" (residual MLPs of widths `hidden`) or, for the cloth (arg `graph`), "cloth_graph":
      # message passing over the vertex grid (`graph`: width, rounds), shared by all vertices
      network="mlp",
      hidden=(128, 128, 128), graph=dict(width=32, rounds=4),
      # steps of the multi-step loss (lax.scan over the model's own predictions); 24 rather
      # than 12 cut the 50-step error by a fifth on push and pick_place; 48 did not move the
      # cloth's, at twice the cost (results/world_model)
      unroll=24,
      one_step_weight=1.0,  # plus a one-step loss in units of a typical step's change
      # how the loss weighs the predicted dims: "normalized" (each by its data std) or "task"
      # (positions in metres, as eval_wm judges them; world_model/train.py: dim_weights).
      # Normalized: on the cloth, two seeds, the 50-step mean was the same (results/world_model)
      loss_units="normalized",
      # std (metres) of noise on each training window's starting positions, targets kept:
      # teaches the model to pull states off the data back onto it (world_model/train.py)
      input_noise=0.0,
      # keep exactly still what the simulator leaves still (world_model/structure.py: a cloth
      # at rest that nothing holds; a resting puck the hand is clear of), instead of letting
      # the network drift it
      still_rule=True,
      # carry the controller target the actions set (Meta-World's mocap, which the hand lags
      # by 2-3 cm) and show the network its pull on the hand, so the hand cannot drift: the
      # 50-step error halved on push and pick_place (results/world_model)
      command_latent=True,
      # carry which cloth vertex the gripper has pinched (the simulator's hidden grip, set
      # exactly by the actions) and show the network the held vertex and the pull on it
      pinch_latent=True,
      # training steps each window with the recorded latent (the simulator's own pinch), not
      # the one its predicted cloth implies: a grasp a millimetre decides, which the network
      # cannot learn and should not hedge against (world_model/train.py). Use is unchanged.
      # Off: two seeds each, the 50-step mean was the same within 1% (results/world_model)
      recorded_latent=False,
      # train on every training episode and its mirror image too (the cloth's symmetry in the
      # plane x = y, world_model/data.py): twice the data, exact for the simulator's physics.
      # Off: two seeds, the 50-step mean moved by 1% (results/world_model)
      mirror_augment=False,
      # the network works in a frame read off each observation where the physics is the same
      # wherever the scene lies (the cloth's fold line: any yaw, any shift on the table); the
      # tasks with landmarks fixed in the world (Meta-World's goals and walls) have none.
      # Off: on the cloth it cut the 50-step error by 8% with agreement mixed, and the chains
      # in results/ were not rerun with it (results/world_model)
      canonical_frame=False,
      # the network predicts only its correction of the physics written out (the cloth's
      # position-based dynamics, world_model/cloth_physics.py, with these constants:
      # experiments/fit_cloth_physics fits them); tasks without written-out physics ignore it
      physics_prior=False,
      physics=dict(damping=40.0, pin_rate=0.6, iterations=4, friction=1.0, rest_height=0.0028),
      # with the prior, train through the unroll with the gradient of a cheaper version of
      # it (cloth_physics.GRADIENT_SURROGATE) instead of none (each step alone). On the
      # cloth, 3-6% closer at 50 steps than the prior without it, still 10-13% further than
      # no prior, agreement 83.5% (results/world_model)
      physics_gradient=False,
      # Gauss-Seidel passes projecting each prediction back onto the constraints the simulator
      # keeps (the cloth's edge lengths, held vertex pinned; structure.py); 0: off. Tasks
      # without such constraints ignore it
      constraint_passes=0,
      # each member carries a learned memory of this size in the state (world_model/core.py:
      # WMState.memory), read and rewritten every step, for what the observation history does
      # not show (the cloth's velocities at the step's end); 0: none.
      # Off: at 64 on the cloth, two seeds, the 50-step mean was 5% lower; on regenerated
      # data, one seed, inside three default seeds' 14% range; grown into the best cloth model
      # (train.init_grow), 4% below the same training without it (results/world_model)
      memory=0,
      # 12000 steps: about 12 min on 2 CPU cores for push or pick_place, 25 for the cloth
      train=dict(steps=12000, batch_size=64,  # batch_size windows per ensemble member
                 lr=1e-3, warmup_steps=100, weight_decay=1e-4, clip_norm=1.0, ema_decay=0.995,
                 seed=0, log_every=100, checkpoint_every=1000, freeze=(),
                 init_from="",  # a world-model work directory to fine-tune (keeps its units)
                 # init_from a network without this config's memory, or narrower (each
                 # hidden width a whole factor of this config's): it is grown into this one,
                 # the memory's inputs and outputs appended, each hidden unit copied, so the
                 # model starts as the source (world_model/train.py: grow_params)
                 init_grow=False),
      eval=dict(horizons=(1, 10, 50), start_stride=10),  # open-loop starts every stride steps
  ))
  if args.get("graph"):
    if task != "cloth_fold":
      raise ValueError(f"config arg 'graph' is for cloth_fold only; this config is for {task}")
    # 12 edges a vertex cost far more than the MLP: shorter unrolls, smaller batches
    # (it sees relative geometry already; the fold-line frame is for the MLP)
    config.world_model.update(network="cloth_graph", unroll=8, canonical_frame=False)
    config.world_model.train.batch_size = 32
  # Its data: every listed dataset must exist unless also listed in `optional` (quick runs).
  # One world model judges both backbones' policies, so it learns from both base policies'
  # real rollouts (policy_<backbone>): its own backbone's must exist (the chain records them),
  # the other's is used where it exists.
  config.wm_data = ml_collections.ConfigDict(dict(
      datasets=("demos", "play") + tuple(f"policy_{b}" for b in sorted(base_demos)),
      optional=tuple(f"policy_{b}" for b in sorted(base_demos) if b != config.policy.backbone),
      holdout_fraction=0.2,  # the last episodes of each dataset are held out for eval_wm
      # datasets trained on whole, none held out: more data, the held-out split unchanged
      train_only=("full_horizon",) if config.collect.num_full_horizon else (),
      max_episodes=ml_collections.FieldReference(None, field_type=int),  # per dataset
  ))
  # A Hi-WM round (experiments/hiwm_collect.py): rollouts in the WM, the person's corrections.
  config.corrector = correctors.default_config()
  config.hiwm = ml_collections.ConfigDict(dict(
      num_rollouts=50,  # WM rollouts from real first observations ...
      seed_offset=300_000,  # ... at these held-out seeds (not data, not evaluation seeds)
      new_starts_each_round=False,  # round r starts at seed_offset + r * num_rollouts
      seed=0,
      branch_steps=64,  # each correction runs this long (expert k steps, then the policy)
      # Export each correction alone (expert steps, then the policy to the WM's success), or
      # with its lead-up: the policy's steps from the start, the last few pre-intervention.
      export_lead_up=False,
      pre_intervention_steps=8,  # with the lead-up: its last steps labelled pre-intervention
      dataset="corrections",  # kept corrections go to <data_dir>/<task>/<dataset>
      # experiments/hiwm.py: collect with the current policy, post-train, repeat (the WM
      # closed-loop baseline runs as many rounds); one round gains far less on pick_place
      rounds=3,
      world_model="",  # experiments/hiwm.py: a trained WM to reuse (default: train one)
      # Before each round after the first, roll the current policy out this many times in the
      # real world (no person watching), add the episodes to the world model's data and
      # fine-tune it for refresh_wm_steps: the person then sees the failures of the policy as
      # it now is, not as the old data showed it. Costs real-world steps (reported). 0: off.
      refresh_episodes=0,
      refresh_wm_steps=2000,
  ))
  # Post-training (hiwm_jax/posttrain.py): fine-tune the base policy on demos + corrections.
  config.posttrain = ml_collections.ConfigDict(dict(
      datasets=("demos", "corrections"),  # in <data_dir>/<task>/; the demos as the base's
      # Sirius-style: the person's corrections count double; the steps that led to a failure
      # (pre-intervention) are dropped rather than imitated
      label_weights=dict(demo=1.0, policy=1.0, intervention=2.0, pre_intervention=0.0),
      steps=1000, lr=3e-4, warmup_steps=50,
      # Real HG-DAgger fine-tunes once on its whole budget; None gives it as many steps as
      # Hi-WM's chained rounds take together (hiwm.rounds x steps), so neither gets more training
      hgdagger_steps=ml_collections.FieldReference(None, field_type=int),
  ))

  if args.get("many"):  # ~14k windows: 3000 x 128 is ~2 epochs, too few (70% on pick_place);
    # 20000 x 256 takes ~2 min on one GPU, hours on 2 CPU cores
    config.train.update(steps=20000, batch_size=256, checkpoint_every=5000)
  if args.get("quick"):
    config.collect.update(num_demos=12, num_play=20, num_policy=20,
                          num_full_horizon=min(config.collect.num_full_horizon, 20))
    config.train.update(steps=1000, batch_size=64, warmup_steps=50, checkpoint_every=500)
    config.eval.num_episodes = 20
    config.world_model.update(ensemble_size=3, hidden=(128, 128), unroll=8)
    config.world_model.graph.update(width=32, rounds=3)
    config.world_model.train.update(steps=1000, batch_size=32, warmup_steps=50,
                                    checkpoint_every=500)
    config.hiwm.update(num_rollouts=20, rounds=2)
    config.posttrain.update(steps=300, warmup_steps=20)
  if args.get("smoke"):
    config.collect.update(num_demos=3, num_play=2, num_policy=2,
                          num_full_horizon=min(config.collect.num_full_horizon, 2))
    config.policy_data.max_episodes = 3
    config.train.update(steps=20, batch_size=16, warmup_steps=5, log_every=10,
                        checkpoint_every=10)
    config.eval.num_episodes = 2
    config.world_model.update(ensemble_size=2, hidden=(32, 32), unroll=8)
    config.world_model.graph.update(width=8, rounds=1)
    config.world_model.train.update(steps=20, batch_size=16, warmup_steps=5, log_every=10,
                                    checkpoint_every=10)
    config.hiwm.update(num_rollouts=4, branch_steps=16, rounds=2)
    config.corrector.update(num_branches=2, keep="all")  # untrained models rarely succeed
    config.wm_data.update(optional=config.wm_data.datasets[2:], max_episodes=4)
    config.posttrain.update(steps=10, warmup_steps=2)
  config.lock()
  return config
