"""hiwm_jax: Human-in-the-World-Model robot post-training in JAX."""
