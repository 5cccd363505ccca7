"""Flow matching (pi0's action expert without the language model): a transformer over a chunk.

Architecture, pi0-style. Two token streams with their own weights share one attention per layer:
  - observation tokens, one per history step (linear(normalized obs) + position), run through a
    small "prefix" transformer (`obs_encoder`); they attend only to each other (pi0's mask:
    observations never see actions), so their per-layer keys/values depend on the observation
    alone and are computed ONCE per decision, then reused by every Euler step;
  - action tokens, one per chunk step (linear(noisy action) + position), run through the
    "action expert" (`action_expert`); each layer's queries attend to [obs keys; action keys]
    (bidirectional within the chunk). Flow time enters by adaLN-Zero (DiT): each pre-LN block's
    LayerNorm is scaled and shifted, and its residual branch gated, by an MLP of a sinusoidal
    time embedding. The head predicts the velocity [H, A].

Flow convention (rectified flow; openpi runs time the other way, x_t = t * noise + (1 - t) * a
integrated from 1 to 0): t = 0 is noise, t = 1 is data; x_t = t * a + (1 - t) * noise, target
velocity a - noise. Training times follow pi0's Beta(1.5, 1) that favours noisy times, mapped to
this convention: t = s * (1 - Beta), with s = 0.999 so t never reaches the data end ("uniform":
t ~ U[0, 1)). Acting integrates from noise drawn from the key with N Euler steps
t = 0, 1/N, ..., (N-1)/N in one `lax.fori_loop`, then clips to [-1, 1]. Actions are modelled in
their task units ([-1, 1], the task contract).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hiwm_jax.policies import base

MAX_INFERENCE_STEPS = 10  # the latency budget of one decision
TIME_SAMPLINGS = ("beta", "uniform")


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_inference_steps=10,  # Euler steps, <= MAX_INFERENCE_STEPS
      width=128,  # token width of both streams
      depth=3,  # layers (each: one obs-encoder block and one action-expert block)
      heads=4,  # attention heads; must divide width
      mlp_ratio=4,  # MLP hidden = mlp_ratio * width
      time_sampling="beta",  # training times: "beta" (pi0) or "uniform"
      time_beta_a=1.5,  # pi0: t = time_max * (1 - Beta(a, 1)), favouring noisy times
      time_max=0.999,
  ))


# --- network ----------------------------------------------------------------------------------

def time_embedding(t: jax.Array, dim: int, min_period: float = 4e-3,
                   max_period: float = 4.0) -> jax.Array:
  """Sinusoidal embedding of flow times in [0, 1] [B] -> [B, dim] (openpi's periods)."""
  fraction = jnp.linspace(0.0, 1.0, dim // 2)
  period = min_period * (max_period / min_period) ** fraction  # [dim/2]
  angles = t.astype(jnp.float32)[:, None] * (2 * math.pi / period)  # [B, dim/2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """Unmasked softmax attention: q [B, Q, n, d], k/v [B, K, n, d] -> [B, Q, n, d]."""
  logits = jnp.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(q.shape[-1])
  return jnp.einsum("bnqk,bknd->bqnd", jax.nn.softmax(logits, axis=-1), v)


def _heads(heads: int, head_dim: int, name: str) -> nn.DenseGeneral:
  return nn.DenseGeneral((heads, head_dim), name=name)  # [..., W] -> [..., n, d]


def _merge(width: int, name: str, **kw) -> nn.DenseGeneral:
  return nn.DenseGeneral(width, axis=(-2, -1), name=name, **kw)  # [..., n, d] -> [..., W]


class Mlp(nn.Module):
  width: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.width)(nn.gelu(nn.Dense(self.mlp_ratio * self.width)(x)))


class ObsBlock(nn.Module):
  """Pre-LN block of the observation stream; returns its keys/values for the action stream.

  kv_only: the last layer, whose obs output nothing reads: only its keys/values are built.
  """
  width: int
  heads: int
  mlp_ratio: int
  kv_only: bool = False

  @nn.compact
  def __call__(self, o):  # o [B, h, W] -> (o [B, h, W], (k, v) [B, h, n, d] each)
    d = self.width // self.heads
    y = nn.LayerNorm(name="ln_attn")(o)
    k, v = _heads(self.heads, d, "key")(y), _heads(self.heads, d, "value")(y)
    if self.kv_only:
      return o, (k, v)
    q = _heads(self.heads, d, "query")(y)
    o = o + _merge(self.width, "out")(attend(q, k, v))
    o = o + Mlp(self.width, self.mlp_ratio)(nn.LayerNorm(name="ln_mlp")(o))
    return o, (k, v)


class ActionBlock(nn.Module):
  """Pre-LN adaLN-Zero block of the action stream; attends to [obs tokens; action tokens]."""
  width: int
  heads: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, x, cond, obs_kv):  # x [B, H, W], cond [B, W], obs_kv [B, h, n, d] x2
    d = self.width // self.heads
    mod = nn.Dense(6 * self.width, kernel_init=nn.initializers.zeros,
                   name="adaln")(nn.silu(cond))[:, None]  # [B, 1, 6W]
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    norm = lambda name: nn.LayerNorm(use_scale=False, use_bias=False, name=name)
    y = norm("ln_attn")(x) * (1 + scale1) + shift1
    q = _heads(self.heads, d, "query")(y)
    k = jnp.concatenate([obs_kv[0], _heads(self.heads, d, "key")(y)], axis=1)  # [B, h+H, n, d]
    v = jnp.concatenate([obs_kv[1], _heads(self.heads, d, "value")(y)], axis=1)
    x = x + gate1 * _merge(self.width, "out")(attend(q, k, v))
    y = norm("ln_mlp")(x) * (1 + scale2) + shift2
    return x + gate2 * Mlp(self.width, self.mlp_ratio)(y)


