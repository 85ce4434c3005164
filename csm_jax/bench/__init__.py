"""Benchmarks (``python -m csm_jax.bench <name> --config=...``); not tests."""
