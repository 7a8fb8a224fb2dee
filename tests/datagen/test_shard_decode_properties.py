"""Property tests of the shard decoder: any mutation of a valid encoded sample decodes to a valid
:class:`Sample` or raises :class:`SchemaError` naming the sample and the key or field — never
another exception, a hang, or (for checksummed lossless payloads) a silently different array.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth_records import make_sample

from contracts.schema import (
    MAX_FRAMES,
    MAX_SIDE,
    SchemaError,
    decode_sample,
    encode_sample,
    validate_sample,
)

SETTINGS = settings(
    max_examples=60,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
ORIGINAL = make_sample(T=3, H=10, W=12)
ENCODED = {
    "lossless": encode_sample(ORIGINAL, codec="lossless"),
    "h264": encode_sample(ORIGINAL, codec="h264", preset="ultrafast"),
}
ODD_VALUES = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(10**30), st.just(-1),
    st.just(0), st.just(None), st.just(True), st.text(max_size=5),
    st.lists(st.integers(), max_size=3), st.floats(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(min_value=-(2**70), max_value=2**70),
)  # fmt: skip


def check(d: dict) -> None:
    """The property: a valid sample, or a SchemaError naming the sample and what is wrong."""
    try:
        sample = decode_sample(d)
    except SchemaError as e:
        message = str(e)
        assert message.startswith("sample "), message
        assert re.search(r"\b(key|fields?) '", message), message  # names what is wrong
        return
    validate_sample(sample)  # whatever decodes is a valid sample
    T, H, W = sample.mask.shape
    assert sample.sce.shape == sample.target.shape == (T, H, W, 3)


def _bytes_member(codec: str) -> st.SearchStrategy[str]:
    return st.sampled_from([k for k, v in ENCODED[codec].items() if isinstance(v, bytes)])


@st.composite
def byte_mutations(draw, codec: str) -> tuple[dict, str]:
    d = dict(ENCODED[codec])
    key = draw(_bytes_member(codec))
    raw = bytearray(d[key])
    op = draw(st.sampled_from(["flip", "truncate", "insert", "replace"]))
    if op == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= draw(st.integers(1, 255))
    elif op == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif op == "insert":
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.binary(min_size=1, max_size=16))
    else:
        raw = bytearray(draw(st.binary(max_size=64)))
    d[key] = bytes(raw)
    return d, key


@pytest.mark.parametrize("codec", ["lossless", "h264"])
def test_byte_mutations_never_crash(codec):
    @SETTINGS
    @given(byte_mutations(codec))
    def run(case):
        d, key = case
        check(d)
        if codec == "lossless" and key != "json":
            # zip and PNG checksums: what still decodes is the original pixels.
            try:
                back = decode_sample(d)
            except SchemaError:
                return
            for name in ("sce", "first", "target", "mask"):
                np.testing.assert_array_equal(getattr(back, name), getattr(ORIGINAL, name))

    run()


@st.composite
def json_mutations(draw, codec: str) -> dict:
    d = dict(ENCODED[codec])
    meta = json.loads(d["json"])
    node = meta
    if draw(st.booleans()):
        node = meta["encoding"]
    field = draw(st.sampled_from(sorted(node)))
    if draw(st.integers(0, 4)) == 0:
        del node[field]
    else:
        node[field] = draw(ODD_VALUES)
    d["json"] = json.dumps(meta).encode()  # NaN/Infinity are written as JSON allows
    return d


@pytest.mark.parametrize("codec", ["lossless", "h264"])
def test_json_field_mutations_never_crash(codec):
    SETTINGS(given(json_mutations(codec))(check))()


@SETTINGS
@given(st.sampled_from(sorted(ENCODED["lossless"])), st.sampled_from(["lossless", "h264"]))
def test_dropped_or_retyped_keys(key, codec):
    d = dict(ENCODED[codec])
    d.pop(key, None)
    check(d)
    d = dict(ENCODED[codec])
    if key in d and key != "__key__":
        d[key] = "not bytes"
        check(d)


@pytest.mark.parametrize(
    "geometry",
    [
        (MAX_FRAMES, MAX_SIDE, MAX_SIDE),  # each side in bounds, 824 GB in total
        (MAX_FRAMES + 1, 8, 8),
        (2, MAX_SIDE + 2, 8),
        (3, 0, 12),
    ],
)
@pytest.mark.parametrize("codec", ["lossless", "h264"])
def test_declared_geometry_is_bounded_before_decoding(codec, geometry):
    d = dict(ENCODED[codec])
    meta = json.loads(d["json"])
    meta["encoding"].update(frames=geometry[0], height=geometry[1], width=geometry[2])
    meta["frame_indices"] = list(range(geometry[0]))
    d["json"] = json.dumps(meta).encode()
    with pytest.raises(SchemaError, match=r"field 'encoding' size .* out of bounds"):
        decode_sample(d)


def test_deeply_nested_and_oversized_json():
    d = dict(ENCODED["lossless"])
    d["json"] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SchemaError, match="key 'json'"):
        decode_sample(d)
    d["json"] = b'{"x": ' + b"1" * 5000 + b"}"  # an int beyond Python's digit limit
    with pytest.raises(SchemaError, match="key 'json' is not valid JSON"):
        decode_sample(d)
    d["json"] = b" " * (2 << 20)
    with pytest.raises(SchemaError, match="key 'json' has"):
        decode_sample(d)
