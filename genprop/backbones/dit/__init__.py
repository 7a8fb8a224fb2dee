"""The tiny latent-video DiT family (ours, trainable from scratch)."""
