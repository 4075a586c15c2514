"""The asyncio policy client that `vla run` uses (and anyone else who wants chunks from `vla serve`).

It also talks to openpi policy servers: they send a metadata map first and answer with
``actions``, which is all this client relies on (``protocol`` in the metadata tells a vla
server apart).

    client = await PolicyClient.connect("ws://gpu-host:8080", api_key=key, arm="arm01")
    reply = await client.infer({"observation.state": q, "observation.images.front": rgb, "task": goal})
    reply["actions"]  # (H, A) float32

``wss://`` URLs verify the server against the system's CA store, or against ``ca_file``.
The websocket layer is picows, as on the server: a 1.8 MB observation goes out with one copy
into the masked frame and replies are decoded in the callback that receives them.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import ssl as ssl_module
from typing import Any

import numpy as np
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSProtocolError, WSTransport, ws_connect

from vla.protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_map, encode
from vla.protocol.errors import BAD_POLICY_OUTPUT, PolicyError, ProtocolError
from vla.protocol.frames import MessageAssembler
from vla.protocol.memory import keep_large_buffers
from vla.protocol.messages import IMAGE_PREFIX

UNAUTHORIZED = "unauthorized"


class _Closed:
    """Why the connection ended, as the client reports it."""

    def __init__(self, transport: WSTransport | None):
        handshake = getattr(transport, "close_handshake", None) if transport is not None else None
        info = None
        if handshake is not None:
            info = handshake.recv or handshake.sent
        if info is None:
            self.text = "connection lost"
        else:
            code = info.code.value if hasattr(info.code, "value") else int(info.code)
            self.text = f"closed with code {code}" + (f": {info.reason}" if info.reason else "")


class _Listener(WSListener):
    """Collects whole messages (binary decoded here, text kept as text) for the client."""

    def __init__(self, max_message_bytes: int):
        super().__init__()
        self.max_message_bytes = max_message_bytes
        self.messages: collections.deque = collections.deque()  # dict | str | ProtocolError
        self.waiter: asyncio.Future | None = None
        self.transport: WSTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._assembler = MessageAssembler(max_message_bytes)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(_Closed(transport).text)
        self._wake()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind in (WSMsgType.PING, WSMsgType.PONG):
            return
        try:
            message = self._assembler.feed(frame)
        except WSProtocolError as exc:
            transport.send_close(exc.args[0], str(exc.args[1]).encode())
            transport.disconnect()
            return
        if message is not None:
            self._deliver(*message)

    def _deliver(self, data: memoryview, text: bool) -> None:
        if text:  # openpi servers send a traceback as text before closing
            self.messages.append(bytes(data).decode("utf-8", "replace"))
        else:
            try:
                self.messages.append(decode_map(data, self.max_message_bytes))
            except ProtocolError as exc:
                self.messages.append(exc)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next_message(self) -> Any:
        """The next whole message; ``ConnectionError`` once the connection is gone."""
        while not self.messages:
            if self.closed.done():
                raise ConnectionError(f"policy server connection {self.closed.result()}")
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.messages.popleft()


class PolicyClient:
    """One websocket connection to a policy server; one request in flight at a time."""

    def __init__(
        self,
        transport: WSTransport,
        listener: _Listener,
        metadata: dict[str, Any],
        jpeg_quality: int | dict[str, int] | None = None,
    ):
        self.transport = transport
        self.listener = listener
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
        ca_file: str | None = None,
        arm: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> PolicyClient:
        """Connect, read the server's metadata frame, and return the client.

        ``jpeg_quality`` sends camera frames as JPEG (1-100) when the server decodes JPEG: one
        quality for every camera, or {camera: quality} for some (the others stay raw). ``arm``
        names this client in the server's per-arm metrics. For ``wss://``, ``ssl`` (a context)
        or ``ca_file`` (PEM) say whom to trust; neither: the system's CA store.

        Raises ``PolicyError("unauthorized", ...)`` when the server refuses the key and
        ``ConnectionError`` when it cannot be reached or hangs up before its metadata.
        """
        from picows import WSHandshakeError

        keep_large_buffers()
        headers = {"User-Agent": "vla-policy-client"}
        if api_key:
            headers["Authorization"] = f"Api-Key {api_key}"
        if arm:
            headers["X-Vla-Arm"] = arm
        if ssl is None and ca_file is not None and url.startswith("wss:"):
            from vla.service.net import client_ssl_context

            ssl = client_ssl_context(ca_file)
        try:
            transport, listener = await asyncio.wait_for(
                ws_connect(
                    lambda: _Listener(max_message_bytes),
                    url,
                    ssl_context=ssl,
                    websocket_handshake_timeout=open_timeout,
                    extra_headers=headers,
                    max_frame_size=max_message_bytes,
                    max_redirects=0,
                    read_buffer_init_size=64 * 1024,
                ),
                open_timeout,
            )
        except WSHandshakeError as exc:
            response = exc.response
            status = int(response.status) if response is not None else 0
            body = (exc.raw_body or b"").decode("utf-8", "replace").strip()[:200]
            if status in (401, 403):
                raise PolicyError(UNAUTHORIZED, f"{url} refused the connection (HTTP {status}): {body}") from None
            raise ConnectionError(f"{url} refused the websocket handshake (HTTP {status or '?'}): {body or exc}") from None
        except (OSError, asyncio.TimeoutError, ssl_module.SSLError, ValueError) as exc:
            detail = str(exc) or ("timed out" if isinstance(exc, asyncio.TimeoutError) else "")
            raise ConnectionError(f"cannot connect to {url}: {type(exc).__name__}: {detail}") from None
        try:
            first = await asyncio.wait_for(listener.next_message(), open_timeout)
        except ConnectionError:
            raise ConnectionError(f"{url} closed before sending its metadata ({listener.closed.result()})") from None
        except asyncio.TimeoutError:
            transport.disconnect()
            raise ConnectionError(f"{url} sent no metadata within {open_timeout:g} s") from None
        if isinstance(first, ProtocolError):
            transport.disconnect()
            raise first
        if not isinstance(first, dict):
            transport.disconnect()
            raise ProtocolError("bad_frame", "the server's metadata frame is text, expected msgpack")
        return cls(transport, listener, first, jpeg_quality)

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
            if self.listener.closed.done():
                raise ConnectionError(f"policy server connection {self.listener.closed.result()}")
            message = await self._prepare(obs)
            request_id = message.setdefault("request_id", next(self._ids)) if self.is_vla_server else None
            self.transport.send(WSMsgType.BINARY, encode(message))
            try:
                return await self._receive(request_id)
            except asyncio.CancelledError:
                # A vla server echoes request ids, so the late reply is skipped by the next call;
                # an openpi server does not, so the connection can no longer pair replies.
                if request_id is None:
                    await self.close()
                raise

    async def _receive(self, request_id: int | None) -> dict[str, Any]:
        while True:
            reply = await self.listener.next_message()
            if isinstance(reply, str):
                raise PolicyError("server_error", reply[:2000])
            if isinstance(reply, ProtocolError):
                raise reply
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

    @property
    def closed(self) -> bool:
        return self.listener.closed.done()

    async def wait_closed(self) -> None:
        """Return when the connection is closed (by either side or by a network failure)."""
        await asyncio.shield(self.listener.closed)

    async def close(self) -> None:
        if not self.listener.closed.done():
            if not self.transport.is_close_frame_sent:
                self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()
            try:
                await asyncio.wait_for(asyncio.shield(self.listener.closed), 2.0)
            except asyncio.TimeoutError:
                self.transport.disconnect(graceful=False)

    async def __aenter__(self) -> PolicyClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
