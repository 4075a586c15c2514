"""2,000+ malformed messages over real loopback sockets while a well-behaved arm keeps being served.

Every malformed message must get an error frame (with a code and a message) or a close with a
reason; never an action chunk, never a crash. Meanwhile another connection sends valid requests
and checks every answer against the chunk its own state calls for. Generation is seeded random
(reproducible) across the categories the issue names.
"""

from __future__ import annotations

import asyncio
import collections
import random

import msgpack
import numpy as np
import websockets

from vla.protocol.client import PolicyClient
from vla.protocol.codec import decode, encode_bytes
from vla.protocol.jpeg import encode_jpeg
from vla.serving.server import PolicyServer
from vla.testing.policies import expected_chunk

CAMERAS = {"front": [48, 64, 3], "wrist": [24, 32, 3]}
LIMIT = 200_000  # bytes; small so that oversized messages are cheap to make
PER_CONNECTION = 520
CONNECTIONS = 4


def valid(rng: random.Random) -> dict:
    msg = {
        "observation.state": np.array([rng.uniform(-1, 1) for _ in range(6)], np.float32),
        "task": "put the red cube in the blue bowl",
        "request_id": rng.randrange(1 << 30),
    }
    for name, shape in CAMERAS.items():
        msg[f"observation.images.{name}"] = np.full(shape, rng.randrange(256), np.uint8)
    return msg


def ndarray_map(data, dtype, shape) -> dict:
    return {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}


def as_wire(msg: dict) -> dict:
    """The request with arrays already in their wire form, so single fields can be corrupted."""
    out = {}
    for key, value in msg.items():
        if isinstance(value, np.ndarray):
            out[key] = ndarray_map(value.tobytes(), value.dtype.str, list(value.shape))
        else:
            out[key] = value
    return out


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


REQUIRED = ["observation.state", "observation.images.front", "observation.images.wrist"]
WRONG_VALUES = [None, 1, -5, 2.5, True, "text", b"bytes", [1, 2, 3], {"a": 1}, [], {}]


