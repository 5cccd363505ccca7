"""hiwm_jax: Human-in-the-World-Model robot post-training in JAX."""
import setuptools

setuptools.setup(
    name="hiwm_jax",
    version="0.1.0",
    description="Hi-WM: correct robot policies inside a learned world model (JAX).",
    packages=setuptools.find_packages(include=["hiwm_jax", "hiwm_jax.*"]),
    package_data={"hiwm_jax": ["envs/assets/*.xml"]},
    python_requires=">=3.10",
    install_requires=[
        "jax==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "chex==0.1.92",
        "tensorflow-datasets==4.9.10",
        "array-record==0.8.6",
        "absl-py==2.5.1",
        "ml-collections==1.1.0",
        "mujoco==3.3.0",  # metaworld 3.1.1 pins it; it crashes at reset with mujoco 4.
        "metaworld==3.1.1",
        "gymnasium==1.4.0",
        "packaging",  # metaworld imports it without declaring it.
        "numpy>=2.0",
        "pillow==13.0.0",
        "tqdm==4.70.1",
        "tensorboardX==2.6.5",
        "matplotlib==3.11.2",  # result plots
    ],
    extras_require={"dev": ["pytest==9.0.3", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0"]},
)
