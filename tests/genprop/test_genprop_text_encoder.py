"""TransformersTextEncoder from a local folder: a tiny random T5 written in-process."""

from __future__ import annotations

import pytest
import torch

from genprop import GenPropModel, TextConfig, TransformersTextEncoder, preset
from genprop.backbones.wan.tiny import TINY_WORDS, tiny_tokenizer


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    from transformers import T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("text")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(TINY_WORDS), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2
    )
    T5EncoderModel(cfg).save_pretrained(root / "text_encoder")
    return root


def test_transformers_encoder_pads_with_zeros_and_is_deterministic(t5_folder):
    enc = TransformersTextEncoder(str(t5_folder), max_tokens=6)
    assert enc.dim == 16
    emb, mask = enc(["track colored regions", ""])
    assert emb.shape == (2, 6, 16)
    assert mask[0].tolist() == [True, True, True, False, False, False]
    assert mask[1, 0] and not mask[1, 1:].any()
    assert torch.equal(emb[0, 3:], torch.zeros(3, 16))
    again, _ = enc(["track colored regions", ""])
    assert torch.equal(emb, again)


def test_model_with_transformers_text_encoder_is_not_saved(t5_folder, tmp_path):
    cfg = preset("cpu_test")
    cfg.text = TextConfig(kind="transformers", path=str(t5_folder), dim=16, max_tokens=6)
    model = GenPropModel.from_config(cfg)
    model.save_pretrained(tmp_path / "m")
    loaded = GenPropModel.from_pretrained(tmp_path / "m", allowed_roots=[t5_folder])
    a, _ = model.encode_prompts(["a red car"], 1)
    b, _ = loaded.encode_prompts(["a red car"], 1)
    assert torch.equal(a, b)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.text\.path"):
        TransformersTextEncoder(str(tmp_path / "nope"), max_tokens=4)
