"""The CSM model: layers, attention and its mask, transformer stacks, loss."""
