"""Request checks against a metadata contract, replies, errors, and JPEG frames."""

from __future__ import annotations

import numpy as np
import pytest

from vla.policy import CameraContract, PolicyInfo
from vla.protocol.errors import ProtocolError
from vla.protocol.jpeg import decode_jpeg, encode_jpeg, jpeg_size
from vla.protocol.messages import check_chunk, check_request, make_metadata

INFO = PolicyInfo(
    name="t", cameras=(CameraContract("front", (48, 64, 3)), CameraContract("wrist", (24, 32, 3))), state_dim=6, action_dim=6, horizon=10, supports_rtc=True
)
META = make_metadata(INFO, max_batch=4, max_message_bytes=1 << 20, jpeg=True)


def good(**extra):
    request = {
        "observation.state": np.linspace(-1, 1, 6).astype(np.float32),
        "observation.images.front": np.full((48, 64, 3), 7, np.uint8),
        "observation.images.wrist": np.zeros((24, 32, 3), np.uint8),
        "task": "lift the yellow cube",
    }
    request.update(extra)
    return request


def code_of(message) -> str:
    with pytest.raises(ProtocolError) as info:
        check_request(message, META)
    return info.value.code


def test_metadata_frame_fields():
    assert META["protocol"] == "vla/1"
    assert META["cameras"] == {"front": [48, 64, 3], "wrist": [24, 32, 3]}
    assert (META["state_dim"], META["action_dim"], META["horizon"]) == (6, 6, 10)
    assert META["capabilities"] == {"batching": True, "rtc": True, "jpeg": True}
    assert META["max_message_bytes"] == 1 << 20


def test_a_full_request_passes_and_keeps_optional_fields():
    prev = np.zeros((7, 6), np.float64)
    request = check_request(
        good(timestamp=12.5, inference_delay=3, prev_chunk=prev, session="arm1", reset=True, request_id=9), META
    )
    obs = request.observation
    assert obs["observation.state"].dtype == np.float32
    assert obs["prev_chunk"].dtype == np.float32 and obs["prev_chunk"].shape == (7, 6)
    assert obs["inference_delay"] == 3 and obs["session"] == "arm1" and obs["reset"] is True
    assert (request.request_id, request.timestamp, request.reset) == (9, 12.5, True)
    assert obs["task"] == "lift the yellow cube"


@pytest.mark.parametrize(
    "mutate,code",
    [
        (lambda m: m.pop("observation.state"), "missing_key"),
        (lambda m: m.pop("observation.images.wrist"), "missing_key"),
        (lambda m: m.update(extra=1), "unknown_key"),
        (lambda m: m.update({"observation.images.side": np.zeros((48, 64, 3), np.uint8)}), "unknown_key"),
        (lambda m: m.update({"observation.state": [0.0] * 6}), "bad_type"),
        (lambda m: m.update({"observation.state": np.zeros(7, np.float32)}), "bad_shape"),
        (lambda m: m.update({"observation.state": np.array([np.nan] * 6)}), "bad_value"),
        (lambda m: m.update({"observation.state": np.zeros(6, bool)}), "bad_dtype"),
        (lambda m: m.update({"observation.images.front": np.zeros((48, 64, 3), np.float32)}), "bad_dtype"),
        (lambda m: m.update({"observation.images.front": np.zeros((64, 48, 3), np.uint8)}), "bad_shape"),
        (lambda m: m.update({"observation.images.front": "pixels"}), "bad_type"),
        (lambda m: m.update({"observation.images.front": b"\xff\xd8" + b"\x00" * 10**5}), "too_large"),
        (lambda m: m.update(task=3), "bad_type"),
        (lambda m: m.update(task="x" * 5000), "too_large"),
        (lambda m: m.update(timestamp="now"), "bad_type"),
        (lambda m: m.update(timestamp=float("inf")), "bad_type"),
        (lambda m: m.update(inference_delay=1.5), "bad_type"),
        (lambda m: m.update(inference_delay=True), "bad_type"),
        (lambda m: m.update(inference_delay=-1), "bad_value"),
        (lambda m: m.update(inference_delay=11), "bad_value"),
        (lambda m: m.update(prev_chunk=np.zeros((5, 7), np.float32)), "bad_shape"),
        (lambda m: m.update(prev_chunk=np.zeros(6, np.float32)), "bad_shape"),
        (lambda m: m.update(session=5), "bad_type"),
        (lambda m: m.update(reset="yes"), "bad_type"),
        (lambda m: m.update(request_id="7"), "bad_type"),
        (lambda m: m.update({"observation.environment_state": np.zeros((2, 2), np.float32)}), "bad_shape"),
    ],
)
def test_bad_requests_name_their_problem(mutate, code):
    message = good()
    mutate(message)
    assert code_of(message) == code


def test_jpeg_refused_when_the_server_cannot_decode_it():
    meta = dict(META, capabilities={"batching": True, "rtc": True, "jpeg": False})
    with pytest.raises(ProtocolError) as info:
        check_request(good(**{"observation.images.front": encode_jpeg(np.zeros((48, 64, 3), np.uint8))}), meta)
    assert info.value.code == "jpeg_unsupported"


def test_check_chunk():
    assert check_chunk([[0.0] * 6] * 3, 6).dtype == np.float32
    for bad in (np.zeros((3, 5)), np.zeros(6), np.zeros((0, 6)), np.full((2, 6), np.inf), "abc"):
        with pytest.raises(ProtocolError) as info:
            check_chunk(bad, 6)
        assert info.value.code == "bad_policy_output"


def test_jpeg_roundtrip_keeps_rgb_order():
    image = np.zeros((48, 64, 3), np.uint8)
    image[..., 0] = 200  # red
    data = encode_jpeg(image, quality=95)
    assert jpeg_size(data) == (48, 64)
    out = decode_jpeg(data, (48, 64, 3))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[..., 0].mean()) - 200) < 4 and out[..., 2].mean() < 4


def test_jpeg_size_is_checked_before_decoding():
    """A small JPEG that declares a huge frame must be refused from its header alone."""
    data = bytearray(encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
    with pytest.raises(ProtocolError) as info:
        decode_jpeg(bytes(data), (24, 32, 3))
    assert info.value.code == "bad_shape"
    for broken in (b"not a jpeg", b"\xff\xd8\xff", bytes(data[:20]), b"\xff\xd8" + b"\x00" * 50):
        with pytest.raises(ProtocolError) as info:
            decode_jpeg(broken, (48, 64, 3))
        assert info.value.code == "bad_jpeg"
