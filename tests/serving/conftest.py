"""Helpers: a real PolicyServer on a loopback port, in this test's event loop or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from vla.builtins import TimedPolicyConfig
from vla.serving.server import PolicyServer
from vla.testing.policies import TimedPolicy

SMALL_CAMERAS = {"front": [48, 64, 3], "wrist": [24, 32, 3]}


def small_policy(**overrides) -> TimedPolicy:
    settings = {"cameras": SMALL_CAMERAS, "horizon": 10}
    settings.update(overrides)
    return TimedPolicy(TimedPolicyConfig(**settings))


def observation(state, cameras=SMALL_CAMERAS, task: str = "lift the yellow cube", seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": np.asarray(state, np.float32), "task": task}
    for name, shape in cameras.items():
        obs[f"observation.images.{name}"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return obs


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, including error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def http_url(server: PolicyServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


@contextlib.contextmanager
def server_in_thread(backend, **kwargs):
    """A PolicyServer running on its own event loop in a thread (for synchronous clients)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    async def main():
        server = PolicyServer(backend, host="127.0.0.1", port=0, **kwargs)
        await server.start()
        box["server"] = server
        box["stop"] = asyncio.Event()
        started.set()
        await box["stop"].wait()
        await server.stop()

    def run():
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surface start-up failures to the test
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "server did not start"
    if "error" in box:
        raise box["error"]
    server = box["server"]
    try:
        asyncio.run_coroutine_threadsafe(server.wait_settled(10), loop).result(15)
        yield server
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        loop.close()


@pytest.fixture
def run_async():
    """Run a coroutine to completion with a timeout (no pytest-asyncio needed)."""

    def run(coro, timeout: float = 60.0):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return run


@pytest.fixture
def helpers():
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(
        small_policy=small_policy,
        observation=observation,
        http_get=http_get,
        http_url=http_url,
        server_in_thread=server_in_thread,
        SMALL_CAMERAS=SMALL_CAMERAS,
    )
