"""A checkpoint written on another device topology (a GPU, or here a second fake CPU device)
restores on this machine's device."""
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np

from hiwm_jax import checkpoint

_WRITE_ON_SECOND_DEVICE = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from hiwm_jax import checkpoint
    device = jax.devices()[1]  # cpu:1 does not exist in a one-device process
    tree = {"w": jax.device_put(np.arange(6, dtype=np.float32).reshape(2, 3), device),
            "b": jax.device_put(np.ones(3, np.float32), device)}
    ckpt = checkpoint.Checkpointer(sys.argv[1])
    ckpt.save(7, tree, {"note": "written on cpu:1"})
    ckpt.wait()
""")


def test_checkpoint_from_another_topology_restores_here(tmp_path):
  subprocess.run([sys.executable, "-c", _WRITE_ON_SECOND_DEVICE, str(tmp_path)], check=True)
  assert len(jax.devices()) == 1
  ckpt = checkpoint.Checkpointer(str(tmp_path), create=False)
  state, metadata = ckpt.restore()  # as saved
  np.testing.assert_array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
  assert metadata == {"note": "written on cpu:1"}
  target = {"w": jax.ShapeDtypeStruct((2, 3), np.float32),
            "b": jax.ShapeDtypeStruct((3,), np.float32)}
  state, _ = ckpt.restore(target)  # into an eval_shape-style target without shardings
  chex.assert_trees_all_equal_shapes_and_dtypes(state, target)
  assert state["b"].devices() == {jax.devices()[0]}
