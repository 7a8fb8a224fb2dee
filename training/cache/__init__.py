"""``genprop-cache``: pixel shards -> latent shards for a pretrained backbone
(docs/ARCHITECTURE.md §3).

Per sample it stores what a training step would otherwise recompute with the frozen encoders
(:class:`genprop.modeling.latents.EncodedBatch`): VAE latents of the SCE input, target and
first-frame
conditioning, the latent-grid mask, the prompt embedding (and once per cache the empty prompt's),
CLIP image tokens where the backbone reads them. ``genprop-train data.latents=DIR`` trains from
it without building the encoders; the manifest's keys say what it was made with
(:mod:`training.cache.key`).
"""
