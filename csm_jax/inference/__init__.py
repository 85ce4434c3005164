"""Generation: KV-cached decoding, sampling, streaming, loading a generator."""
