"""Throwaway: replay every training episode of ft8k_memory's config in the simulator and record
each vertex's velocity [T+1, 192] (m/s) after every step; check the replay matches the record."""
import sys, numpy as np
from multiprocessing import Pool
from hiwm_jax import checkpoint
from hiwm_jax.world_model.data import load_split
from hiwm_jax.envs import cloth_fold

def replay(args):
  seed, obs, act = args
  env = cloth_fold.make_env(max_steps=10_000)
  o, _ = env.reset(seed=seed)
  vel = [env.data.qvel[env._vert_dofs].ravel().copy()]
  err = float(np.abs(o - obs[0]).max())
  for t, a in enumerate(act[:len(obs) - 1]):
    o, *_ = env.step(a)
    err = max(err, float(np.abs(o - obs[t + 1]).max()))
    vel.append(env.data.qvel[env._vert_dofs].ravel().copy())
  env.close()
  return np.asarray(vel, np.float32), err

if __name__ == "__main__":
  config = checkpoint.load_config("/tmp/hiwm/wmx/ft8k_memory")
  train, held, used = load_split(config)
  which = sys.argv[1]
  eps = train if which == "train" else held
  jobs = [(ep["episode_metadata"]["seed"], np.asarray(ep["steps"]["observation"]),
           np.asarray(ep["steps"]["action"])) for ep in eps]
  with Pool(2) as pool:
    out = pool.map(replay, jobs, chunksize=8)
  errs = np.array([e for _, e in out])
  print(which, len(out), "episodes; replay max abs obs error: median", np.median(errs), "max", errs.max(),
        "n > 1e-4:", int((errs > 1e-4).sum()))
  np.savez(f"/tmp/s9/vel_{which}.npz", *[v for v, _ in out], errs=errs)
