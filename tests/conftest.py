"""Fixtures shared by test files."""
import pytest

from experiments.configs import push
from hiwm_jax import untrained


@pytest.fixture(scope="session")
def tiny_push_models():
  """(wm, wm_params, policy, policy_params): a small untrained push world model and flow
  policy — the contracts under test do not depend on trained weights."""
  config = push.get_config("smoke,backbone=flow")
  config.policy.flow.update(width=32, depth=1, num_inference_steps=2)
  return (*untrained.world_model_and_params(config), *untrained.policy_and_params(config))