def malformed(rng: random.Random, kind: str) -> bytes | str:
    msg = valid(rng)
    wire = as_wire(msg)
    key = rng.choice(REQUIRED)
    if kind == "truncated":
        data = encode_bytes(msg)
        return data[: rng.randrange(0, len(data))]
    if kind == "random_bytes":
        return rng.randbytes(rng.randrange(0, 3000))
    if kind == "object_dtype":
        wire[key] = ndarray_map(pack([1, 2]) * 4, rng.choice(["|O", "O", "object", "|O8"]), [1])
        return pack(wire)
    if kind == "void_dtype":
        wire[key] = ndarray_map(b"\x00" * 48, rng.choice(["|V8", "V48", "[('a','<f4')]", "|V1"]), [6])
        return pack(wire)
    if kind == "other_dtype":
        wire[key] = ndarray_map(b"\x00" * 48, rng.choice(["<c8", ">f4", "<M8[s]", "<U2", "|S8", "<f16", "qq"]), [6])
        return pack(wire)
    if kind == "shape_mismatch":
        arr = msg[key]
        shape = list(arr.shape)
        shape[rng.randrange(len(shape))] += rng.choice([-1, 1, 7])
        wire[key] = ndarray_map(arr.tobytes(), arr.dtype.str, shape)
        return pack(wire)
    if kind == "data_truncated":
        arr = msg[key]
        wire[key] = ndarray_map(arr.tobytes()[: rng.randrange(arr.nbytes)], arr.dtype.str, list(arr.shape))
        return pack(wire)
    if kind == "huge_shape":
        wire[key] = ndarray_map(b"\x00" * 24, "<f4", rng.choice([[2**62, 2**62], [-1, 6], [2**31] * 8, [1] * 40]))
        return pack(wire)
    if kind == "ndarray_fields":
        arr = msg[key]
        fields = ndarray_map(arr.tobytes(), arr.dtype.str, list(arr.shape))
        choice = rng.randrange(5)
        if choice == 0:
            del fields[rng.choice([b"data", b"dtype", b"shape"])]
        elif choice == 1:
            fields[b"extra"] = 1
        elif choice == 2:
            fields[b"data"] = "not bytes"
        elif choice == 3:
            fields[b"shape"] = "6"
        else:
            fields[b"__ndarray__"] = 0
        wire[key] = fields
        return pack(wire)
    if kind == "oversized":
        return rng.choice([rng.randbytes(LIMIT + rng.randrange(1, 50_000)), pack(wire | {"task": "x" * (LIMIT + 10)})])
    if kind == "missing_key":
        for k in rng.sample(REQUIRED, rng.randrange(1, len(REQUIRED) + 1)):
            del wire[k]
        return pack(wire)
    if kind == "extra_key":
        wire[rng.choice(["extra", "observation.images.side", "__ctrl__", "actions", "observation.state2", "x" * 300])] = 1
        return pack(wire)
    if kind == "wrong_type":
        target = rng.choice(REQUIRED + ["task", "timestamp", "inference_delay", "prev_chunk", "session", "reset", "request_id"])
        wrong = rng.choice(WRONG_VALUES)
        # make sure the value is really wrong for the key (a bool is a valid `reset`, None a valid... nothing)
        if target == "reset" and isinstance(wrong, bool):
            wrong = "yes"
        if target == "task" and isinstance(wrong, str):
            wrong = 7
        if target == "session" and isinstance(wrong, str):
            wrong = [1]
        if target == "timestamp" and isinstance(wrong, (int, float)) and not isinstance(wrong, bool):
            wrong = "soon"
        if target == "inference_delay" and isinstance(wrong, int) and not isinstance(wrong, bool) and 0 <= wrong <= 10:
            wrong = -5
        if target == "request_id" and isinstance(wrong, int) and not isinstance(wrong, bool):
            wrong = 1.5
        if target in REQUIRED and isinstance(wrong, bytes):
            wrong = 3  # bytes is a (JPEG) image; covered by bad_jpeg
        if target == "observation.state" and isinstance(wrong, bytes):
            wrong = 3
        wire[target] = wrong
        return pack(wire)
    if kind == "bad_values":
        choice = rng.randrange(4)
        if choice == 0:
            wire["observation.state"] = as_wire({"s": np.array([np.nan] * 6, np.float32)})["s"]
        elif choice == 1:
            wire["inference_delay"] = rng.choice([-1, 11, 10**6])
        elif choice == 2:
            wire["prev_chunk"] = as_wire({"p": np.zeros((3, 5), np.float32)})["p"]
        else:
            wire["observation.state"] = as_wire({"s": np.zeros(rng.choice([0, 5, 7, 60]), np.float32)})["s"]
        return pack(wire)
    if kind == "bad_jpeg":
        image_key = rng.choice(REQUIRED[1:])
        choice = rng.randrange(3)
        if choice == 0:
            wire[image_key] = b"\xff\xd8\xff" + rng.randbytes(rng.randrange(0, 500))
        elif choice == 1:
            wire[image_key] = encode_jpeg(np.zeros((96, 128, 3), np.uint8))  # wrong size
        else:
            wire[image_key] = rng.randbytes(rng.randrange(1, 200))
        return pack(wire)
    if kind == "not_a_map":
        return pack(rng.choice([[1, 2, 3], 5, "text", None, 2.5, b"bytes", [wire]]))
    if kind == "text_frame":
        return rng.choice(["hello", "{}", "\x00" * 10, "é" * 100])
    if kind == "deep_nesting":
        depth = rng.choice([200, 2000, 100_000])
        return b"\x91" * depth + b"\xc0"
    if kind == "ext_types":
        wire["task"] = msgpack.ExtType(rng.randrange(0, 127), rng.randbytes(8))
        return pack(wire)
    if kind == "bad_keys":
        return b"\x81\x01\x02" if rng.random() < 0.5 else pack({b"\xff\xfe": 1, "observation.state": 1})
    raise AssertionError(kind)


