"""Config schema, size table and presets (see ``schema.make_config``)."""

from csm_jax.config.schema import ConfigError, make_config, validate
from csm_jax.config.presets import preset

__all__ = ["ConfigError", "make_config", "preset", "validate"]
