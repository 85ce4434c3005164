"""CSM examples from corpus turns: the row layout, the codec token cache, packing, and grain pipelines."""
