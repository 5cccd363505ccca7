"""The action-conditioned world model: a pure carry API over a bootstrapped ensemble.

    wm, params, config = world_model.load_world_model(workdir)
    state = wm.init(params, obs_history)      # [h, obs_dim] real observations, task units
    state = wm.step(params, state, action)    # jit / vmap / lax.scan
    obs, verdict = wm.observe(params, state), wm.judge(params, state)
"""
from hiwm_jax.world_model.core import WMState, WorldModel, init_params, make
from hiwm_jax.world_model.train import load_world_model, train_world_model

__all__ = ["WMState", "WorldModel", "init_params", "load_world_model", "make",
           "train_world_model"]
