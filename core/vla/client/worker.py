"""The network side of `vla run`: a thread running an asyncio loop that owns the policy connection.

The control loop never waits on it. It ``submit``s requests and ``poll``s events
(connected, reply, error frame, disconnected) between ticks. The worker connects, answers
one request at a time, notices a lost connection even while idle, and reconnects with
exponential backoff until it is stopped.
"""

from __future__ import annotations

import asyncio
import queue as thread_queue
import threading
import time
from typing import Any, Callable

from vla.client.events import ConnectFailed, Connected, Disconnected, Failed, InferenceRequest, Reply, WorkerFailed

FIRST_BACKOFF_S = 0.05


def policy_ca_file(loaded) -> str | None:
    """``policy_server.ca_file`` from the lab config, resolved against the file it was read from."""
    ca_file = loaded.config.policy_server.ca_file
    return str(loaded.base_dir / ca_file) if ca_file else None


class InferenceWorker:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 2.0,
        request_timeout_s: float = 10.0,
        jpeg_quality: int | None = None,
        adapter: Any = None,
        clock: Callable[[], float] = time.perf_counter,
        ca_file: str | None = None,
        arm: str | None = None,
    ):
        self.url = url
        self.api_key = api_key
        self.ca_file = ca_file  # for wss://: this CA (PEM) instead of the system's store
        self.arm = arm  # names the connection in the server's per-arm metrics
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.request_timeout_s = request_timeout_s
        self.jpeg_quality = jpeg_quality  # the protocol client encodes frames as JPEG when the server takes them
        # translates to and from a server that does not read vla's keys (see PolicySpec.client_adapter)
        self.adapter = adapter
        self.clock = clock
        self._events: thread_queue.Queue = thread_queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: asyncio.Queue | None = None
        self._main_task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping = False

    # ------------------------------------------------------- control-thread side

    def start(self) -> InferenceWorker:
        self._thread = threading.Thread(target=self._run, name="vla-inference", daemon=True)
        self._thread.start()
        self._started.wait(5.0)
        return self

    def submit(self, request: InferenceRequest) -> None:
        if self._loop is None or self._requests is None:
            raise RuntimeError("the inference worker is not running")
        self._loop.call_soon_threadsafe(self._requests.put_nowait, request)

    def poll(self) -> list:
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except thread_queue.Empty:
                return events

    def wait_event(self, timeout: float) -> Any:
        """Block until an event comes (for start-up), or None."""
        try:
            return self._events.get(timeout=timeout)
        except thread_queue.Empty:
            return None

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping = True
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------- loop side

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._requests = asyncio.Queue()
        try:
            self._main_task = loop.create_task(self._main())
            self._started.set()
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the controller holds the arm and ends the run
            self._post(Disconnected(f"network worker failed: {_reason(exc)}"))
            self._post(WorkerFailed(_reason(exc)))
            self._started.set()
        finally:
            # let every task see its cancellation before the loop goes away
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _post(self, event) -> None:
        self._events.put(event)

    async def _main(self) -> None:
        from vla.protocol.client import PolicyClient  # the wire protocol, loaded with the worker

        backoff = FIRST_BACKOFF_S
        while not self._stopping:
            try:
                client = await asyncio.wait_for(
                    PolicyClient.connect(
                        self.url, api_key=self.api_key, open_timeout=self.connect_timeout_s,
                        jpeg_quality=self.jpeg_quality, ca_file=self.ca_file, arm=self.arm,
                    ),
                    self.connect_timeout_s + 1.0,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, timed out, bad handshake, wrong key ...
                self._post(ConnectFailed(_reason(exc)))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = FIRST_BACKOFF_S
            # Requests made for an earlier connection are stale; the controller asks again.
            while not self._requests.empty():
                self._requests.get_nowait()
            self._post(Connected(dict(client.metadata or {})))
            try:
                reason = await self._serve(client)
            finally:
                await _close_quietly(client)
            self._post(Disconnected(reason))

    async def _serve(self, client) -> str:
        """Answer requests on one connection until it is lost; returns why it was lost."""
        from vla.protocol.errors import PolicyError, ProtocolError

        lost = asyncio.ensure_future(_connection_lost(client))
        get: asyncio.Future | None = None
        try:
            while True:
                get = asyncio.ensure_future(self._requests.get())
                done, _ = await asyncio.wait({get, lost}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    return "connection closed by the server"
                request: InferenceRequest = get.result()
                t_sent = self.clock()
                try:
                    payload = self.adapter.request(request.payload) if self.adapter else request.payload
                    reply = await asyncio.wait_for(client.infer(payload), self.request_timeout_s)
                    if self.adapter:
                        reply = {**reply, "actions": self.adapter.actions(reply)}
                except (PolicyError, ProtocolError) as exc:
                    # an error frame, or a reply that is not a chunk: the connection itself is fine
                    self._post(Failed(request, str(getattr(exc, "code", "error")), str(getattr(exc, "message", exc))))
                    continue
                except ValueError as exc:  # the adapter's key map does not fit this observation or reply
                    self._post(Failed(request, "adapter", str(exc)))
                    continue
                except asyncio.TimeoutError:
                    return f"no reply within {self.request_timeout_s:g} s"
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # ConnectionError and whatever the transport raises
                    return _reason(exc)
                self._post(Reply(request, reply if isinstance(reply, dict) else {}, t_sent, self.clock()))
        finally:
            lost.cancel()
            if get is not None:
                get.cancel()


async def _connection_lost(client) -> None:
    """Returns when the connection closes, if the client can tell; otherwise never."""
    waiter = getattr(client, "wait_closed", None)
    if callable(waiter):
        await waiter()
        return
    await asyncio.Event().wait()


async def _close_quietly(client) -> None:
    try:
        await asyncio.wait_for(client.close(), 1.0)
    except Exception:
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