class ObsEncoder(nn.Module):
  """Normalized observation history [B, h, D] -> per-layer keys/values (the prefix cache)."""
  width: int
  depth: int
  heads: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, obs):
    pos = self.param("pos", nn.initializers.normal(0.02), obs.shape[1:2] + (self.width,))
    o = nn.Dense(self.width, name="embed")(obs) + pos  # [B, h, W]
    cache = []
    for i in range(self.depth):
      o, kv = ObsBlock(self.width, self.heads, self.mlp_ratio, kv_only=i == self.depth - 1,
                       name=f"block_{i}")(o)
      cache.append(kv)
    return tuple(cache)


class ActionExpert(nn.Module):
  """(prefix cache, noisy chunk x_t [B, H, A], time t [B]) -> velocity [B, H, A]."""
  action_dim: int
  width: int
  depth: int
  heads: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, cache, x, t):
    pos = self.param("pos", nn.initializers.normal(0.02), x.shape[1:2] + (self.width,))
    h = nn.Dense(self.width, name="embed")(x) + pos  # [B, H, W]
    cond = time_embedding(t, self.width)
    cond = nn.silu(nn.Dense(self.width, name="time_in")(cond))
    cond = nn.Dense(self.width, name="time_out")(cond)  # [B, W]
    for i in range(self.depth):
      h = ActionBlock(self.width, self.heads, self.mlp_ratio, name=f"block_{i}")(h, cond, cache[i])
    shift, scale = jnp.split(nn.Dense(2 * self.width, kernel_init=nn.initializers.zeros,
                                      name="final_adaln")(nn.silu(cond))[:, None], 2, axis=-1)
    h = nn.LayerNorm(use_scale=False, use_bias=False, name="ln_final")(h) * (1 + scale) + shift
    return nn.Dense(self.action_dim, kernel_init=nn.initializers.zeros, name="head")(h)


class FlowTransformer(nn.Module):
  """Both streams; `encode` once per decision, `velocity` once per Euler step."""
  action_dim: int
  width: int
  depth: int
  heads: int
  mlp_ratio: int

  def setup(self):
    sizes = dict(width=self.width, depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio)
    self.obs_encoder = ObsEncoder(**sizes)
    self.action_expert = ActionExpert(self.action_dim, **sizes)

  def encode(self, obs):  # [B, h, D] normalized -> the prefix cache
    return self.obs_encoder(obs)

  def velocity(self, cache, x, t):  # x [B, H, A], t [B] -> [B, H, A]
    return self.action_expert(cache, x, t)

  def __call__(self, obs, x, t):
    return self.velocity(self.encode(obs), x, t)


# --- the policy -------------------------------------------------------------------------------

