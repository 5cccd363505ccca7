"""Diffusion Policy (Chi et al. 2023): a FiLM-conditioned 1-D temporal U-Net denoises a chunk.

Training is DDPM epsilon prediction; acting is deterministic DDIM (eta = 0) from noise drawn
from the key, at most 10 steps in one `lax.fori_loop`, so `act` jits into one program and
vmaps over (obs_history, rng) for branches.

Differences from the reference implementation, on purpose: the U-Net is the standard one,
with skips at every resolution but the bottom (the reference drops the finest one); FiLM
scales are `1 + scale` (identity at init); upsampling is nearest + conv; and each DDIM step
clips the predicted clean chunk to [-1, 1] and re-derives the noise from it.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hiwm_jax.policies import base

MAX_INFERENCE_STEPS = 10  # the latency budget of one decision


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_train_timesteps=100,
      num_inference_steps=10,  # DDIM steps, <= MAX_INFERENCE_STEPS
      beta_schedule="squaredcos_cap_v2",  # or "linear" (beta_start..beta_end)
      beta_start=1e-4,
      beta_end=2e-2,
      timestep_spacing="leading",  # DDIM steps T/N * [N-1 .. 0]; "trailing": [T-1 .. T/N-1]
      clip_sample=True,  # clip each step's predicted clean chunk to [-1, 1]
      down_dims=(64, 128),  # U-Net channels per level; chunk must divide by 2**(levels-1)
      kernel_size=5,
      num_groups=8,  # GroupNorm groups; must divide every down_dim
      timestep_embed_dim=64,
  ))


# --- noise schedule ---------------------------------------------------------------------------

def alphas_cumprod(config: ml_collections.ConfigDict) -> np.ndarray:
  """alpha-bar_t for t in [0, T), float64 (as diffusers' DDPM/DDIM schedulers compute it)."""
  T = config.num_train_timesteps
  if config.beta_schedule == "squaredcos_cap_v2":
    f = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    s = np.arange(T + 1) / T
    betas = np.minimum(1 - f(s[1:]) / f(s[:-1]), 0.999)
  elif config.beta_schedule == "linear":
    betas = np.linspace(config.beta_start, config.beta_end, T)
  else:
    raise ValueError(f"unknown beta_schedule {config.beta_schedule!r}; expected "
                     "'squaredcos_cap_v2' or 'linear'")
  return np.cumprod(1 - betas)


def ddim_timesteps(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """(t, previous t) for each DDIM step, noisiest first; previous -1 means clean."""
  T, N = config.num_train_timesteps, config.num_inference_steps
  if config.timestep_spacing == "leading":
    t = np.arange(N)[::-1] * (T // N)
  elif config.timestep_spacing == "trailing":
    t = np.round(np.arange(T, 0, -T / N)).astype(np.int64) - 1
  else:
    raise ValueError(f"unknown timestep_spacing {config.timestep_spacing!r}; expected "
                     "'leading' or 'trailing'")
  return t, np.append(t[1:], -1)


# --- network ----------------------------------------------------------------------------------

def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding of integer diffusion steps [B] -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / max(half - 1, 1))  # [dim/2]
  angles = t.astype(jnp.float32)[:, None] * freqs  # [B, dim/2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Conv1D(nn.Module):
  """1-D convolution with "SAME" padding over [B, L, C]."""
  features: int
  kernel_size: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):  # [B, L, C] -> [B, ceil(L / stride), features]
    shape = (self.kernel_size, x.shape[-1], self.features)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return _conv1d(x, kernel, self.stride) + bias


def _conv1d(x, kernel, stride):  # x [B, L, C], kernel [k, C, F] -> [B, ceil(L / stride), F]
  """XLA's convolution, except where the kernel is longer than the sequence: there XLA:CPU
  takes a slow path (kernel 5 at length 4: 1.1 ms against 20 us), so use one matmul over the
  stacked shifted inputs (slower than XLA's conv to train at batch 256 everywhere else)."""
  k, c, f = kernel.shape
  pad = ((k - 1) // 2, k // 2)
  if x.shape[1] >= k:
    return jax.lax.conv_general_dilated(x, kernel, (stride,), [pad],
                                        dimension_numbers=("NWC", "WIO", "NWC"))
  length = -(-x.shape[1] // stride)
  span = (length - 1) * stride + 1
  x = jnp.pad(x, ((0, 0), pad, (0, 0)))
  taps = jnp.concatenate([x[:, i:i + span:stride] for i in range(k)], axis=-1)  # [B, L', k * C]
  return taps @ kernel.reshape(k * c, f)


class ConvBlock(nn.Module):
  """Conv1D -> GroupNorm -> Mish over [B, L, C]."""
  features: int
  kernel_size: int
  num_groups: int

  @nn.compact
  def __call__(self, x):
    x = Conv1D(self.features, self.kernel_size)(x)
    return jax.nn.mish(nn.GroupNorm(num_groups=self.num_groups)(x))


class FiLMResBlock(nn.Module):
  """Two conv blocks; the first's output is scaled and shifted per channel by the condition."""
  features: int
  kernel_size: int
  num_groups: int

  @nn.compact
  def __call__(self, x, cond):  # x [B, L, C], cond [B, E] -> [B, L, features]
    h = ConvBlock(self.features, self.kernel_size, self.num_groups)(x)
    film = nn.Dense(2 * self.features)(jax.nn.mish(cond))  # [B, 2F]
    scale, bias = jnp.split(film[:, None, :], 2, axis=-1)  # [B, 1, F] each
    h = h * (1 + scale) + bias
    h = ConvBlock(self.features, self.kernel_size, self.num_groups)(h)
    skip = x if x.shape[-1] == self.features else Conv1D(self.features, 1)(x)
    return h + skip


class ConditionalUnet1D(nn.Module):
  """Predicts the noise in a noisy action chunk, given the step and the observation history."""
  action_dim: int
  down_dims: Sequence[int]
  kernel_size: int
  num_groups: int
  timestep_embed_dim: int

  @nn.compact
  def __call__(self, x, t, obs):  # x [B, H, A], t [B] int, obs [B, h * obs_dim] normalized
    emb = timestep_embedding(t, self.timestep_embed_dim)
    emb = nn.Dense(4 * self.timestep_embed_dim)(emb)
    emb = nn.Dense(self.timestep_embed_dim)(jax.nn.mish(emb))  # [B, E]
    cond = jnp.concatenate([emb, obs], axis=-1)  # [B, E + h * obs_dim]
    block = lambda f: FiLMResBlock(f, self.kernel_size, self.num_groups)
    last = len(self.down_dims) - 1
    skips = []
    for level, f in enumerate(self.down_dims):
      x = block(f)(block(f)(x, cond), cond)  # [B, H / 2**level, f]
      if level < last:
        skips.append(x)
        x = Conv1D(f, 3, stride=2)(x)  # halves the length
    x = block(self.down_dims[-1])(block(self.down_dims[-1])(x, cond), cond)  # middle
    for level in reversed(range(last)):
      x = Conv1D(x.shape[-1], 3)(jnp.repeat(x, 2, axis=1))  # doubles the length
      x = jnp.concatenate([x, skips[level]], axis=-1)
      x = block(self.down_dims[level])(block(self.down_dims[level])(x, cond), cond)
    x = ConvBlock(self.down_dims[0], self.kernel_size, self.num_groups)(x)
    return Conv1D(self.action_dim, 1)(x)  # [B, H, A]


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _init(net: ConditionalUnet1D, rng, chunk: int, cond_dim: int):
  """Jitted and cached by network: compiling one random draw per parameter takes seconds on
  CPU, op by op too, so policies with the same network share one compiled init."""
  x = jnp.zeros((1, chunk, net.action_dim), jnp.float32)
  return net.init(rng, x, jnp.zeros((1,), jnp.int32), jnp.zeros((1, cond_dim), jnp.float32))


# --- the policy -------------------------------------------------------------------------------

def _check_config(config: ml_collections.ConfigDict) -> None:
  d = config.diffusion
  if not 1 <= d.num_inference_steps <= min(MAX_INFERENCE_STEPS, d.num_train_timesteps):
    raise ValueError(f"diffusion.num_inference_steps must be in [1, {MAX_INFERENCE_STEPS}] and "
                     f"<= num_train_timesteps={d.num_train_timesteps}; got {d.num_inference_steps}")
  factor = 2 ** (len(d.down_dims) - 1)
  if config.chunk % factor:
    raise ValueError(f"policy.chunk={config.chunk} must be divisible by {factor} for a U-Net "
                     f"with down_dims={tuple(d.down_dims)}")
  if any(f % d.num_groups for f in d.down_dims):
    raise ValueError(f"diffusion.num_groups={d.num_groups} must divide every down_dim "
                     f"{tuple(d.down_dims)}")


def _check_batch(batch, h: int, H: int, obs_dim: int, action_dim: int) -> None:
  """Trace-time shape check: a wrong chunk length would otherwise broadcast or fail deep inside."""
  obs, act = tuple(np.shape(batch["observation"])), tuple(np.shape(batch["action"]))
  if obs[1:] != (h, obs_dim) or act[1:] != (H, action_dim) or obs[0] != act[0]:
    raise ValueError(f"batch observation {obs} and action {act} must be [B, {h}, {obs_dim}] "
                     f"and [B, {H}, {action_dim}] = [B, history, obs_dim], [B, chunk, action_dim]")


def make(config: ml_collections.ConfigDict, obs_dim: int, action_dim: int,
         obs_stats: Mapping[str, Any]) -> base.Policy:
  """A diffusion policy for `config` (history, chunk, execute, diffusion) and these shapes."""
  _check_config(config)
  d, h, H = config.diffusion, config.history, config.chunk
  stats = base.check_obs_stats(obs_stats, obs_dim)
  net = ConditionalUnet1D(action_dim, tuple(d.down_dims), d.kernel_size, d.num_groups,
                          d.timestep_embed_dim)
  abar = alphas_cumprod(d)
  abar_train = jnp.asarray(abar, jnp.float32)  # [T]
  steps, prev = ddim_timesteps(d)
  abar_t = jnp.asarray(abar[steps], jnp.float32)  # [N]
  abar_prev = jnp.asarray(np.where(prev >= 0, abar[np.maximum(prev, 0)], 1.0), jnp.float32)
  steps = jnp.asarray(steps, jnp.int32)

  def encode_obs(obs):  # [B, h, obs_dim] raw -> [B, h * obs_dim] normalized
    return base.normalize_obs(obs, stats).reshape(obs.shape[0], -1)

  def init(rng, example_batch):  # only the batch's shapes matter
    _check_batch(example_batch, h, H, obs_dim, action_dim)
    return _init(net, rng, H, h * obs_dim)

  def loss(params, batch, rng):
    _check_batch(batch, h, H, obs_dim, action_dim)
    x0 = jnp.asarray(batch["action"], jnp.float32)  # [B, H, A]
    obs = jnp.asarray(batch["observation"])  # [B, h, obs_dim]
    t_rng, eps_rng = jax.random.split(rng)
    t = jax.random.randint(t_rng, (x0.shape[0],), 0, d.num_train_timesteps)  # [B]
    eps = jax.random.normal(eps_rng, x0.shape)  # [B, H, A]
    a = abar_train[t][:, None, None]  # [B, 1, 1]
    x_t = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
    pred = net.apply(params, x_t, t, encode_obs(obs))  # [B, H, A]
    per_step = jnp.mean((pred - eps) ** 2, axis=-1)  # [B, H]
    value = base.masked_mean(per_step, batch["action_mask"], batch.get("weight"))
    return value, {"loss": value}

  def ddim_step(params, obs, i, x):  # x [1, H, A] at steps[i] -> at its previous step
    a, a_prev = abar_t[i], abar_prev[i]
    eps = net.apply(params, x, jnp.full((1,), steps[i]), obs)  # [1, H, A]
    x0 = (x - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
    if d.clip_sample:  # keep the clean estimate in the action box; re-derive its noise
      x0 = jnp.clip(x0, -1.0, 1.0)
      eps = (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    return jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev) * eps

  def act(params, obs_history, rng):
    obs_history = jnp.asarray(obs_history)
    base.check_obs_history(obs_history, h, obs_dim)
    obs = encode_obs(obs_history[None])  # [1, h * obs_dim]
    x = jax.random.normal(rng, (1, H, action_dim))  # [1, H, A]
    x = jax.lax.fori_loop(0, d.num_inference_steps,
                          lambda i, x: ddim_step(params, obs, i, x), x)
    return jnp.clip(x[0], -1.0, 1.0)  # [H, A]

  return base.Policy(name="diffusion", obs_dim=obs_dim, action_dim=action_dim, history=h,
                     chunk=H, execute=config.execute, init=init, act=act, loss=loss,
                     obs_stats=stats)
