"""Audio shared by the codec and the data: file I/O, validation, resampling,
loudness, and librosa imported under its compile lock."""
