"""A small synchronous client for the rewarder service.

``RewarderClient`` satisfies the ``vla.rewarder.Rewarder`` protocol (``threshold`` and
``score(frames, goal) -> Score``), so calibration and training code can use a remote rewarder
exactly like an in-process one.

    client = RewarderClient("http://gpu-host:18080", api_key=os.environ.get("VLA_API_KEY"), arm="arm01")
    result = client.score([frame], "put the red cube in the blue bowl", episode_id="ep-7")

Frames go as PNG (default) or JPEG in base64 JSON, or as raw uint8 arrays in msgpack
(``encoding="msgpack"``: no image codec on either side, larger bodies). Transport is the kit's
httpx client (vla.service.httpclient): kept-alive connections, and connection failures and
502/503/504 answers retried with backoff.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

import numpy as np

from vla.rewarder import Score
from vla.rewarding.errors import RewarderError
from vla.rewarding.frames import to_base64


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
        *,
        arm: str | None = None,
        ca_file: str | None = None,
    ):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"rewarder URL must be http:// or https://, got {url!r}")
        if encoding not in ("png", "jpeg", "msgpack"):
            raise ValueError(f"encoding must be png, jpeg or msgpack, got {encoding!r}")
        self.url = url if "://" in url else f"http://{url}"
        self.api_key = api_key
        self.arm = arm
        self.timeout = timeout
        self.encoding = encoding
        self.retries = retries
        self.backoff_s = backoff_s
        self.ca_file = ca_file
        self._local = threading.local()  # httpx clients are not shared between threads here
        self._threshold: float | None = None

    # ------------------------------------------------------------------ transport
    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from vla.service.httpclient import Retry, make_client

            client = make_client(
                self.url.rstrip("/"), api_key=self.api_key, arm=self.arm, timeout=self.timeout,
                verify=self.ca_file or True,
                retry=Retry(attempts=self.retries + 1, backoff_s=self.backoff_s, max_backoff_s=max(4.0, self.backoff_s)),
            )
            self._local.client = client
        return client

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, str, bytes]:
        """One HTTP exchange, retried on connection loss and 502/503/504; returns (status, content type, body).

        Raises ``ConnectionError`` (naming the URL and cause) when the service cannot be reached.
        """
        from vla.service.httpclient import ServiceUnreachable

        headers = {"Content-Type": content_type or "application/json"} if body is not None else None
        try:
            response = self._client().request(method, path, content=body, headers=headers)
        except ServiceUnreachable as exc:
            raise ConnectionError(f"rewarder at {self.url} is unreachable: {exc.cause}") from None
        return response.status_code, response.headers.get("Content-Type", ""), response.content

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
