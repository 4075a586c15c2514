"""Batching of requests from several connections into one model call.

Requests wait in a queue. When the model is free, the batcher takes what is queued (up to
``max_batch``) and, while the batch is smaller than the number of connected clients, waits up
to ``max_wait_s`` for the others' requests: arms that are served together come back together,
so after a few calls their requests line up. A lone client never waits.

The model runs in a single worker thread (``executor``), so the event loop keeps answering
health checks, metrics and other connections while a call is in progress. The exception is a
backend whose calls are trivially short (a scripted expert, a constant policy): once its last
``INLINE_AFTER`` calls all took under ``INLINE_BELOW_S``, it is called on the event loop
itself, because the two thread switches to the model thread and back cost more than the call
(about 0.15 ms of CPU and 0.4 ms of wall time each way on a loaded 2-core machine, measured).
One call that takes longer than ``INLINE_LIMIT_S`` sends it back to the model thread.

Such a backend also gets a direct path (``try_direct``): a request that finds the batcher idle,
nothing queued and no other client active is answered at once, in the callback that delivered
it, without the queue, the batcher task and a future between them (each a turn of the event
loop). Batching only pays when there is someone to batch with.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from typing import Any, Callable

import attrs

from vla.protocol.errors import INFERENCE_FAILED, BAD_POLICY_OUTPUT, ProtocolError
from vla.protocol.messages import Request, check_chunk

log = logging.getLogger("vla.serving")

INLINE_BELOW_S = 0.0005
INLINE_AFTER = 16
INLINE_LIMIT_S = 0.005


def _policy_failed(exc: Exception) -> ProtocolError:
    return ProtocolError(INFERENCE_FAILED, f"the policy raised {type(exc).__name__}: {str(exc)[:300]}")


@attrs.define
class _Pending:
    request: Request
    future: asyncio.Future
    queued_at: float


@attrs.define
class BatchResult:
    actions: Any  # (H, A) float32
    infer_ms: float
    queue_ms: float
    batch_size: int


class Batcher:
    def __init__(
        self,
        backend,
        executor: Executor,
        *,
        action_dim: int,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        active_clients: Callable[[], int] = lambda: 1,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.backend = backend
        self.executor = executor
        self.action_dim = action_dim
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self.active_clients = active_clients
        self.on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._short_calls = 0  # consecutive calls under INLINE_BELOW_S
        self._serving = False  # a batch is being served (on the loop or in the model thread)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vla-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("server stopping"))
        self._queue.clear()

    def submit_nowait(self, request: Request) -> asyncio.Future:
        """Queue a request; the future resolves to its ``BatchResult`` (or the error). Cancel it to drop the request."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future, time.perf_counter()))
        self._wakeup.set()
        return future

    def try_direct(self, request: Request) -> BatchResult | None:
        """Answer ``request`` now when batching could not help (see the module's docstring);
        None when it must wait its turn in the queue. Raises what the policy call raised, as a
        ``ProtocolError``."""
        if not self.inline or self._serving or self._queue or self.active_clients() > 1:
            return None
        self._serving = True
        try:
            chunks, infer_ms = self._call([request.observation], request.reset)
        except Exception as exc:
            log.exception("policy call failed")
            raise _policy_failed(exc) from None
        finally:
            self._serving = False
        self._called(1, chunks, infer_ms)
        return BatchResult(check_chunk(chunks[0], self.action_dim), infer_ms, 0.0, 1)

    async def submit(self, request: Request) -> BatchResult:
        return await self.submit_nowait(request)

    def _take(self, batch: list[_Pending]) -> None:
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if not pending.future.done():  # its connection went away while it waited
                batch.append(pending)

    async def _collect(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while not batch:
            self._wakeup.clear()
            self._take(batch)
            if not batch:
                await self._wakeup.wait()
        self._serving = True  # from here until the batch is answered, the direct path stays shut
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch and len(batch) < self.active_clients():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            self._take(batch)
        return batch

    def _call(self, observations: list[dict], reset: bool) -> tuple[list, float]:
        """Runs in the model thread."""
        if reset:
            self.backend.reset()
        start = time.perf_counter()
        chunks = self.backend.infer(observations)
        return list(chunks), (time.perf_counter() - start) * 1000.0

    @property
    def inline(self) -> bool:
        """Whether the backend is called on the event loop (see the module's docstring)."""
        return self._short_calls >= INLINE_AFTER

    def _timed(self, seconds: float) -> None:
        if seconds < INLINE_BELOW_S:
            self._short_calls += 1
        elif not self.inline or seconds > INLINE_LIMIT_S:
            if self.inline:
                log.info("policy call took %.1f ms; calling it in the model thread again", seconds * 1000)
            self._short_calls = 0

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._serve(batch)
            except Exception as exc:  # a bug here must not leave every later request hanging
                log.exception("batcher failed on a batch of %d", len(batch))
                self._fail(batch, exc)
            finally:
                self._serving = False

    def _called(self, n: int, chunks: list, infer_ms: float) -> None:
        """Book a finished call of ``n`` observations; ProtocolError when it answered another count."""
        self._timed(infer_ms / 1000.0)
        if self.on_batch is not None:
            self.on_batch(n, infer_ms)
        if len(chunks) != n:
            raise ProtocolError(BAD_POLICY_OUTPUT, f"the policy answered {len(chunks)} chunks for {n} observations")

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _serve(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        observations = [p.request.observation for p in batch]
        reset = any(p.request.reset for p in batch)
        try:
            if self.inline:
                chunks, infer_ms = self._call(observations, reset)
            else:
                chunks, infer_ms = await loop.run_in_executor(self.executor, self._call, observations, reset)
        except Exception as exc:
            if len(batch) > 1:
                # one arm's bad observation must not fail the arms batched with it: ask again one by one
                log.warning("policy call failed for a batch of %d (%s); retrying each alone", len(batch), exc)
                for pending in batch:
                    await self._serve([pending])
                return
            log.exception("policy call failed")
            self._fail(batch, _policy_failed(exc))
            return
        try:
            self._called(len(batch), chunks, infer_ms)
        except ProtocolError as error:
            self._fail(batch, error)
            return
        for pending, chunk in zip(batch, chunks):
            if pending.future.done():
                continue
            try:
                actions = check_chunk(chunk, self.action_dim)
            except ProtocolError as exc:
                pending.future.set_exception(exc)
                continue
            pending.future.set_result(
                BatchResult(actions, infer_ms, (started - pending.queued_at) * 1000.0, len(batch))
            )
