"""The tasks the one trainer trains: the CSM, the codec, and later probes.

``base.Task`` is the contract; ``csm.CSMTask`` and ``codec.CodecTask``
implement it. ``csm_jax.training.run.make_task`` picks one from a config.
"""
