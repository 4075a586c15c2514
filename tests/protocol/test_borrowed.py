"""The borrowing decoder against msgpack's (codec): the same values and the same errors, arrays
that are views of the buffer, and the bookkeeping that tells when they may be reused."""

from __future__ import annotations

import gc

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.protocol import borrowed, codec
from vla.protocol.errors import ProtocolError

DTYPES = [np.dtype(d) for d in ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")]


def _same(a, b) -> None:
    """Equal values of the same types; arrays equal in dtype, shape and bytes."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def _outcome(decode, data: bytes):
    try:
        return "ok", decode(data)
    except ProtocolError as exc:
        return exc.code, None


def _borrowed(data):
    return borrowed.decode_map_borrowed(memoryview(data)).message


arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=40), st.binary(max_size=6000),
)
values = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=20), values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_any_message_decodes_to_what_msgpack_decodes(message):
    data = bytes(codec.encode(message))
    expected, value = _outcome(codec.decode_map, data)  # a key named __ndarray__ fails both
    got, value_b = _outcome(_borrowed, data)
    assert got == expected
    if expected == "ok":
        _same(value, value_b)


@settings(max_examples=400, deadline=None)
@given(messages, st.data())
def test_a_broken_message_fails_with_the_code_msgpack_gives(message, draw):
    """Truncated, overwritten or extended bytes: both decoders agree on the outcome, and on
    the value when there still is one."""
    data = bytearray(codec.encode(message))
    how = draw.draw(st.sampled_from(["truncate", "overwrite", "append"]))
    if how == "truncate" and data:
        del data[draw.draw(st.integers(0, len(data) - 1)):]
    elif how == "overwrite" and data:
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at] = draw.draw(st.integers(0, 255))
    else:
        data += draw.draw(st.binary(min_size=1, max_size=8))
    expected, value = _outcome(codec.decode_map, bytes(data))
    got, value_b = _outcome(_borrowed, bytes(data))
    assert got == expected
    if expected == "ok":
        _same(value, value_b)


def test_large_arrays_are_read_only_views_of_the_buffer_and_small_parts_are_copies():
    image = np.arange(480 * 64 * 3, dtype=np.uint8).reshape(480, 64, 3)
    data = bytearray(codec.encode({"image": image, "state": np.ones(6, np.float32), "jpeg": b"\xff" * 10000}))
    decoded = borrowed.decode_map_borrowed(memoryview(data))
    out = decoded.message
    assert borrowed.borrows(out["image"]) and not out["image"].flags.writeable
    assert not borrowed.borrows(out["state"])  # 24 bytes: copied at once
    assert isinstance(out["jpeg"], bytes)  # a large bin that is not an array's data is always a copy
    np.testing.assert_array_equal(out["image"], image)
    offset = bytes(data).index(image.tobytes())
    data[offset] ^= 0xFF  # the buffer is reused: a view shows it, which is why the server copies
    assert out["image"][0, 0, 0] == image[0, 0, 0] ^ 0xFF
    with pytest.raises(ValueError):
        out["image"][0, 0, 0] = 1


def test_own_arrays_copies_what_borrows_and_still_used_sees_every_view():
    image = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    data = bytearray(codec.encode({"image": image, "nested": {"more": [image]}}))
    decoded = borrowed.decode_map_borrowed(memoryview(data))
    message, views = decoded.message, decoded.views
    del decoded
    assert len(views) == 2 and borrowed.still_used(views)

    kept = message["image"][10:20, ::3]  # a view of a view still holds the buffer
    del message
    gc.collect()
    assert borrowed.still_used(views)
    del kept
    assert not borrowed.still_used(views)

    decoded = borrowed.decode_map_borrowed(memoryview(data))
    message, views = decoded.message, decoded.views
    del decoded
    borrowed.own_arrays(message)
    assert not borrowed.still_used(views)
    data[:] = bytes(len(data))  # the buffer reused: the owned copies do not change
    np.testing.assert_array_equal(message["image"], image)
    np.testing.assert_array_equal(message["nested"]["more"][0], image)
    assert not message["image"].flags.writeable and not borrowed.borrows(message["image"])


def test_messages_of_many_values_go_to_msgpack_and_deep_ones_are_refused():
    many = {"values": list(range(20000)), "image": np.zeros(10000, np.uint8)}
    decoded = borrowed.decode_map_borrowed(memoryview(codec.encode(many)))
    assert decoded.message["values"] == list(range(20000)) and decoded.views == []  # copied, in C time
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ProtocolError) as info:
        borrowed.decode_map_borrowed(memoryview(msgpack.packb({"deep": deep})))
    assert info.value.code == "bad_msgpack" and "deep" in info.value.message


@pytest.mark.parametrize(
    "data, code",
    [
        (msgpack.packb([1, 2]), "bad_message"),
        (msgpack.packb({b"bytes-key": 1}), "bad_message"),
        (msgpack.packb({"a": 1}) + b"\x00", "bad_msgpack"),
        (b"\x81\xa1a\xc1", "bad_msgpack"),
        (b"\x81\xa1a\xa2\xff\xfe", "bad_msgpack"),  # a string that is not UTF-8
        (msgpack.packb({"a": {1: 2}}), "bad_msgpack"),  # strict map keys
        (msgpack.packb({"a": {"__ndarray__": True, "data": b"x" * 5000, "dtype": "|O", "shape": [5000]}}), "bad_dtype"),
        (msgpack.packb({"a": {"__ndarray__": True, "data": b"x" * 5000, "dtype": "|u1", "shape": [4999]}}), "bad_ndarray"),
    ],
)
def test_refusals_name_the_problem_as_codec_does(data, code):
    with pytest.raises(ProtocolError) as info:
        borrowed.decode_map_borrowed(memoryview(data))
    assert info.value.code == code
    with pytest.raises(ProtocolError) as info:
        codec.decode_map(data)
    assert info.value.code == code


def test_the_size_limit_holds():
    data = codec.encode({"image": np.zeros(10000, np.uint8)})
    with pytest.raises(ProtocolError) as info:
        borrowed.decode_map_borrowed(data, max_bytes=len(data) - 1)
    assert info.value.code == "too_large"


def test_extension_types_decode_as_msgpack_decodes_them():
    """Neither protocol uses them; they are handed to msgpack, so the value (or refusal) is its own."""
    for ext in (msgpack.ExtType(5, b"abc"), msgpack.ExtType(7, b"x" * 300), msgpack.ExtType(1, b"12345678")):
        data = msgpack.packb({"e": ext, "image": {"__ndarray__": True, "data": b"\x01" * 5000, "dtype": "|u1",
                                                 "shape": [5000]}})
        _same(codec.decode_map(data), _borrowed(data))
