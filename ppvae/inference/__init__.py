"""Inference: the model contract, objectives and the beta handler, the trainer, checkpoints and run directories."""
