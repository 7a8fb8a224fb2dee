"""Training system: Lightning module, WebDataset data module, callbacks, Hydra entry point.

``genprop-train`` (:mod:`training.train`) composes ``conf/training/train.yaml``. Pieces, one per
file:
``shard_stream`` (shards -> batches, seeded by step), ``batch`` (uint8 loader batches -> genprop
tensors), ``datamodule`` (``ShardDataModule``), ``module`` (``GenPropLitModule``), ``ema``,
``schedule`` (warmup + cosine), ``callbacks`` (export, speed), ``preview`` (validation grid),
``resume`` (what a resumed run restores), ``model_factory``, ``bench`` (loader vs step).
From ``datagen`` only :mod:`contracts.schema` is imported.
"""
