"""Speech data for csm-jax: audio I/O and validation, the embedded synthetic
dialogue corpus (eSpeak NG voices, transcripts, emotions), per-turn features
and the tfds/grain dataset built from it."""
