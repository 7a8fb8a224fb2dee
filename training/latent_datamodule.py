"""``LatentDataModule``: batches of precomputed latents (a ``genprop-cache`` folder).

The sibling of :class:`training.datamodule.ShardDataModule` for ``data.latents=DIR``: the same
stream (shard choice, per-task weighting, shuffling, seeding from the trainer step, corrupt
samples counted and skipped), reading latent shards instead of pixel shards and yielding
:class:`genprop.modeling.latents.EncodedBatch` batches that ``genprop.losses.training_losses`` takes
directly. The stream does not depend on the world size beyond the shard split, so one cache
serves any cluster shape and resumes.

:func:`training_data` is the Hydra target of ``conf/training/data/shards.yaml``: the latent
module when ``latents`` is set, the pixel one otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.torch import load_file

from training.cache.key import LatentCacheError, read_manifest
from training.cache.latent_sample import (
    EMPTY_PROMPT,
    LatentSample,
    check_finite,
    collate_latents,
    decode_members,
)
from training.datamodule import ShardDataModule
from training.shard_stream import ShardStream

# ShardDataModule options that mean nothing for latents (the clip geometry is fixed by the cache).
_PIXEL_ONLY = ("num_frames",)


class LatentStream(ShardStream):
    """:class:`ShardStream` over latent shards (see :mod:`training.cache.latent_sample`).

    Args:
        empty_prompt: the cache's empty-prompt tensors (``context``, ``context_mask``).
        **kwargs: as :class:`ShardStream` (``num_frames`` unused).
    """

    def __init__(self, *, empty_prompt: dict[str, torch.Tensor] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.empty_prompt = empty_prompt

    def _decode(self, members: dict[str, Any]) -> LatentSample:  # type: ignore[override]
        return decode_members(members)

    def _collate(self, batch: list[LatentSample]) -> dict[str, Any]:  # type: ignore[override]
        out = {"encoded": collate_latents(batch, self.empty_prompt)}
        out["skipped"] = torch.tensor(self.skipped, dtype=torch.long)
        self.skipped = 0
        return out


def _cache_shards(folder: str | Path, field: str) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The cache's finished shards (from its manifest) and its empty-prompt tensors."""
    root = Path(folder).expanduser()
    manifest = read_manifest(root)
    urls = [str(root / s["tar"]) for s in manifest["shards"] if s.get("samples")]
    if not urls:
        raise FileNotFoundError(f"{field}: {root / 'manifest.json'} lists no shard with samples")
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(f"{field}: {missing[0]} (listed in the manifest) is missing")
    empty_path = root / EMPTY_PROMPT
    if not empty_path.is_file():
        raise FileNotFoundError(f"{field}: {empty_path} missing (rerun genprop-cache)")
    empty = load_file(str(empty_path))
    try:
        check_finite(empty, str(empty_path))
    except ValueError as err:
        raise LatentCacheError(f"{field}: {err} (rerun genprop-cache)") from None
    return urls, empty


class LatentDataModule(ShardDataModule):
    """Training (and optional validation) batches from ``genprop-cache`` folders.

    Args:
        latents: the training cache folder (``manifest.json`` + latent shards).
        val_latents: a validation cache folder, or None (no validation).
        **kwargs: the other :class:`ShardDataModule` options (``batch_size``, ``num_workers``,
            ``resampled``, ``epoch_batches``, ``task_weights``, ``shuffle_buffer``, ``seed``,
            ``strict``, ``max_consecutive_failures``, ``pin_memory``, ``prefetch_factor``).
    """

    def __init__(
        self, *, latents: str | Path, val_latents: str | Path | None = None, **kwargs: Any
    ) -> None:
        urls, self.empty_prompt = _cache_shards(latents, "data.latents")
        val_urls = None
        if val_latents is not None:
            val_urls, _ = _cache_shards(val_latents, "data.val_latents")
        kwargs = {k: v for k, v in kwargs.items() if k not in _PIXEL_ONLY}
        super().__init__(shards=urls, val_shards=val_urls, **kwargs)
        self.latents = str(latents)

    def _stream(self, **options: Any) -> LatentStream:
        """The stream of cached samples (the same shard plan as the pixel stream)."""
        return LatentStream(empty_prompt=self.empty_prompt, **options)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> Any:
        """The batch's :class:`~genprop.modeling.latents.EncodedBatch` (already on the device)."""
        return batch["encoded"]


def use_latent_cache(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model.net.latents`` set from ``data.latents`` (unchanged without it), so the
    model checks the cache's key and is built without its encoders
    (:func:`training.model_factory.build_model`)."""
    latents = OmegaConf.select(cfg, "data.latents", default=None)
    if not latents:
        return cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model.net.latents = latents
    return cfg


def training_data(
    *,
    shards: str | Path | Sequence[str] | None = None,
    latents: str | Path | None = None,
    val_shards: str | Path | Sequence[str] | None = None,
    val_latents: str | Path | None = None,
    **kwargs: Any,
) -> ShardDataModule:
    """The data module of ``conf/training/data/shards.yaml``: latents if ``latents`` is set.

    Raises:
        ValueError: when neither or both of ``shards`` and ``latents`` are set.
    """
    if (shards is None) == (latents is None):
        raise ValueError(
            "data: set exactly one of data.shards (pixel shards from genprop-data) and "
            f"data.latents (a genprop-cache folder); got {shards!r} and {latents!r}"
        )
    if latents is not None:
        return LatentDataModule(latents=latents, val_latents=val_latents, **kwargs)
    return ShardDataModule(shards=shards, val_shards=val_shards, **kwargs)
