"""The services a `vla learn` run starts in its own process: the policy server and the rewarder.

Both are the real servers (`vla serve`'s ``PolicyServer`` over WebSocket, `vla serve-rewarder`'s
``RewarderService`` over HTTP) on loopback ports, each on its own event-loop thread, so the arm
processes talk to them exactly as arms talk to a GPU host. The policy server runs beside the
learner so that the learner can hand the policy its next candidate (``ParameterSource``).
"""

from __future__ import annotations

import asyncio
import threading

from vla.learning.contract import LearningError


class PolicyServerThread:
    def __init__(self, backend, name: str, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 ready_timeout_s: float = 300.0):
        from vla.serving.server import PolicyServer

        self.server = PolicyServer(backend, host=host, port=port, api_key=api_key, name=name, max_wait_ms=2.0)
        self.ready_timeout_s = ready_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="learn-policy-server", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:  # a busy port: reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> PolicyServerThread:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise LearningError(f"the policy server could not start: {self._error}")
        state = asyncio.run_coroutine_threadsafe(self.server.wait_settled(self.ready_timeout_s), self._loop).result(
            self.ready_timeout_s + 5)
        if state != "ready":
            raise LearningError(f"the policy server is {state}: {self.server.reason}")
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def start_rewarder_service(name: str, config_path: str | None, noise: tuple[str, float] | None = None,
                           seed: int = 0, api_key: str | None = None, ready_timeout_s: float = 300.0):
    """A running ``RewarderService`` for rewarder plugin ``name`` (its settings from the lab file),
    optionally wrapped in a ``NoisyRewarder``. Returns the ``RunningService`` (``.url``, ``.close()``)."""
    from vla.learning.rewarders import NoisyRewarder
    from vla.rewarding.loading import rewarder_config
    from vla.rewarding.service import RewarderService, RunningService

    spec, config = rewarder_config(name, config_path, {})

    def build():
        rewarder = spec.build(config)
        return NoisyRewarder(rewarder, noise[0], noise[1], seed) if noise else rewarder

    service = RewarderService(name, build, api_key=api_key)
    running = RunningService(service).__enter__()
    if not service.wait_loaded(ready_timeout_s) or service.state != "ready":
        running.close()
        raise LearningError(f"the rewarder {name!r} did not become ready: {service.lifecycle.reason or service.state}")
    return running
