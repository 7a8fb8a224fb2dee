"""Text conditioning: prompts -> precomputed token embeddings (B, L, dim) + mask (B, L).

* :class:`HashingTextEncoder` — deterministic and download-free: each lower-cased word is hashed
  (CRC32) into a fixed, seeded random table (a non-persistent buffer rebuilt from the seed, so it is
  never saved). The backbone's trainable text projection learns what the words mean. Good for the
  toy world's short prompts ("track colored regions").
* :class:`TransformersTextEncoder` — a frozen transformers encoder (e.g. Wan's UMT5) loaded from a
  local folder only.

The empty prompt (also what CFG text dropout uses) encodes as a single all-zero token, so masked
cross-attention always has at least one key.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import torch
from torch import nn

from genprop.encoder_configs import TextConfig

_WORD = re.compile(r"[a-z0-9]+")


class HashingTextEncoder(nn.Module):
    """Bag of hashed words -> (B, max_tokens, dim) embeddings."""

    def __init__(self, *, dim: int, max_tokens: int, buckets: int, seed: int) -> None:
        super().__init__()
        self.dim = dim
        self.max_tokens = max_tokens
        self.buckets = buckets
        gen = torch.Generator().manual_seed(seed)
        table = torch.randn(buckets, dim, generator=gen)
        self.register_buffer("table", table, persistent=False)

    def token_ids(self, prompt: str) -> list[int]:
        """Bucket ids of the prompt's words (at most ``max_tokens``)."""
        words = _WORD.findall(prompt.lower())[: self.max_tokens]
        return [zlib.crc32(w.encode()) % self.buckets for w in words]

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts.

        Returns:
            embeddings (B, max_tokens, dim) float, mask (B, max_tokens) bool (True = real token).
        """
        b = len(prompts)
        emb = torch.zeros(b, self.max_tokens, self.dim, device=self.table.device)
        mask = torch.zeros(b, self.max_tokens, dtype=torch.bool, device=self.table.device)
        mask[:, 0] = True  # the empty prompt is one zero token
        for i, prompt in enumerate(prompts):
            ids = self.token_ids(prompt)
            if ids:
                emb[i, : len(ids)] = self.table[torch.tensor(ids, device=self.table.device)]
                mask[i, : len(ids)] = True
        return emb, mask


class TransformersTextEncoder(nn.Module):
    """A frozen transformers text encoder loaded from a local folder only.

    ``path`` is either a folder holding both the tokenizer and the encoder, or a diffusers pipeline
    folder with ``tokenizer/`` and ``text_encoder/`` (Wan's layout: UMT5). The class named in the
    config's ``architectures`` (e.g. ``UMT5EncoderModel``) is used, so an encoder-only checkpoint
    never instantiates a decoder.
    """

    def __init__(self, path: str, *, max_tokens: int) -> None:
        super().__init__()
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"config.text.path: {root} is not a folder")
        split = (root / "text_encoder").is_dir() and (root / "tokenizer").is_dir()
        tok_dir, enc_dir = (root / "tokenizer", root / "text_encoder") if split else (root, root)
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        config = AutoConfig.from_pretrained(enc_dir, local_files_only=True)
        arch = (config.architectures or [""])[0]
        model_cls = getattr(transformers, arch, None) if arch else None
        model = (model_cls or AutoModel).from_pretrained(enc_dir, local_files_only=True)
        self.encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.max_tokens = max_tokens
        self.dim = int(getattr(config, "d_model", None) or config.hidden_size)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts -> (B, max_tokens, dim) (zeros after each prompt's end), mask (B, L)."""
        device = next(self.encoder.parameters()).device
        tok = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_tokens,
            truncation=True,
            return_tensors="pt",
        ).to(device)
        out = self.encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        mask = tok.attention_mask.bool()
        mask[:, 0] = True
        emb = out.last_hidden_state.float() * mask[..., None]
        return emb, mask


def build_text_encoder(cfg: TextConfig) -> nn.Module:
    """Build the text encoder described by ``cfg``."""
    if cfg.kind == "hashing":
        return HashingTextEncoder(
            dim=cfg.dim, max_tokens=cfg.max_tokens, buckets=cfg.buckets, seed=cfg.seed
        )
    if cfg.kind == "transformers":
        if not cfg.path:
            raise ValueError("config.text.path: a local folder is required for kind 'transformers'")
        return TransformersTextEncoder(cfg.path, max_tokens=cfg.max_tokens)
    raise ValueError(f"config.text.kind: expected 'hashing' or 'transformers', got {cfg.kind!r}")