def _check_config(config: ml_collections.ConfigDict) -> None:
  f = config.flow
  if not 1 <= f.num_inference_steps <= MAX_INFERENCE_STEPS:
    raise ValueError(f"flow.num_inference_steps must be in [1, {MAX_INFERENCE_STEPS}]; got "
                     f"{f.num_inference_steps}")
  if f.width % f.heads or f.width % 2:
    raise ValueError(f"flow.heads={f.heads} and 2 must divide flow.width={f.width}")
  if f.time_sampling not in TIME_SAMPLINGS:
    raise ValueError(f"unknown flow.time_sampling {f.time_sampling!r}; expected one of "
                     f"{TIME_SAMPLINGS}")
  if not (f.time_beta_a > 0 and 0 < f.time_max <= 1):
    raise ValueError(f"flow.time_beta_a must be > 0 and flow.time_max in (0, 1]; got "
                     f"{f.time_beta_a} and {f.time_max}")


def sample_time(rng: jax.Array, batch_size: int, f: ml_collections.ConfigDict) -> jax.Array:
  """Training flow times [B] in [0, 1); 0 is noise.

  Beta(a, 1) by its inverse CDF u ** (1 / a): exact, and it spares every loss program the
  ~2 s of compile that `jax.random.beta`'s gamma rejection loops cost on this CPU.
  """
  u = jax.random.uniform(rng, (batch_size,))
  if f.time_sampling == "uniform":
    return u
  return f.time_max * (1.0 - u ** (1.0 / f.time_beta_a))


def make(config: ml_collections.ConfigDict, obs_dim: int, action_dim: int,
         obs_stats: Mapping[str, Any]) -> base.Policy:
  """A flow-matching policy for `config` (history, chunk, execute, flow) and these shapes."""
  _check_config(config)
  f, h, H = config.flow, config.history, config.chunk
  stats = base.check_obs_stats(obs_stats, obs_dim)
  net = FlowTransformer(action_dim, f.width, f.depth, f.heads, f.mlp_ratio)
  num_steps = f.num_inference_steps

  def init(rng, example_batch):
    obs = base.normalize_obs(jnp.asarray(example_batch["observation"])[:1], stats)
    chex.assert_shape(obs, (1, h, obs_dim))
    return net.init(rng, obs, jnp.zeros((1, H, action_dim)), jnp.zeros((1,)))

  def loss(params, batch, rng):
    a = jnp.asarray(batch["action"], jnp.float32)  # [B, H, A]
    obs = jnp.asarray(batch["observation"])  # [B, h, obs_dim]
    chex.assert_shape(a, (None, H, action_dim))
    chex.assert_shape(obs, (a.shape[0], h, obs_dim))
    t_rng, noise_rng = jax.random.split(rng)
    t = sample_time(t_rng, a.shape[0], f)  # [B]
    noise = jax.random.normal(noise_rng, a.shape)  # [B, H, A]
    x_t = t[:, None, None] * a + (1 - t[:, None, None]) * noise
    v = net.apply(params, base.normalize_obs(obs, stats), x_t, t)  # [B, H, A]
    per_step = jnp.mean((v - (a - noise)) ** 2, axis=-1)  # [B, H]
    weight = batch.get("weight")
    weight = None if weight is None else jnp.asarray(weight, jnp.float32)
    value = base.masked_mean(per_step, batch["action_mask"], weight)
    return value, {"loss": value}

  def act(params, obs_history, rng):
    obs_history = jnp.asarray(obs_history)
    base.check_obs_history(obs_history, h, obs_dim)
    cache = net.apply(params, base.normalize_obs(obs_history[None], stats),
                      method=FlowTransformer.encode)  # per layer (k, v) [1, h, n, d]

    def euler(i, x):  # x [1, H, A] at t = i / N -> at (i + 1) / N
      t = jnp.full((1,), i / num_steps, jnp.float32)
      return x + net.apply(params, cache, x, t, method=FlowTransformer.velocity) / num_steps

    x = jax.random.normal(rng, (1, H, action_dim))  # [1, H, A] noise at t = 0
    x = jax.lax.fori_loop(0, num_steps, euler, x)
    return jnp.clip(x[0], -1.0, 1.0)  # [H, A]

  return base.Policy(name="flow", obs_dim=obs_dim, action_dim=action_dim, history=h, chunk=H,
                     execute=config.execute, init=init, act=act, loss=loss, obs_stats=stats)
