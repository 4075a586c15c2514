"""The rewarder HTTP service on a real loopback socket: scoring, batch, smoothing, auth, health,
metrics, and every kind of malformed input answered with a clear 4xx while the server keeps serving."""

from __future__ import annotations

import base64
import http.client
import json
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

from vla.protocol.codec import encode_bytes
from vla.rewarder import Score
from vla.rewarding.frames import encode_image, to_base64
from vla.rewarding.requests import Limits
from vla_heuristic.synthetic import TASK_GOALS, draw_scene

GOAL = TASK_GOALS["pick_place"]


def post(url, path, body, content_type="application/json", headers=None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    conn.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


def get(url, path):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), data


def png_header_only(width, height):
    """A PNG whose header claims width x height but whose data is a few bytes: a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def scenes():
    return {
        "success": draw_scene("pick_place", True, seed=1)[0],
        "failure": draw_scene("pick_place", False, seed=2)[0],
    }


def test_score_json_png_and_jpeg_match_in_process(serve, heuristic, scenes):
    with serve(lambda: heuristic, name="heuristic") as srv:
        for label, frame in scenes.items():
            expected = heuristic.score([frame], GOAL)
            status, reply = post(srv.url, "/score", {"goal": GOAL, "frames": [to_base64(frame, "png")]})
            assert status == 200, reply
            assert reply["score"] == pytest.approx(expected.score, abs=1e-9)
            assert reply["success"] is (label == "success") is expected.success
            assert reply["threshold"] == 0.5 and reply["rewarder"] == "heuristic" and reply["frames"] == 1
            assert reply["details"]["task"] == "pick_place"
            # a single frame under "frame", as a data URL, JPEG: same verdict
            data_url = "data:image/jpeg;base64," + to_base64(frame, "jpeg", 95)
            status, reply = post(srv.url, "/score", {"goal": GOAL, "frame": data_url})
            assert status == 200 and reply["success"] is (label == "success")


def test_score_msgpack_arrays_and_image_bytes(serve, heuristic, scenes):
    frame = scenes["success"]
    with serve(lambda: heuristic) as srv:
        # a whole clip as one (N, H, W, 3) uint8 array, openpi msgpack_numpy encoding
        clip = np.stack([scenes["failure"], frame])
        status, reply = post(srv.url, "/score", encode_bytes({"goal": GOAL, "frames": clip}), "application/msgpack")
        assert status == 200, reply
        assert reply["frames"] == 2 and reply["success"] is True
        # raw PNG bytes in a msgpack body
        body = encode_bytes({"goal": GOAL, "frames": [encode_image(scenes["failure"])]})
        status, reply = post(srv.url, "/score", body, "application/x-msgpack")
        assert status == 200 and reply["success"] is False


def test_batch_scores_each_item_in_order(serve, heuristic):
    items, expected = [], []
    for i, task in enumerate(["pick_place", "push_left", "lift", "pick_place"]):
        frames = draw_scene(task, i % 2 == 0, seed=10 + i, n_frames=2)
        items.append({"goal": TASK_GOALS[task], "frames": [to_base64(f) for f in frames]})
        expected.append(heuristic.score(frames, TASK_GOALS[task]).score)
    with serve(lambda: heuristic) as srv:
        status, reply = post(srv.url, "/score/batch", {"items": items})
        assert status == 200, reply
        assert [r["score"] for r in reply["results"]] == pytest.approx(expected)
        assert [r["details"]["task"] for r in reply["results"]] == ["pick_place", "push_left", "lift", "pick_place"]
        # one bad item refuses the batch and names the item
        items[1]["goal"] = "juggle"
        status, reply = post(srv.url, "/score/batch", {"items": items})
        assert status == 422 and reply["error"]["message"].startswith("items[1]: no heuristic rule for goal 'juggle'")
        items[2]["frames"] = ["***"]
        status, reply = post(srv.url, "/score/batch", {"items": items})
        assert status == 400 and reply["error"]["code"] == "bad_base64"
        assert "items[2].frames[0]" in reply["error"]["message"]


class Fixed:
    """A rewarder whose raw scores come from a list: the service's clamping and smoothing are under test."""

    threshold = 0.5

    def __init__(self, values):
        self.values = list(values)

    def score(self, frames, goal):
        value = self.values.pop(0)
        return Score(score=value, success=value >= 0.5, details={"raw": value, "arr": np.arange(2)})


def test_scores_are_clamped_and_nan_is_failure(serve, scenes):
    frame = [to_base64(scenes["success"])]
    with serve(lambda: Fixed([1.7, -0.3, float("nan")])) as srv:
        got = [post(srv.url, "/score", {"goal": "g", "frames": frame})[1] for _ in range(3)]
    assert [g["score"] for g in got] == [1.0, 0.0, 0.0]
    assert [g["success"] for g in got] == [True, False, False]
    assert got[0]["details"] == {"raw": 1.7, "arr": [0, 1]}


