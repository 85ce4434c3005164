"""Importing Sesame CSM-1B and Kyutai Mimi PyTorch weights (``python -m csm_jax.convert``).

  safetensors_io   open a checkpoint, read its tensors one at a time
                   (safetensors without torch)
  mapping          take tensors by name and shape, report every mismatch
  streaming        fill our parameters from recipes, one source at a time
  csm_names        Sesame CSM (torchtune names) -> our CSM parameters
  mimi_names       Kyutai Mimi (moshi names) -> our codec's variables
  convert          write an export / codec directory from them

This package sits beside ``training`` and ``inference``, above ``store``;
the model and the codec never import it. What differs from the PyTorch
references and how it is handled: docs/interop.md.
"""
