"""Generation: KV-cached decoding, sampling, streaming and the generate CLI."""
