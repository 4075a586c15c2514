"""The codec against openpi-client's own msgpack_numpy (installed), and its strictness."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.protocol import codec
from vla.protocol.errors import ProtocolError

msgpack_numpy = pytest.importorskip("openpi_client.msgpack_numpy")

ALLOWED = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64, np.float16, np.float32, np.float64]


def _ndarray_map(data: bytes, dtype: str, shape) -> bytes:
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape})


@pytest.mark.parametrize("dtype", ALLOWED)
def test_ours_decodes_openpi_and_openpi_decodes_ours(dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((3, 4, 2)) * 100).astype(dtype)
    message = {"a": array, "nested": {"b": array[:, 1]}, "s": "text", "n": 3}

    ours = codec.decode(msgpack_numpy.packb(message))
    np.testing.assert_array_equal(ours["a"], array)
    assert ours["a"].dtype == array.dtype and ours["a"].shape == array.shape
    np.testing.assert_array_equal(ours["nested"]["b"], array[:, 1])

    theirs = msgpack_numpy.unpackb(bytes(codec.encode(message)))
    np.testing.assert_array_equal(theirs["a"], array)
    assert theirs["a"].dtype == array.dtype
    np.testing.assert_array_equal(theirs["nested"]["b"], array[:, 1])
    assert theirs["s"] == "text" and theirs["n"] == 3


def test_wire_bytes_equal_openpi_for_contiguous_arrays():
    """Byte-identical output means any openpi peer reads us exactly as it reads itself."""
    message = {"observation.state": np.arange(6, dtype=np.float32), "image": np.zeros((4, 5, 3), np.uint8), "task": "go"}
    assert bytes(codec.encode(message)) == msgpack_numpy.packb(message)


def test_numpy_scalars_both_ways():
    message = {"x": np.float32(1.5), "i": np.int64(-7)}
    ours = codec.decode(msgpack_numpy.packb(message))
    assert ours["x"] == np.float32(1.5) and ours["x"].dtype == np.float32
    assert ours["i"] == -7 and ours["i"].dtype == np.int64
    theirs = msgpack_numpy.unpackb(bytes(codec.encode(message)))
    assert theirs["x"] == np.float32(1.5)


def test_non_contiguous_and_zero_size_arrays():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    view = base[::2, ::3]
    assert not view.flags.c_contiguous
    out = codec.decode(codec.encode({"v": view, "e": np.zeros((0, 6), np.float32)}))
    np.testing.assert_array_equal(out["v"], view)
    assert out["e"].shape == (0, 6)


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in ALLOWED]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
@settings(max_examples=150, deadline=None)
def test_roundtrip_property(array):
    out = codec.decode(codec.encode({"a": array}))["a"]
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    theirs = msgpack_numpy.unpackb(bytes(codec.encode({"a": array})))["a"]
    np.testing.assert_array_equal(theirs, array)


@pytest.mark.parametrize(
    "dtype",
    ["|O", "O", "|V8", "V4", "<c8", "<c16", ">f4", ">i8", "<M8[s]", "<U4", "|S3", "[('a', '<f4')]", "float128", "", "x" * 500],
)
def test_dtype_allow_list_refuses(dtype):
    with pytest.raises(ProtocolError) as info:
        codec.decode(_ndarray_map(b"\x00" * 8, dtype, [1]))
    assert info.value.code == "bad_dtype"


def test_encoder_refuses_object_arrays():
    with pytest.raises(ProtocolError) as info:
        codec.encode({"x": np.array([object()], dtype=object)})
    assert info.value.code == "bad_dtype"


@pytest.mark.parametrize(
    "data,shape,fragment",
    [
        (b"\x00" * 7, [2], "needs 8 bytes, data has 7"),
        (b"\x00" * 8, [3], "needs 12 bytes"),
        (b"\x00" * 8, [-2, -1], "whole numbers"),
        (b"\x00" * 8, [2**40, 2**40], "needs"),
        (b"\x00" * 8, "2", "shape must be a list"),
        (b"\x00" * 8, [1] * 9, "at most 8"),
        (b"\x00" * 8, [2.0], "whole numbers"),
        (b"\x00" * 8, [True, 2], "whole numbers"),
    ],
)
def test_declared_shape_must_match_data(data, shape, fragment):
    with pytest.raises(ProtocolError) as info:
        codec.decode(_ndarray_map(data, "<f4", shape))
    assert info.value.code == "bad_ndarray"
    assert fragment in info.value.message


def test_ndarray_map_with_missing_or_extra_keys():
    for fields in (
        {b"__ndarray__": True, b"data": b"\x00" * 4, b"dtype": "<f4"},
        {b"__ndarray__": True, b"data": b"\x00" * 4, b"dtype": "<f4", b"shape": [1], b"evil": "x"},
        {b"__ndarray__": 1, b"data": b"\x00" * 4, b"dtype": "<f4", b"shape": [1]},
        {b"__ndarray__": True, b"data": "text", b"dtype": "<f4", b"shape": [1]},
    ):
        with pytest.raises(ProtocolError) as info:
            codec.decode(msgpack.packb(fields))
        assert info.value.code == "bad_ndarray"


def test_broken_msgpack_and_size_limit():
    good = bytes(codec.encode({"a": np.zeros(100, np.float32), "t": "hello"}))
    for broken in (good[:-1], good[: len(good) // 2], good + b"\x00", b"\xc1", b""):
        with pytest.raises(ProtocolError) as info:
            codec.decode(broken)
        assert info.value.code == "bad_msgpack"
    with pytest.raises(ProtocolError) as info:
        codec.decode(good, max_bytes=len(good) - 1)
    assert info.value.code == "too_large"
    assert codec.decode(good, max_bytes=len(good))["t"] == "hello"


def test_decode_map_requires_a_map_with_text_keys():
    with pytest.raises(ProtocolError) as info:
        codec.decode_map(msgpack.packb([1, 2]))
    assert info.value.code == "bad_message"
    with pytest.raises(ProtocolError) as info:
        codec.decode_map(msgpack.packb({b"bytes-key": 1}))
    assert info.value.code == "bad_message"


def test_decoded_arrays_do_not_copy_and_are_read_only():
    """Zero-copy decoding: the array views the message's bytes, so it must not be writable."""
    out = codec.decode(codec.encode({"a": np.ones(1000, np.float32)}))["a"]
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 2.0
