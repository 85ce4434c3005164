"""csm-jax: a JAX/Flax NNX replication of Sesame's Conversational Speech Model.

Layers: ``config`` (schema and sizes), ``model`` (CSM backbone and depth
decoder), ``parallel`` (mesh and sharding), ``training`` (the one trainer and
its tasks), ``data`` (corpora and input pipelines), ``codec`` (RVQ audio codec),
``inference`` (generation) and ``eval``.
"""

__version__ = "0.1.0"
