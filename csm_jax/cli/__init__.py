"""What every command line shares: logging setup and the error boundary.

The entrypoint modules (``csm_jax/train.py``, ``generate.py``, ...) are thin
absl mains over library functions; this package holds the plumbing they
have in common, and nothing below it imports it.
"""
