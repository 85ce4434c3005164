"""Installs csm_jax with the pinned requirements; extras: test, tpu, eval, beam, interop, instruments."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements():
  with open(os.path.join(HERE, "requirements.txt")) as f:
    return [l.strip() for l in f if l.strip() and not l.startswith("#")]


setup(
    name="csm_jax",
    version="0.1.0",
    description="JAX/Flax NNX replication of Sesame's Conversational Speech "
                "Model: RVQ codec, backbone + depth decoder, one trainer.",
    packages=find_packages(include=["csm_jax", "csm_jax.*"]),
    python_requires=">=3.10",
    install_requires=_requirements(),
    extras_require={
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "pytest-timeout==2.4.0",
                 "chex==0.1.92",
                 # headless execution of launch/colab.ipynb
                 "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0",
                 # the listening test's headless-browser test
                 "selenium==4.51.0",
                 # the layer contracts of .importlinter (lint-imports)
                 "import-linter==2.16"],
        # libtpu, for ahead-of-time compilation for TPU topologies on a CPU
        # host; never needed to train on CPU or GPU.
        "tpu": ["jax[tpu]==0.10.2"],
        "eval": ["pesq", "pystoi"],
        # The interop tests' PyTorch references and reading .pt checkpoints
        # (python -m csm_jax.convert reads .safetensors without them).
        # torch==2.13.0 resolves to the CPU build on this index; moshi (its
        # Mimi) pins an older torch and is installed with --no-deps
        # (.ci/run, docs/interop.md).
        "interop": ["torch==2.13.0", "torchtune==0.6.1", "torchao==0.13.0",
                    "safetensors==0.8.0", "einops==0.8.2",
                    "huggingface-hub==2.4.0"],
        # Large corpus builds through tfds on Apache Beam (docs/data.md).
        "beam": ["apache-beam==2.77.0"],
        # Instruments plugged into `evaluate` (docs/evaluation.md):
        # transformers reads local Whisper, CTC and x-vector model
        # directories. Resemblyzer goes in with --no-deps
        # (`pip install --no-deps resemblyzer==0.1.4`): it requires
        # webrtcvad 2.0.10, whose module imports pkg_resources (gone from
        # current setuptools), and the typing backport; webrtcvad-wheels
        # provides the same module.
        "instruments": ["torch==2.13.0", "transformers==5.23.0",
                        "webrtcvad-wheels==2.0.14.post1"],
    },
)