def test_ema_smoothing_per_episode(serve, scenes):
    frame = [to_base64(scenes["success"])]
    raw = [1.0, 0.0, 0.0, 1.0, 0.2]
    with serve(lambda: Fixed(raw), ema_alpha=0.5) as srv:
        def score(ep, reset=False):
            body = {"goal": "g", "frames": frame, "episode_id": ep}
            if reset:
                body["reset"] = True
            return post(srv.url, "/score", body)[1]
        a1, a2, b1, a3, a4 = score("a"), score("a"), score("b"), score("a"), score("a", reset=True)
    assert a1["score"] == 1.0 and a1["smoothed"] is True
    assert a2["score"] == pytest.approx(0.5) and a2["raw_score"] == 0.0 and a2["success"] is True  # 0.5 >= 0.5
    assert b1["score"] == 0.0  # another episode starts fresh
    assert a3["score"] == pytest.approx(0.75)  # 0.5 * 1.0 + 0.5 * 0.5
    assert a4["score"] == pytest.approx(0.2)  # reset forgets the history


def test_malformed_input_gets_clear_4xx_and_server_keeps_serving(serve, heuristic, scenes):
    good = {"goal": GOAL, "frames": [to_base64(scenes["success"])]}
    tiny_png = to_base64(np.zeros((4, 4, 3), np.uint8))
    cases = [
        ({"goal": GOAL, "frames": ["not base64!!"]}, "application/json", 400, "bad_base64", "frames[0]"),
        ({"goal": GOAL, "frames": [base64.b64encode(b"GIF89a....").decode()]}, "application/json", 400, "bad_image", "PNG or JPEG"),
        ({"goal": GOAL, "frames": [base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()]}, "application/json", 400, "bad_image", "cannot decode"),
        ({"goal": GOAL, "frames": [base64.b64encode(png_header_only(5000, 5000)).decode()]}, "application/json", 413, "image_too_large", "5000x5000"),
        ({"goal": GOAL, "frames": [tiny_png]}, "application/json", 400, "bad_image", "too small"),
        ({"frames": good["frames"]}, "application/json", 400, "missing_goal", "goal"),
        ({"goal": "", "frames": good["frames"]}, "application/json", 400, "missing_goal", "empty"),
        ({"goal": 42, "frames": good["frames"]}, "application/json", 400, "wrong_type", "goal"),
        ({"goal": GOAL}, "application/json", 400, "missing_frames", "frames"),
        ({"goal": GOAL, "frames": [123]}, "application/json", 400, "wrong_type", "int"),
        ({"goal": GOAL, "frames": []}, "application/json", 400, "no_frames", "at least one"),
        ({"goal": GOAL, "frames": good["frames"], "episode_id": 5}, "application/json", 400, "wrong_type", "episode_id"),
        ({"goal": GOAL, "frames": good["frames"], "reset": "yes"}, "application/json", 400, "wrong_type", "reset"),
        ({"goal": GOAL, "frames": good["frames"], "fps": 3}, "application/json", 400, "unknown_field", "fps"),
        (["not", "a", "map"], "application/json", 400, "wrong_type", "map"),
        (b"{not json", "application/json", 400, "bad_json", "JSON"),
        (b"[" * 100_000, "application/json", 400, "bad_json", "JSON"),
        (b"\xc1\xc1", "application/msgpack", 400, "bad_msgpack", "msgpack"),
        (encode_bytes({"goal": GOAL, "frames": np.zeros((64, 64, 3), np.float32)}), "application/msgpack", 400, "bad_dtype", "uint8"),
        (encode_bytes({"goal": GOAL, "frames": np.zeros((64, 64), np.uint8)}), "application/msgpack", 400, "bad_shape", "(H, W, 3)"),
        (good, "text/plain", 415, "unsupported_media_type", "application/json"),
        ({"goal": "fly to the moon", "frames": good["frames"]}, "application/json", 422, "rejected", "known"),
    ]
    with serve(lambda: heuristic) as srv:
        for body, ctype, status, code, words in cases:
            got_status, reply = post(srv.url, "/score", body, ctype)
            assert (got_status, reply["error"]["code"]) == (status, code), (body if not isinstance(body, bytes) else body[:40], reply)
            assert words in reply["error"]["message"], reply
            # and the next good request is served
            assert post(srv.url, "/score", good)[0] == 200
        assert post(srv.url, "/nope", good)[0] == 404
        _, _, metrics = get(srv.url, "/metrics")
        text = metrics.decode()
        assert 'vla_rewarder_errors_total{arm="unnamed",code="bad_base64",rewarder="test"} 1.0' in text
        assert 'vla_rewarder_requests_total{arm="unnamed",code="200",rewarder="test",route="/score"} %d.0' % len(cases) in text


