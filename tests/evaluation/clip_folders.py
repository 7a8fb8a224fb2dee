"""A tiny random-weight local CLIP folder for the evaluation tests (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def write_tiny_clip(folder: Path) -> Path:
    """A randomly initialised CLIP model + char-level tokenizer + 32 px image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2}  # fmt: skip
    cfg = CLIPConfig(
        text_config=small | {"vocab_size": 64, "max_position_embeddings": 16},
        vision_config=small | {"image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")
    ).save_pretrained(folder)
    return folder
