"""The embedded corpus generator: eSpeak NG voices and emotions, a transcript grammar, and conversation planning and synthesis."""
