"""Speech data: corpora, per-turn features, the text tokenizer and CSM examples.

  synthetic/   the embedded eSpeak NG dialogue generator (voices, emotions,
               transcripts)
  corpora/     tfds builders of every corpus (synthetic, manifest, DailyTalk),
               their turn records, ingest reports and the registry by name
  examples/    CSM rows from turns: layout, token cache, packing, grain
  batch.py     the batch contract (FieldSpec, validate_batch)
  features.py  per-turn prosody and semantic features
  tokenizer.py SentencePiece with speaker tags
"""
