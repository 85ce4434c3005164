"""The one trainer, its state, step, checkpoints, reporting and task contract."""
