"""csm-jax: a JAX/Flax NNX replication of Sesame's Conversational Speech Model.

Layers, lowest first; a layer imports only layers below it (``lint-imports``
checks this, see ``.importlinter``):

  config               schema, the size table, presets
  audio                audio file I/O, resampling, the librosa guard
  parallel             meshes, logical-axis rules, hardware peaks, timing
  model | codec        the CSM and the RVQ codec (independent of each other)
  data                 corpora, features, tokenizer, CSM examples, pipelines
  store                on-disk formats: workdir layout, checkpoints, exports
  training | inference the one trainer and its tasks | generation
  eval                 evaluation and the listening test
  cli                  what the command lines share
  train, generate, ... the absl entrypoints
"""

__version__ = "0.1.0"
