"""Diffusers model configs as plain JSON data.

A pretrained component (Wan transformer, Wan VAE) is rebuilt from its config alone when its
weights come from elsewhere (a GenProp save folder, sharded loading); the config is therefore
stored in the GenProp config (``backbone.transformer_config``, ``codec.vae_config``), which
must be JSON-serialisable.
"""

from __future__ import annotations

from typing import Any


def plain_config(config: Any) -> dict[str, Any]:
    """A diffusers config (``FrozenDict``) as a JSON-friendly dict.

    Tuples become lists; diffusers' private bookkeeping keys (``_class_name``,
    ``_diffusers_version``, ...: every key starting with ``_``) are dropped.
    """
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in dict(config).items()
        if not k.startswith("_")
    }
