"""Corpora as tfds builders (synthetic, manifest, DailyTalk), their shared turn record, ingest reports, and the registry that opens one by name."""
