"""Client frames written in one pass (vla.protocol.outgoing): valid RFC 6455 frames whose payload
means what codec.encode writes, to our decoder and to openpi-client's msgpack_numpy alike."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vla.protocol import codec
from vla.protocol.outgoing import LARGE, masked_frame

msgpack_numpy = pytest.importorskip("openpi_client.msgpack_numpy")


def parse(frame) -> tuple[int, bytes, bytes]:
    """(header length, mask key, unmasked payload) of one client frame, checked as RFC 6455 section 5.2 says."""
    data = bytes(frame)
    assert data[0] == 0x82  # FIN, binary
    assert data[1] & 0x80  # masked, as a client must
    size, at = data[1] & 0x7F, 2
    if size == 126:
        (size,), at = struct.unpack(">H", data[2:4]), 4
        assert size >= 126  # the fewest length bytes
    elif size == 127:
        (size,), at = struct.unpack(">Q", data[2:10]), 10
        assert size >= 65536
    key = data[at : at + 4]
    payload = data[at + 4 :]
    assert len(payload) == size
    tiled = np.resize(np.frombuffer(key, np.uint8), size)
    return at + 4, key, (np.frombuffer(payload, np.uint8) ^ tiled).tobytes()


def observation(rng, height=480, width=640) -> dict:
    return {
        "observation.state": rng.random(6).astype(np.float32),
        "observation.images.front": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "task": "put the red cube in the blue bowl",
        "request_id": 7,
    }


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\x01\x02\x03\x04", b"\xff\x10\xa5\x5a", None])
def test_an_arms_observation_unmasks_to_what_codec_encode_means(key):
    message = observation(np.random.default_rng(1))
    _, sent_key, payload = parse(masked_frame(message, key))
    if key is not None:
        assert sent_key == key
    same(codec.decode_map(payload), codec.decode_map(bytes(codec.encode(message))))
    same(msgpack_numpy.unpackb(payload), message)


def test_large_arrays_start_on_a_32_bit_boundary_of_the_payload():
    rng = np.random.default_rng(2)
    for name in ("a", "observation.images.front", "x" * 40, "y" * 300):
        message = {name: rng.integers(0, 256, (300, 301, 3), dtype=np.uint8), "state": rng.random(6)}
        _, _, payload = parse(masked_frame(message))
        data = message[name].tobytes()
        at = payload.index(data)
        assert at % 4 == 0, (name, at)
        same(codec.decode_map(payload), message)


@pytest.mark.parametrize("size", [0, 5, 125, 126, 1000, 65535, 65536, LARGE + 3, 3 * LARGE + 1])
def test_every_size_gets_the_shortest_length_field_and_decodes(size):
    rng = np.random.default_rng(size)
    message = {"blob": rng.integers(0, 256, size, dtype=np.uint8), "odd": rng.integers(0, 256, size + 1, dtype=np.uint8).tobytes()}
    _, _, payload = parse(masked_frame(message))
    decoded = codec.decode_map(payload)
    np.testing.assert_array_equal(decoded["blob"], message["blob"])
    assert decoded["odd"] == message["odd"]


def test_views_and_other_dtypes_travel_as_their_values():
    rng = np.random.default_rng(3)
    base = rng.random((200, 300, 4))
    message = {
        "strided": base[:, ::2, :3],  # not contiguous: sent as its values
        "f16": base.astype(np.float16)[..., 0],
        "shifted": np.frombuffer(rng.integers(0, 256, 4 * 70000 + 1, dtype=np.uint8).tobytes(), np.uint8)[1:],
        "nested": {"k": np.arange(5)},
        "flag": True,
    }
    _, _, payload = parse(masked_frame(message))
    decoded = codec.decode_map(payload)
    np.testing.assert_array_equal(decoded["strided"], message["strided"])
    np.testing.assert_array_equal(decoded["f16"], message["f16"])
    np.testing.assert_array_equal(decoded["shifted"], message["shifted"])
    np.testing.assert_array_equal(decoded["nested"]["k"], np.arange(5))
    assert decoded["flag"] is True


def test_disallowed_dtypes_and_bad_keys_are_refused_before_anything_is_sent():
    with pytest.raises(Exception, match="not allowed"):
        masked_frame({"c": np.zeros(LARGE, np.complex64)})
    with pytest.raises(ValueError, match="4 bytes"):
        masked_frame({"a": 1}, b"\x00")
    with pytest.raises(TypeError, match="keys must be text"):
        masked_frame({1: np.zeros(LARGE, np.uint8)})
