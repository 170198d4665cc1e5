"""Using a trained model: paths through the latent space (and, as they arrive, inpainting, editing, anomalies)."""
