"""The asyncio policy client that `vla run` uses (and anyone else who wants chunks from `vla serve`).

It also talks to openpi policy servers: they send a metadata map first and answer with
``actions``, which is all this client relies on (``protocol`` in the metadata tells a vla
server apart).

    client = await PolicyClient.connect("ws://gpu-host:8080", api_key=key)
    reply = await client.infer({"observation.state": q, "observation.images.front": rgb, "task": goal})
    reply["actions"]  # (H, A) float32
"""

from __future__ import annotations

import asyncio
import itertools
import ssl as ssl_module
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from vla.protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_map, encode
from vla.protocol.memory import keep_large_buffers
from vla.protocol.errors import BAD_POLICY_OUTPUT, PolicyError, ProtocolError
from vla.protocol.messages import IMAGE_PREFIX

UNAUTHORIZED = "unauthorized"


def _closed_reason(exc: websockets.ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "connection lost"
    return f"closed with code {close.code}" + (f": {close.reason}" if close.reason else "")


class PolicyClient:
    """One websocket connection to a policy server; one request in flight at a time."""

    def __init__(
        self, connection: ClientConnection, metadata: dict[str, Any], jpeg_quality: int | dict[str, int] | None = None
    ):
        self.connection = connection
        self.metadata = metadata
        self.jpeg_quality = jpeg_quality
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        url: str,
        api_key: str | None = None,
        open_timeout: float = 5.0,
        *,
        jpeg_quality: int | dict[str, int] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> PolicyClient:
        """Connect, read the server's metadata frame, and return the client.

        ``jpeg_quality`` sends camera frames as JPEG (1-100) when the server decodes JPEG: one
        quality for every camera, or {camera: quality} for some (the others stay raw).

        Raises ``PolicyError("unauthorized", ...)`` when the server refuses the key and
        ``ConnectionError`` when it cannot be reached or hangs up before its metadata.
        """
        keep_large_buffers()
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        try:
            connection = await ws_connect(
                url,
                additional_headers=headers,
                compression=None,  # frames are images and floats: deflate costs time and saves little
                max_size=max_message_bytes,
                open_timeout=open_timeout,
                ssl=ssl,
                user_agent_header="vla-policy-client",
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace").strip()[:200] if exc.response.body else ""
            if status in (401, 403):
                raise PolicyError(UNAUTHORIZED, f"{url} refused the connection (HTTP {status}): {body}") from None
            raise ConnectionError(f"{url} refused the websocket handshake (HTTP {status}): {body}") from None
        except (OSError, TimeoutError, asyncio.TimeoutError, websockets.InvalidHandshake) as exc:
            raise ConnectionError(f"cannot connect to {url}: {type(exc).__name__}: {exc}") from None
        try:
            raw = await connection.recv()
        except websockets.ConnectionClosed as exc:
            raise ConnectionError(f"{url} closed before sending its metadata ({_closed_reason(exc)})") from None
        try:
            if isinstance(raw, str):
                raise ProtocolError("bad_frame", "the server's metadata frame is text, expected msgpack")
            metadata = decode_map(raw, max_message_bytes)
        except ProtocolError:
            await connection.close()
            raise
        return cls(connection, metadata, jpeg_quality)

    @property
    def is_vla_server(self) -> bool:
        return str(self.metadata.get("protocol", "")).startswith("vla/")

    async def _prepare(self, obs: dict[str, Any]) -> dict[str, Any]:
        """The message to send: camera frames become JPEG when asked for and the server takes them."""
        message = dict(obs)
        capabilities = self.metadata.get("capabilities") or {}
        if self.jpeg_quality is None or not capabilities.get("jpeg"):
            return message
        from vla.protocol.jpeg import encode_jpeg

        qualities = {}
        for key, value in obs.items():
            if key.startswith(IMAGE_PREFIX) and isinstance(value, np.ndarray):
                quality = self.jpeg_quality
                if isinstance(quality, dict):  # per camera; cameras not named stay raw
                    quality = quality.get(key[len(IMAGE_PREFIX) :])
                if quality is not None:
                    qualities[key] = int(quality)
        # OpenCV releases the GIL: cameras are encoded in parallel, off the caller's event loop.
        frames = await asyncio.gather(*(asyncio.to_thread(encode_jpeg, obs[k], q) for k, q in qualities.items()))
        message.update(zip(qualities, frames))
        return message

    async def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send one observation and return the reply (``actions`` as (H, A) float32).

        Raises ``PolicyError`` on an error frame (the connection stays usable) and
        ``ConnectionError`` when the connection is gone.
        """
        async with self._lock:
            message = await self._prepare(obs)
            request_id = message.setdefault("request_id", next(self._ids)) if self.is_vla_server else None
            data = encode(message)
            try:
                await self.connection.send(data)
            except websockets.ConnectionClosed as exc:
                raise ConnectionError(f"policy server connection {_closed_reason(exc)}") from None
            finally:
                del data
            try:
                return await self._receive(request_id)
            except asyncio.CancelledError:
                # A vla server echoes request ids, so the late reply is skipped by the next call;
                # an openpi server does not, so the connection can no longer pair replies.
                if request_id is None:
                    await self.connection.close()
                raise

    async def _receive(self, request_id: int | None) -> dict[str, Any]:
        while True:
            try:
                raw = await self.connection.recv()
            except websockets.ConnectionClosed as exc:
                raise ConnectionError(f"policy server connection {_closed_reason(exc)}") from None
            if isinstance(raw, str):  # openpi servers send a traceback as text before closing
                raise PolicyError("server_error", raw[:2000])
            reply = decode_map(raw)
            rid = reply.get("request_id")
            if request_id is not None and rid is not None and rid != request_id:
                continue  # the late answer to a request whose caller gave up
            error = reply.get("error")
            if error is not None:
                if isinstance(error, dict):
                    raise PolicyError(str(error.get("code", "error")), str(error.get("message", "")))
                raise PolicyError("error", str(error)[:2000])
            actions = reply.get("actions")
            if not isinstance(actions, np.ndarray) or actions.ndim != 2 or actions.dtype.kind not in "fiu":
                got = actions.shape if isinstance(actions, np.ndarray) else type(actions).__name__
                raise ProtocolError(BAD_POLICY_OUTPUT, f"reply has no (H, A) numeric 'actions' array (got {got})")
            reply["actions"] = actions.astype(np.float32, copy=False)
            return reply

    async def wait_closed(self) -> None:
        """Return when the connection is closed (by either side or by a network failure)."""
        await self.connection.wait_closed()

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> PolicyClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
