"""Fixtures shared by test files, and one compilation cache for the whole run."""
import atexit
import os
import shutil
import tempfile

# The suite starts many processes (the chain's stages, entry points) that compile the same
# functions; JAX's persistent cache lets each compile once per run. Set before jax is imported
# here, and inherited by every subprocess. A fresh directory: nothing carries between runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="hiwm_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_CACHE,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import pytest  # noqa: E402

from experiments.configs import push  # noqa: E402
from hiwm_jax import untrained  # noqa: E402


@pytest.fixture(scope="session")
def tiny_push_models():
  """(wm, wm_params, policy, policy_params): a small untrained push world model and flow
  policy — the contracts under test do not depend on trained weights."""
  config = push.get_config("smoke,backbone=flow")
  config.policy.flow.update(width=32, depth=1, num_inference_steps=2)
  return (*untrained.world_model_and_params(config), *untrained.policy_and_params(config))


def pytest_collection_modifyitems(items):
  """The end-to-end chain first: it is the longest test by far, so with the tests spread over
  workers (pytest.ini) it starts at once instead of finishing last."""
  items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_pipeline.py")
