"""The CSM model: layers, attention, transformer stacks, loss and its task."""
