"""A small synchronous client for the rewarder service.

``RewarderClient`` satisfies the ``vla.rewarder.Rewarder`` protocol (``threshold`` and
``score(frames, goal) -> Score``), so calibration and training code can use a remote rewarder
exactly like an in-process one.

    client = RewarderClient("http://gpu-host:18080", api_key=os.environ.get("VLA_API_KEY"))
    result = client.score([frame], "put the red cube in the blue bowl", episode_id="ep-7")

Frames go as PNG (default) or JPEG in base64 JSON, or as raw uint8 arrays in msgpack
(``encoding="msgpack"``: no image codec on either side, larger bodies). The connection is
kept alive per thread; connection failures and 502/503 answers are retried with backoff.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

import numpy as np

from vla.rewarder import Score
from vla.rewarding.errors import RewarderError
from vla.rewarding.frames import to_base64

RETRY_STATUSES = (502, 503)


def as_frame_list(frames: Any) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            return [frames]
        if frames.ndim == 4:
            return list(frames)
        raise ValueError(f"frames must be HxWx3 or NxHxWx3, got shape {frames.shape}")
    frames = list(frames)
    if not frames:
        raise ValueError("expected at least one frame")
    return [np.asarray(f) for f in frames]


class RewarderClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:18080",
        api_key: str | None = None,
        timeout: float = 60.0,
        encoding: str = "png",
        retries: int = 2,
        backoff_s: float = 0.5,
    ):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"rewarder URL must be http:// or https://, got {url!r}")
        if encoding not in ("png", "jpeg", "msgpack"):
            raise ValueError(f"encoding must be png, jpeg or msgpack, got {encoding!r}")
        self.url = url
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.encoding = encoding
        self.retries = retries
        self.backoff_s = backoff_s
        self._local = threading.local()
        self._threshold: float | None = None

    # ------------------------------------------------------------------ transport
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        self._drop_connection()

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, str, bytes]:
        """One HTTP exchange, retried on connection loss and 502/503; returns (status, content type, body)."""
        headers = {}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        if self.api_key:
            headers["Authorization"] = f"Api-Key {self.api_key}"
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                conn = self._connection()
                conn.request(method, self._prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop_connection()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop_connection()
                last_error = exc
                continue
            if resp.status in RETRY_STATUSES and attempt < self.retries:
                last_error = _error_from(resp.status, data)
                continue
            return resp.status, resp.getheader("Content-Type", ""), data
        if isinstance(last_error, RewarderError):
            raise last_error
        raise ConnectionError(f"rewarder at {self.url} is unreachable: {last_error}") from last_error

    def _json_call(self, method: str, path: str, payload: Any = None, msgpack_body: bytes | None = None) -> Any:
        if msgpack_body is not None:
            status, _, data = self.request(method, path, msgpack_body, "application/msgpack")
        elif payload is not None:
            status, _, data = self.request(method, path, json.dumps(payload).encode(), "application/json")
        else:
            status, _, data = self.request(method, path)
        if status >= 400:
            raise _error_from(status, data)
        return json.loads(data)

    # ------------------------------------------------------------------ routes
    def health(self) -> dict:
        status, _, data = self.request("GET", "/healthz")
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise RewarderError("bad_reply", f"/healthz answered {status} with non-JSON body", status) from None

    def wait_ready(self, timeout: float = 120.0, poll_s: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if last.get("status") == "ready":
                    return last
                if last.get("status") == "failed":
                    raise RewarderError("failed", f"rewarder failed to load: {last.get('error')}", 503)
            except ConnectionError as exc:
                last = exc
            time.sleep(poll_s)
        raise TimeoutError(f"rewarder at {self.url} not ready after {timeout:.0f}s (last: {last})")

    def metrics(self) -> str:
        status, _, data = self.request("GET", "/metrics")
        if status >= 400:
            raise _error_from(status, data)
        return data.decode()

    @property
    def threshold(self) -> float:
        if self._threshold is None:
            self._threshold = float(self.wait_ready(timeout=self.timeout)["threshold"])
        return self._threshold

    def _item(self, frames: Any, goal: str, episode_id: str | None, reset: bool) -> dict:
        frames = as_frame_list(frames)
        if self.encoding == "msgpack":
            shapes = {f.shape for f in frames}
            encoded: Any = np.stack(frames) if len(shapes) == 1 else list(frames)
        else:
            encoded = [to_base64(np.asarray(f, dtype=np.uint8), self.encoding) for f in frames]
        item: dict = {"goal": goal, "frames": encoded}
        if episode_id is not None:
            item["episode_id"] = episode_id
        if reset:
            item["reset"] = True
        return item

    def _post(self, path: str, obj: dict) -> Any:
        if self.encoding == "msgpack":
            from vla.protocol.codec import encode_bytes

            return self._json_call("POST", path, msgpack_body=encode_bytes(obj))
        return self._json_call("POST", path, payload=obj)

    def score_reply(self, frames: Any, goal: str, episode_id: str | None = None, reset: bool = False) -> dict:
        """The service's whole reply (score, raw_score, success, threshold, details, ...)."""
        return self._post("/score", self._item(frames, goal, episode_id, reset))

    def score(self, frames: Any, goal: str, episode_id: str | None = None, reset: bool = False) -> Score:
        return _to_score(self.score_reply(frames, goal, episode_id, reset))

    def score_batch(self, items: Iterable[tuple[Any, str]]) -> list[Score]:
        body = {"items": [self._item(frames, goal, None, False) for frames, goal in items]}
        return [_to_score(r) for r in self._post("/score/batch", body)["results"]]


def _to_score(reply: dict) -> Score:
    details = dict(reply.get("details") or {})
    for key in ("raw_score", "threshold", "rewarder", "episode_id"):
        if key in reply:
            details.setdefault(key, reply[key])
    return Score(score=float(reply["score"]), success=bool(reply["success"]), details=details)


def _error_from(status: int, data: bytes) -> RewarderError:
    try:
        err = json.loads(data)["error"]
        return RewarderError(str(err["code"]), str(err["message"]), status)
    except Exception:
        text = data[:200].decode("utf-8", "replace")
        return RewarderError("http_error", f"HTTP {status}: {text}", status)
