"""A vla policy backend that forwards to an openpi policy server (`vla serve --policy pi0-fast`).

This is the other way to drive openpi from vla: instead of `vla run` talking to openpi's
server directly (with the key map applied by the client), `vla serve` fronts it and gives
the arms vla's protocol (metadata with an observation contract, API keys, metrics), while
openpi's `serve_policy.py` keeps doing the inference. The wire to openpi is openpi's own:
a websocket, msgpack with numpy arrays as openpi-client's ``msgpack_numpy`` writes them
(``vla.protocol.codec`` is byte-compatible), metadata frame first, one observation per
request (openpi's server is unbatched, so a batch is sent one by one).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from vla.policy import CameraContract, PolicyInfo
from vla_openpi.adapter import from_openpi, to_openpi
from vla_openpi.config import OpenPIConfig


class OpenPIRemoteBackend:
    def __init__(self, config: OpenPIConfig, name: str = "openpi"):
        self.config = config
        self.name = name
        self._lock = threading.Lock()
        self._connection = None
        self._stack: contextlib.ExitStack | None = None
        self.server_metadata: dict[str, Any] | None = None

    def _connect(self):
        if self._connection is not None:
            return self._connection
        from websockets.sync.client import connect

        from vla.protocol.codec import decode_map

        headers = {"Authorization": f"Api-Key {self.config.api_key}"} if self.config.api_key else None
        stack = contextlib.ExitStack()  # websockets >= 17 wants connect() entered as a context
        try:
            connection = stack.enter_context(
                connect(
                    self.config.server_url,
                    additional_headers=headers,
                    compression=None,
                    max_size=None,
                    open_timeout=self.config.connect_timeout_s,
                )
            )
        except OSError as exc:
            raise ConnectionError(f"cannot reach the openpi server at {self.config.server_url}: {exc}") from None
        self.server_metadata = decode_map(connection.recv(), None)
        self._connection, self._stack = connection, stack
        return connection

    def info(self) -> PolicyInfo:
        return PolicyInfo(
            name=self.name,
            cameras=tuple(CameraContract(name, tuple(int(v) for v in shape)) for name, shape in self.config.cameras.items()),
            state_dim=self.config.state_dim,
            action_dim=self.config.keys.action_dim or 0,
            horizon=self.config.horizon,
            supports_rtc=False,
            max_batch=1,
            extra={"backend": "openpi", "server_url": self.config.server_url},
        )

    def warmup(self) -> None:
        self._connect()

    def reset(self) -> None:
        pass  # openpi's policies keep no per-episode state between requests

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        requests = [to_openpi(obs, self.config.keys) for obs in batch]
        with self._lock:
            return [self._call(request) for request in requests]

    def _call(self, request: dict[str, Any]) -> np.ndarray:
        import websockets

        from vla.protocol.codec import decode_map, encode

        connection = self._connect()
        try:
            connection.send(encode(request))
            raw = connection.recv()
        except websockets.ConnectionClosed as exc:
            self.close()
            raise ConnectionError(f"the openpi server closed the connection: {exc}") from None
        if isinstance(raw, str):
            # openpi's server sends a traceback as text before it closes on an error
            self.close()
            raise RuntimeError(f"the openpi server failed: {raw.strip().splitlines()[-1] if raw.strip() else raw}")
        return from_openpi(decode_map(raw, None), self.config.keys)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._connection, self._stack = None, None


def pi0_backend(config: OpenPIConfig) -> OpenPIRemoteBackend:
    return OpenPIRemoteBackend(config, name="openpi/pi0")


def pi0_fast_backend(config: OpenPIConfig) -> OpenPIRemoteBackend:
    return OpenPIRemoteBackend(config, name="openpi/pi0-fast")