KINDS = [
    "truncated", "random_bytes", "object_dtype", "void_dtype", "other_dtype", "shape_mismatch", "data_truncated",
    "huge_shape", "ndarray_fields", "oversized", "missing_key", "extra_key", "wrong_type", "bad_values",
    "bad_jpeg", "not_a_map", "text_frame", "deep_nesting", "ext_types", "bad_keys",
]


async def fuzz_connection(url: str, seed: int, outcomes: collections.Counter, codes: collections.Counter):
    rng = random.Random(seed)
    ws = await websockets.connect(url, max_size=None, compression=None)
    await ws.recv()  # metadata
    for i in range(PER_CONNECTION):
        kind = KINDS[(i + seed) % len(KINDS)]
        message = malformed(rng, kind)
        try:
            await ws.send(message)
            raw = await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            close = exc.rcvd
            assert close is not None and close.reason, f"{kind}: closed without a reason ({exc})"
            outcomes["closed"] += 1
            codes[f"close {close.code}"] += 1
            ws = await websockets.connect(url, max_size=None, compression=None)
            await ws.recv()
            continue
        reply = decode(raw)
        assert "actions" not in reply, f"{kind}: a malformed message got actions"
        error = reply["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], kind
        outcomes["error_frame"] += 1
        codes[error["code"]] += 1
    await ws.close()


async def good_arm(url: str, stop: asyncio.Event, jpeg: bool) -> int:
    rng = random.Random(99)
    client = await PolicyClient.connect(url, jpeg_quality=90 if jpeg else None)
    answered = 0
    while not stop.is_set():
        msg = valid(rng)
        reply = await client.infer(msg)
        np.testing.assert_allclose(reply["actions"], expected_chunk(msg["observation.state"], horizon=10), atol=1e-6)
        assert reply["request_id"] == msg["request_id"]
        answered += 1
    await client.close()
    return answered


def test_malformed_messages_never_hurt_the_server_or_other_clients(helpers, run_async):
    policy = helpers.small_policy(cameras=CAMERAS)

    async def scenario():
        async with PolicyServer(policy, port=0, max_message_bytes=LIMIT, max_wait_ms=1) as server:
            await server.wait_settled(5)
            stop = asyncio.Event()
            arms = [asyncio.create_task(good_arm(server.url, stop, jpeg)) for jpeg in (False, True)]
            outcomes: collections.Counter = collections.Counter()
            codes: collections.Counter = collections.Counter()
            await asyncio.gather(*(fuzz_connection(server.url, seed, outcomes, codes) for seed in range(CONNECTIONS)))
            stop.set()
            answered = await asyncio.gather(*arms)
            # the server is still fine for a newcomer
            client = await PolicyClient.connect(server.url)
            reply = await client.infer(valid(random.Random(1)))
            assert reply["actions"].shape == (10, 6)
            await client.close()
            return outcomes, codes, answered, _error_counts(server)

    outcomes, codes, answered, errors = run_async(scenario(), timeout=150)
    print(f"outcomes {dict(outcomes)}; codes {dict(codes)}; good answers {answered}")
    total = outcomes["error_frame"] + outcomes["closed"]
    assert total == PER_CONNECTION * CONNECTIONS >= 2000
    assert min(answered) >= 20, f"well-behaved arms were starved: {answered}"
    # error frames are the rule; closes only for messages over the size limit
    assert set(k for k in codes if k.startswith("close")) <= {"close 1009"}, codes
    assert outcomes["closed"] == codes["close 1009"] > 0
    for code in ("bad_msgpack", "bad_dtype", "bad_ndarray", "missing_key", "unknown_key", "bad_type", "bad_frame",
                 "bad_message", "bad_jpeg", "bad_value", "bad_shape"):
        assert codes[code] > 0, f"no {code} among {codes}"
    assert sum(errors.values()) == outcomes["error_frame"]


def _error_counts(server) -> dict[str, float]:
    """Error frames and refusals by code, from the server's Prometheus registry."""
    counts: dict[str, float] = {}
    for family in server.metrics.registry.collect():
        if family.name == "vla_policy_errors":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    code = sample.labels["code"]
                    counts[code] = counts.get(code, 0) + sample.value
    return counts
