"""Round trips and bad-input errors of the shard schema (contracts/schema.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import webdataset as wds
from synth_records import make_sample

from contracts.schema import (
    META_KEYS,
    SCHEMA_VERSION,
    TASKS,
    SchemaError,
    decode_sample,
    encode_sample,
)


def test_meta_keys_cover_the_contract():
    assert set(META_KEYS) == {
        "task", "recipe", "prompt", "source", "video_id", "object_ids", "frame_indices", "fps",
        "seed", "schema_version", "params",
    }  # fmt: skip
    assert TASKS == ("removal", "edit", "insertion", "tracking", "outpainting")


def test_lossless_round_trip_is_exact():
    s = make_sample()
    d = encode_sample(s, codec="lossless")
    assert set(d) == {"__key__", "sce.npz", "target.npz", "first.png", "mask.npz", "json"}
    back = decode_sample({k: v.encode() if isinstance(v, str) else v for k, v in d.items()})
    assert back.key == s.key and back.meta == s.meta
    for name in ("sce", "first", "target", "mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))


@pytest.mark.parametrize("size", [(34, 46), (33, 47)])  # even, and odd (padded for yuv420p)
def test_h264_round_trip_is_close_and_masks_exact(size):
    s = make_sample(H=size[0], W=size[1])
    d = encode_sample(s, codec="h264", crf=18)
    assert {"sce.mp4", "target.mp4", "first.png", "mask.npz", "json"} <= set(d)
    back = decode_sample(d)
    assert back.target.shape == s.target.shape
    err = np.abs(back.target.astype(int) - s.target.astype(int)).mean()
    assert err < 3.0, err
    np.testing.assert_array_equal(back.mask, s.mask)
    np.testing.assert_array_equal(back.first, s.first)  # PNG: lossless


def test_crf_controls_size():
    s = make_sample(T=6, H=64, W=64)
    s.sce = np.random.default_rng(0).integers(0, 255, s.sce.shape, dtype=np.uint8)
    small = len(encode_sample(s, crf=40)["sce.mp4"])
    large = len(encode_sample(s, crf=5)["sce.mp4"])
    assert small < large


def test_round_trip_through_a_webdataset_tar(tmp_path):
    path = tmp_path / "x.tar"
    samples = [make_sample(key=f"k{i}", task=TASKS[i]) for i in range(3)]
    with wds.TarWriter(str(path)) as w:
        for s in samples:
            w.write(encode_sample(s, codec="lossless"))
    got = [decode_sample(d) for d in wds.WebDataset(str(path), shardshuffle=False)]
    assert [g.key for g in got] == ["k0", "k1", "k2"]
    assert [g.meta["task"] for g in got] == list(TASKS[:3])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: setattr(s, "mask", s.mask * 2), "'mask' must hold only 0 and 1"),
        (lambda s: setattr(s, "first", s.first[:-1]), "field 'first' must have shape"),
        (lambda s: setattr(s, "target", s.target.astype(np.float32)), "field 'target'"),
        (lambda s: s.meta.pop("prompt"), "lacks keys ['prompt']"),
        (lambda s: s.meta.update(task="dance"), "meta field 'task'"),
        (lambda s: s.meta.update(frame_indices=[0]), "'frame_indices'"),
        (lambda s: setattr(s, "key", "a.b"), "field 'key'"),
    ],
)
def test_encode_rejects_bad_samples(change, message):
    s = make_sample()
    change(s)
    with pytest.raises(SchemaError, match=message.replace("[", r"\[").replace("]", r"\]")):
        encode_sample(s, codec="lossless")


def test_encode_rejects_unknown_codec_and_crf():
    with pytest.raises(SchemaError, match="codec"):
        encode_sample(make_sample(), codec="vp9")
    with pytest.raises(SchemaError, match="crf"):
        encode_sample(make_sample(), crf=99)


def _encoded():
    return encode_sample(make_sample(), codec="lossless")


def test_decode_names_missing_key():
    d = _encoded()
    del d["mask.npz"]
    with pytest.raises(SchemaError, match=r"sample 's0_1': key 'mask.npz' missing"):
        decode_sample(d)


def test_decode_rejects_bad_json_and_other_schema_version():
    d = _encoded()
    d["json"] = b"{not json"
    with pytest.raises(SchemaError, match="key 'json' is not valid JSON"):
        decode_sample(d)
    d = _encoded()
    meta = json.loads(d["json"])
    meta["schema_version"] = SCHEMA_VERSION + 1
    d["json"] = json.dumps(meta).encode()
    with pytest.raises(SchemaError, match="schema_version"):
        decode_sample(d)


def test_decode_refuses_pickled_npz():
    d = _encoded()
    buf = io.BytesIO()
    np.savez(buf, mask=np.array([{"evil": 1}], dtype=object))
    d["mask.npz"] = buf.getvalue()
    with pytest.raises(SchemaError, match=r"key 'mask.npz'"):
        decode_sample(d)


def test_decode_bounds_declared_size_and_frame_count():
    d = _encoded()
    meta = json.loads(d["json"])
    meta["encoding"]["frames"] = 10**6
    d["json"] = json.dumps(meta).encode()
    with pytest.raises(SchemaError, match="out of bounds"):
        decode_sample(d)
    d = encode_sample(make_sample(), codec="h264")
    meta = json.loads(d["json"])
    meta["encoding"]["frames"] = 9  # the mp4 holds 5
    meta["frame_indices"] = list(range(9))
    d["json"] = json.dumps(meta).encode()
    with pytest.raises(SchemaError, match="has 5 frames, json says 9"):
        decode_sample(d)


def test_decode_rejects_truncated_video():
    d = encode_sample(make_sample(), codec="h264")
    d["sce.mp4"] = d["sce.mp4"][:200]
    with pytest.raises(SchemaError, match=r"key 'sce.mp4'"):
        decode_sample(d)


def test_decode_turns_damaged_payloads_into_schema_errors():
    d = _encoded()
    d["mask.npz"] = d["mask.npz"][:20]
    with pytest.raises(SchemaError, match=r"key 'mask.npz': not a readable .npz"):
        decode_sample(d)
    d = _encoded()
    d["first.png"] = d["first.png"][:30]
    with pytest.raises(SchemaError, match=r"key 'first.png'"):
        decode_sample(d)


def test_decode_refuses_npz_larger_than_declared_geometry():
    d = _encoded()
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=np.zeros((50, 200, 200), np.uint8))  # a small zip bomb
    d["mask.npz"] = buf.getvalue()
    with pytest.raises(SchemaError, match="inflates to"):
        decode_sample(d)
