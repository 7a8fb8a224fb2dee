"""``genprop-cache`` on a tiny random Wan2.2-A14B folder (5x32x32 clips), in-process.

Equivalence tolerances (loss terms, cached path vs on-the-fly path, same samples and generator):

* fp32 cache: ``rtol=1e-5, atol=1e-6`` — the same tensors up to float reduction order (the cache
  encodes in batches of its own size);
* bf16 cache: ``rtol=3e-2, atol=1e-3`` — latents and embeddings rounded to bf16 (8-bit mantissa,
  relative error <= 2^-9 per element) move the loss by about that much.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import webdataset as wds
from safetensors.torch import load_file
from shard_factory import write_shards

from contracts.schema import decode_sample
from genprop.backbones.wan.pretrained import write_tiny_wan_pipeline
from genprop.configs import preset
from genprop.losses import CFGDropout, training_losses
from genprop.modeling.latents import EncodedBatch
from genprop.modeling.model import GenPropModel
from genprop.modeling.unbuilt_encoders import EncoderNotBuiltError
from training.batch import collate_samples, to_model_batch
from training.cache.key import LatentCacheError, check_latent_cache, encoder_key
from training.cache.latent_sample import EMPTY_PROMPT, collate_latents, decode_members
from training.cache.runner import CacheJobFailed, run_cache
from training.latent_datamodule import LatentStream
from training.model_factory import build_config, build_model
from training.shard_stream import CorruptSampleError

FRAMES, SIZE = 5, 32
TOLERANCE = {"fp32": (1e-5, 1e-6), "bf16": (3e-2, 1e-3)}


def cache_cfg(pipeline: Path, shards: Path, out: Path, **extra: object) -> dict:
    """A ``genprop_cache`` config (plain dict) for the tiny geometry, in-process."""
    overrides = {"num_frames": FRAMES, "height": SIZE, "width": SIZE, "text": {"max_tokens": 8}}
    net = {"preset_name": None, "pretrained": str(pipeline), "overrides": overrides}
    cfg = {
        "data": {"shards": str(shards)},
        "model": {"net": net},
        "output_dir": str(out),
        "dtype": "bf16",
        "batch_size": 2,
        "progress": False,
        "ray": {"enabled": False},
    }
    return cfg | extra


def model_config(pipeline: Path, text_tokens: int = 8, **geometry: int):
    overrides = {"num_frames": FRAMES, "height": SIZE, "width": SIZE}
    overrides["text"] = {"max_tokens": text_tokens}
    return build_config(preset_name=None, pretrained=str(pipeline), overrides=overrides | geometry)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cache")
    pipeline = write_tiny_wan_pipeline(root / "wan", seed=0)
    write_shards(root / "px", shards=2, per_shard=2, frames=FRAMES, size=SIZE)
    caches = {}
    for dtype in ("fp32", "bf16"):
        caches[dtype] = root / f"lat-{dtype}"
        run_cache(cache_cfg(pipeline, root / "px", caches[dtype], dtype=dtype))
    return {"root": root, "pipeline": pipeline, "px": root / "px", **caches}


def _trained_like_models(pipeline: Path, text_tokens: int = 8) -> tuple[GenPropModel, GenPropModel]:
    """A full model with perturbed (non-initial) weights and the same without its encoders."""
    cfg = model_config(pipeline, text_tokens)
    full = GenPropModel.from_config(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # off the zero init, so the SCE, MPD and task embedding all matter
        for p in full.trainable_parameters("genprop"):
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    light = GenPropModel.from_config(cfg, encoders=False)
    frozen = ("codec.", "text_encoder.", "image_encoder.")
    state = {k: v for k, v in full.state_dict().items() if not k.startswith(frozen)}
    missing, unexpected = light.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    return full, light


def _read(url: Path, decode):
    return [decode(d) for d in wds.tarfile_to_samples()([{"url": str(url)}])]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cached_loss_equals_on_the_fly_loss(setup, dtype: str) -> None:
    full, light = _trained_like_models(setup["pipeline"])
    pixels = to_model_batch(collate_samples(_read(setup["px"] / "train-000000.tar", decode_sample)))
    cache = setup[dtype]
    latents = collate_latents(
        _read(cache / "train-000000.tar", decode_members), load_file(str(cache / EMPTY_PROMPT))
    )
    assert isinstance(latents, EncodedBatch)
    assert latents.target.dtype == (torch.float32 if dtype == "fp32" else torch.bfloat16)
    rtol, atol = TOLERANCE[dtype]
    # text=1: every prompt replaced by the cached empty prompt; 0: the cached prompts themselves.
    for seed, text in ((0, 1.0), (1, 0.0), (2, 0.5)):
        kwargs = {"stage": "genprop", "cfg_dropout": CFGDropout(text=text, task=0.3)}
        a = training_losses(full, pixels, generator=torch.Generator().manual_seed(seed), **kwargs)
        b = training_losses(light, latents, generator=torch.Generator().manual_seed(seed), **kwargs)
        assert a.keys() == b.keys() and {"grad", "mpd", "mask"} <= a.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=rtol, atol=atol, msg=f"{dtype} {k}")


def forbid_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make building the VAE or text encoder in this process fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("an encoder was built in this process")

    monkeypatch.setattr("genprop.modeling.model.build_codec", refuse)
    monkeypatch.setattr("genprop.modeling.model.build_text_encoder", refuse)
    monkeypatch.setattr("diffusers.AutoencoderKLWan.from_pretrained", refuse)
    monkeypatch.setattr("transformers.UMT5EncoderModel.from_pretrained", refuse)


def test_model_from_cache_builds_no_encoder(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_encoders(monkeypatch)
    net = build_model(
        pretrained=str(setup["pipeline"]),
        overrides={"num_frames": FRAMES, "height": SIZE, "width": SIZE, "text": {"max_tokens": 8}},
        latents=str(setup["bf16"]),
    )
    assert net.latent_frames == 2 and net.codec.latent_channels == 16
    assert not any(k.startswith(("codec.", "text_encoder.")) for k in net.state_dict())
    with pytest.raises(EncoderNotBuiltError, match="VAE"):
        net.codec.encode(torch.zeros(1, FRAMES, 3, SIZE, SIZE))
    with pytest.raises(EncoderNotBuiltError, match="text encoder"):
        net.encode_prompts(["a red car"], 1)


def test_export_of_cache_trained_model_loads(setup, tmp_path: Path) -> None:
    _, light = _trained_like_models(setup["pipeline"])
    light.save_pretrained(tmp_path / "export")
    loaded = GenPropModel.from_pretrained(tmp_path / "export", allowed_roots=[setup["pipeline"]])
    video = torch.zeros(1, FRAMES, 3, SIZE, SIZE)
    reference = GenPropModel.from_config(model_config(setup["pipeline"]))
    torch.testing.assert_close(loaded.codec.encode(video), reference.codec.encode(video))


def test_manifest_records_keys_and_sources(setup) -> None:
    manifest = json.loads((setup["bf16"] / "manifest.json").read_text())
    assert manifest["samples"] == 4 and manifest["errors"] == 0 and manifest["dtype"] == "bf16"
    assert len(manifest["shards"]) == 2
    assert all(len(s["source_sha256"]) == 64 for s in manifest["shards"])
    assert set(manifest["identity"]["files"]) == {"vae", "text_encoder"}
    fp32 = json.loads((setup["fp32"] / "manifest.json").read_text())
    assert fp32["encoder_key"] == manifest["encoder_key"] and fp32["key"] != manifest["key"]
    assert check_latent_cache(setup["bf16"], model_config(setup["pipeline"]))["samples"] == 4


def test_mismatched_cache_is_refused_naming_both_keys(setup) -> None:
    found = json.loads((setup["bf16"] / "manifest.json").read_text())["encoder_key"]
    other_weights = write_tiny_wan_pipeline(setup["root"] / "wan-seed1", seed=1)
    for cfg, part in (
        (model_config(other_weights), "vae weights"),
        (model_config(setup["pipeline"], height=48), "geometry"),
    ):
        with pytest.raises(LatentCacheError) as err:
            check_latent_cache(setup["bf16"], cfg)
        message = str(err.value)
        assert found in message and part in message and "\n" not in message
        expected = message.split("this model needs ")[1].split()[0]
        assert expected != found and len(expected) == 16


def test_bad_samples_recorded_counted_and_others_written(setup, tmp_path: Path) -> None:
    px = tmp_path / "px"
    write_shards(px, shards=1, per_shard=3, frames=FRAMES, size=SIZE, corrupt_keys=("train000001",))
    write_shards(px, shards=1, per_shard=1, prefix="short", frames=3, size=SIZE)
    out = tmp_path / "lat"
    manifest = run_cache(cache_cfg(setup["pipeline"], px, out))
    assert manifest["samples"] == 2 and manifest["errors"] == 2
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["sample"] for e in errors} == {"train000001", "short000000"}
    assert any("(3, 32, 32)" in e["reason"] for e in errors)
    keys = [s.key for s in _read(out / "train-000000.tar", decode_members)]
    assert keys == ["train000000", "train000002"]


def test_latent_stream_skips_and_counts_a_corrupt_cached_sample(setup, tmp_path: Path) -> None:
    good = list(wds.tarfile_to_samples()([{"url": str(setup["bf16"] / "train-000000.tar")}]))
    shard = tmp_path / "bad.tar"
    with wds.TarWriter(str(shard)) as writer:
        writer.write({k: v for k, v in good[0].items() if k != "__url__"})
        writer.write({"__key__": "broken", "latents.safetensors": b"junk", "json": b"{}"})
        writer.write({k: v for k, v in good[1].items() if k != "__url__"})
    empty = load_file(str(setup["bf16"] / EMPTY_PROMPT))
    options = dict(urls=[str(shard)], batch_size=1, resampled=False, epoch_batches=None)
    batches = list(LatentStream(empty_prompt=empty, **options))
    assert [int(b["skipped"]) for b in batches] == [0, 1]
    assert all(isinstance(b["encoded"], EncodedBatch) for b in batches)
    with pytest.raises(CorruptSampleError, match=r"sample 'broken'"):
        list(LatentStream(empty_prompt=empty, strict=True, **options))


def test_run_that_caches_nothing_fails(setup, tmp_path: Path) -> None:
    write_shards(tmp_path / "px", shards=1, per_shard=1, frames=3, size=SIZE)
    with pytest.raises(CacheJobFailed, match=r"no sample cached from 1 shard\(s\)"):
        run_cache(cache_cfg(setup["pipeline"], tmp_path / "px", tmp_path / "lat"))
    assert json.loads((tmp_path / "lat" / "manifest.json").read_text())["samples"] == 0


def test_rerun_skips_finished_shards_and_refuses_other_dtype(setup, tmp_path: Path) -> None:
    out = setup["bf16"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    manifest = run_cache(cache_cfg(setup["pipeline"], setup["px"], out))
    assert manifest["samples"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before
    with pytest.raises(LatentCacheError, match="holds a cache of another model or dtype"):
        run_cache(cache_cfg(setup["pipeline"], setup["px"], out, dtype="fp16"))


def test_latent_batch_of_wrong_geometry_is_refused(setup) -> None:
    _, light = _trained_like_models(setup["pipeline"])
    cache = setup["fp32"]
    batch = collate_latents(
        _read(cache / "train-000000.tar", decode_members), load_file(str(cache / EMPTY_PROMPT))
    )
    batch.content = batch.content[..., :1, :]
    with pytest.raises(ValueError, match=r"latent batch: content has .* the model expects"):
        training_losses(light, batch, stage="genprop")
    assert math.isfinite(training_losses(light, batch, stage="i2v")["total"].item())


def test_wan21_image_tokens_are_cached_and_equivalent(tmp_path: Path) -> None:
    """Wan2.1-I2V: CLIP tokens of the first frame stored per sample; fp32 loss as on the fly."""
    pipeline = write_tiny_wan_pipeline(tmp_path / "wan21", seed=0, variant="wan2.1-i2v")
    write_shards(tmp_path / "px", shards=1, per_shard=2, frames=FRAMES, size=SIZE)
    cfg = cache_cfg(pipeline, tmp_path / "px", tmp_path / "lat", dtype="fp32")
    cfg["model"]["net"]["overrides"]["text"]["max_tokens"] = 512  # required with image tokens
    manifest = run_cache(cfg)
    identity = manifest["identity"]
    assert identity["image_encoder"] and "image_encoder" in identity["files"]
    full, light = _trained_like_models(pipeline, text_tokens=512)
    latents = collate_latents(
        _read(tmp_path / "lat" / "train-000000.tar", decode_members),
        load_file(str(tmp_path / "lat" / EMPTY_PROMPT)),
    )
    assert latents.image_embeds is not None and latents.image_embeds.shape[0] == 2
    assert latents.context.shape[1] == 512  # stored trimmed, padded back on load
    pixels = to_model_batch(
        collate_samples(_read(tmp_path / "px" / "train-000000.tar", decode_sample))
    )
    kwargs = {"stage": "genprop", "cfg_dropout": CFGDropout(text=0.5, task=0.3)}
    a = training_losses(full, pixels, generator=torch.Generator().manual_seed(3), **kwargs)
    b = training_losses(light, latents, generator=torch.Generator().manual_seed(3), **kwargs)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize(
    ("name", "key"), [("cpu_test", "64ab5591402f2af1"), ("demo", "9a920a0bcaed0539")]
)
def test_encoder_keys_of_existing_caches_do_not_change(name, key):
    """Keys as the release before the learned codec computed them: new codec fields that only a
    ``learned`` codec reads must not invalidate the caches users already have."""
    assert encoder_key(preset(name)) == key