def test_request_size_limits(serve, heuristic, scenes):
    frame = to_base64(scenes["success"])
    limits = Limits(max_frames=3, max_batch=2)
    with serve(lambda: heuristic, limits=limits, max_body_bytes=2_000_000) as srv:
        status, reply = post(srv.url, "/score", {"goal": GOAL, "frames": [frame] * 4})
        assert status == 413 and reply["error"]["code"] == "too_many_frames"
        status, reply = post(srv.url, "/score/batch", {"items": [{"goal": GOAL, "frames": [frame]}] * 3})
        assert status == 413 and reply["error"]["code"] == "batch_too_large"
        big = {"goal": GOAL, "frames": ["A" * 3_000_000]}
        status, reply = post(srv.url, "/score", big)
        assert status == 413 and reply["error"]["code"] == "body_too_large" and "2000000" in reply["error"]["message"]
        assert post(srv.url, "/score", {"goal": GOAL, "frames": [frame]})[0] == 200


def test_api_key(serve, heuristic, scenes):
    body = {"goal": GOAL, "frames": [to_base64(scenes["success"])]}
    with serve(lambda: heuristic, api_key="s3cret") as srv:
        status, reply = post(srv.url, "/score", body)
        assert status == 401 and "Api-Key" in reply["error"]["message"]
        status, reply = post(srv.url, "/score", body, headers={"Authorization": "Api-Key wrong"})
        assert status == 401 and reply["error"]["message"].startswith("wrong API key")
        assert post(srv.url, "/score", body, headers={"Authorization": "Api-Key s3cret"})[0] == 200
        assert post(srv.url, "/score", body, headers={"Authorization": "Bearer s3cret"})[0] == 200
        # health and metrics stay open for health checks and scrapers
        assert get(srv.url, "/healthz")[0] == 200
        assert get(srv.url, "/metrics")[0] == 200


def test_health_starting_ready_failed(serve, scenes):
    release = threading.Event()

    def slow_build():
        release.wait(10)
        return Fixed([0.9])

    body = {"goal": "g", "frames": [to_base64(scenes["success"])]}
    with serve(slow_build, wait=False) as srv:
        status, _, data = get(srv.url, "/healthz")
        assert status == 503 and json.loads(data)["status"] == "starting"
        status, reply = post(srv.url, "/score", body)
        assert status == 503 and reply["error"]["code"] == "not_ready"
        assert 'vla_rewarder_ready{rewarder="test"} 0.0' in get(srv.url, "/metrics")[2].decode()
        release.set()
        assert srv.service.wait_loaded(10)
        status, _, data = get(srv.url, "/healthz")
        health = json.loads(data)
        assert status == 200 and health["status"] == "ready" and health["threshold"] == 0.5
        assert post(srv.url, "/score", body)[0] == 200

    def broken():
        raise RuntimeError("weights not found at /models/x")

    with serve(broken) as srv:
        status, _, data = get(srv.url, "/healthz")
        health = json.loads(data)
        assert status == 503 and health["status"] == "failed" and "weights not found" in health["reason"]
        status, reply = post(srv.url, "/score", body)
        assert status == 503 and "weights not found" in reply["error"]["message"]


class Exploding:
    threshold = 0.5

    def score(self, frames, goal):
        if goal == "boom":
            raise RuntimeError("CUDA out of memory")
        return Score(0.8, True)


def test_rewarder_crash_is_5xx_and_server_survives(serve, scenes):
    frames = [to_base64(scenes["success"])]
    with serve(Exploding) as srv:
        status, reply = post(srv.url, "/score", {"goal": "boom", "frames": frames})
        assert status == 500 and reply["error"]["code"] == "rewarder_failed" and "CUDA out of memory" in reply["error"]["message"]
        assert post(srv.url, "/score", {"goal": "fine", "frames": frames})[1]["score"] == 0.8


def test_concurrent_clients(serve, heuristic):
    frames = {s: [to_base64(f) for f in draw_scene("push_left", s, seed=3)] for s in (True, False)}
    with serve(lambda: heuristic) as srv:
        def one(i):
            success = i % 2 == 0
            return success, post(srv.url, "/score", {"goal": TASK_GOALS["push_left"], "frames": frames[success]})
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(32)))
        for success, (status, reply) in results:
            assert status == 200 and reply["success"] is success
        _, _, metrics = get(srv.url, "/metrics")
        assert 'vla_rewarder_frames_total{arm="unnamed",rewarder="test"} 32.0' in metrics.decode()
