"""On-disk formats: the workdir layout, run configs, checkpoints, exports.

Everything that reads or writes a run's files lives here, below training
and inference, so that generation restores a model's parameters
(``restore.restore_params``) without building an optimizer or importing the
trainer.
"""
