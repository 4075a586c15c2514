"""The real policy server in a background thread, for tests and benchmarks that drive it from
the same process (the event loop runs in its own thread, as `vla serve` runs it in its own process)."""

from __future__ import annotations


class ServerThread:
    """The real policy server (``vla.serving.server.PolicyServer``) on a loopback port, in a thread."""

    def __init__(self, backend, port: int = 0, **kwargs):
        import asyncio
        import threading

        from vla.serving.server import PolicyServer

        self.loop = asyncio.new_event_loop()
        self.server = PolicyServer(backend, host="127.0.0.1", port=port, **kwargs)
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            self.loop.run_until_complete(self.server.wait_settled(30))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(30), "policy server did not start"
        self.url = f"ws://127.0.0.1:{self.server.port}"

    def stop(self):
        import asyncio

        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
