"""Transport benchmark: one observation (two 480x640x3 uint8 frames, 6-float state, task text)
answered by a 50x6 float32 chunk, on loopback. Prints median / p90 / p99 round trip and bytes per
request for:

  tcp floor      plain length-prefixed TCP, no framing or encoding beyond the raw bytes
  openpi         openpi-client's WebsocketClientPolicy against a server that decodes and encodes
                 with openpi-client's msgpack_numpy, configured as openpi's server is
  vla raw        PolicyClient -> `vla serve` (PolicyServer + batcher + model thread), raw frames
  vla jpeg       the same with JPEG frames (quality 90), encoded by the client, decoded by the server

Each server runs in its own process (this machine has two cores); the transports take turns in
rounds so that background load hits them alike. Targets (issue 3): vla raw median within 2x of
the TCP floor and under a third of the openpi round trip.

    python bench/transport.py [--requests 300] [--rounds 6] [--plot transport.png]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import struct
import sys
import time

import numpy as np

FRAME = (480, 640, 3)
HORIZON, ACTION_DIM = 50, 6


def make_observation(seed: int = 0) -> dict:
    """Two camera frames that look like a scene (so JPEG sizes are realistic), state and task."""
    from vla.builtins import KinematicArmConfig
    from vla.testing.kinematic import KinematicArm
    from vla_so101_description.description import SO101

    arm = KinematicArm(KinematicArmConfig(cameras={"front": list(FRAME), "wrist": list(FRAME)}), SO101)
    arm.connect()
    arm.act(np.array([0.3, -0.2, 0.4, 0.1, 0.0, 0.5]))
    obs = arm.observe()
    rng = np.random.default_rng(seed)
    for key in ("observation.images.front", "observation.images.wrist"):
        noise = rng.integers(-6, 7, size=FRAME)  # sensor noise: real cameras are never flat
        obs[key] = np.clip(obs[key].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    obs["task"] = "put the red cube in the blue bowl"
    return obs


# ------------------------------------------------------------------------------ servers


def tcp_server(port_queue) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port_queue.put(listener.getsockname()[1])
    reply = np.zeros((HORIZON, ACTION_DIM), np.float32).tobytes()
    header = struct.Struct("<Q")
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray(8 << 20)
        view = memoryview(buffer)
        try:
            while True:
                head = conn.recv(8, socket.MSG_WAITALL)
                if len(head) < 8:
                    break
                (size,) = header.unpack(head)
                got = 0
                while got < size:
                    n = conn.recv_into(view[got:size])
                    if n == 0:
                        raise ConnectionError
                    got += n
                conn.sendall(header.pack(len(reply)) + reply)
        except ConnectionError:
            pass
        conn.close()


def openpi_server(port_queue) -> None:
    """A server as openpi's WebsocketPolicyServer is set up: msgpack_numpy both ways,
    compression off, no size limit, the policy called on the event loop."""
    import websockets
    import websockets.asyncio.server as ws_server
    from openpi_client import msgpack_numpy

    chunk = np.zeros((HORIZON, ACTION_DIM), np.float32)

    async def handler(ws):
        packer = msgpack_numpy.Packer()
        await ws.send(packer.pack({"policy": "bench"}))
        try:
            while True:
                obs = msgpack_numpy.unpackb(await ws.recv())
                start = time.monotonic()
                actions = {"actions": chunk + obs["observation/state"][:ACTION_DIM]}
                actions["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1000}
                await ws.send(packer.pack(actions))
        except websockets.ConnectionClosed:  # a client leaving is not an error (openpi's server agrees)
            return

    async def main():
        async with ws_server.serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await server.serve_forever()

    asyncio.run(main())


def vla_server(port_queue) -> None:
    from vla.builtins import TimedPolicyConfig
    from vla.serving.server import PolicyServer
    from vla.testing.policies import TimedPolicy

    policy = TimedPolicy(TimedPolicyConfig(horizon=HORIZON, cameras={"front": list(FRAME), "wrist": list(FRAME)}))

    async def main():
        server = PolicyServer(policy, host="127.0.0.1", port=0, max_wait_ms=0)
        await server.start()
        await server.wait_settled(30)
        port_queue.put(server.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def start(target) -> tuple[mp.Process, int]:
    ctx = mp.get_context("spawn")
    port_queue = ctx.Queue()
    process = ctx.Process(target=target, args=(port_queue,), daemon=True)
    process.start()
    return process, port_queue.get(timeout=60)


# ------------------------------------------------------------------------------ clients


class TcpClient:
    def __init__(self, port: int, obs: dict):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.obs = obs
        self.bytes = sum(len(p) for p in self._parts()) + 8 + 8 + HORIZON * ACTION_DIM * 4

    def _parts(self):
        o = self.obs
        return [
            memoryview(o["observation.images.front"]).cast("B"),
            memoryview(o["observation.images.wrist"]).cast("B"),
            memoryview(o["observation.state"]).cast("B"),
            o["task"].encode(),
        ]

    def round_trip(self) -> None:
        parts = self._parts()
        self.sock.sendall(struct.pack("<Q", sum(len(p) for p in parts)))
        for part in parts:
            self.sock.sendall(part)
        (size,) = struct.unpack("<Q", self.sock.recv(8, socket.MSG_WAITALL))
        actions = np.frombuffer(self.sock.recv(size, socket.MSG_WAITALL), np.float32).reshape(HORIZON, ACTION_DIM)
        assert actions.shape == (HORIZON, ACTION_DIM)


class OpenpiClient:
    def __init__(self, port: int, obs: dict):
        import warnings

        from openpi_client import msgpack_numpy
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.policy = WebsocketClientPolicy(host="127.0.0.1", port=port)
        # openpi's own key names (its LIBERO/ALOHA examples use slashes)
        self.obs = {
            "observation/image": obs["observation.images.front"],
            "observation/wrist_image": obs["observation.images.wrist"],
            "observation/state": obs["observation.state"],
            "prompt": obs["task"],
        }
        reply = msgpack_numpy.packb({"actions": np.zeros((HORIZON, ACTION_DIM), np.float32), "server_timing": {"infer_ms": 0.0}})
        self.bytes = len(msgpack_numpy.packb(self.obs)) + len(reply)

    def round_trip(self) -> None:
        assert self.policy.infer(self.obs)["actions"].shape == (HORIZON, ACTION_DIM)


class VlaClient:
    def __init__(self, port: int, obs: dict, jpeg_quality: int | None):
        from vla.protocol.client import PolicyClient

        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(
            PolicyClient.connect(f"ws://127.0.0.1:{port}", jpeg_quality=jpeg_quality)
        )
        self.obs = obs
        self.bytes = 0
        self.request_bytes = self._request_bytes(jpeg_quality)

    def _request_bytes(self, jpeg_quality):
        from vla.protocol.codec import encode

        message = self.loop.run_until_complete(self.client._prepare(dict(self.obs, request_id=1)))
        return len(encode(message))

    def round_trip(self) -> None:
        reply = self.loop.run_until_complete(self.client.infer(self.obs))
        if not self.bytes:
            from vla.protocol.codec import encode

            self.bytes = self.request_bytes + len(encode(reply))
        assert reply["actions"].shape == (HORIZON, ACTION_DIM)


def client_main(conn, kind: str, port: int, jpeg_quality: int | None) -> None:
    obs = make_observation()
    if kind == "tcp":
        client = TcpClient(port, obs)
    elif kind == "openpi":
        client = OpenpiClient(port, obs)
    else:
        client = VlaClient(port, obs, jpeg_quality)
    client.round_trip()
    conn.send(client.bytes)
    while True:
        n = conn.recv()
        if n is None:
            if isinstance(client, VlaClient):
                client.loop.run_until_complete(client.client.close())
            return
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.round_trip()
            times.append(time.perf_counter() - t0)
        conn.send(times)


class ClientProcess:
    def __init__(self, kind: str, port: int, jpeg_quality: int | None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=client_main, args=(child, kind, port, jpeg_quality), daemon=True)
        self.process.start()
        self.bytes = self.conn.recv()

    def run(self, n: int) -> list[float]:
        self.conn.send(n)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)


# ------------------------------------------------------------------------------ main


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples) * 1000.0
    return float(np.median(ms)), float(np.percentile(ms, 90)), float(np.percentile(ms, 99))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="round trips per transport")
    parser.add_argument("--rounds", type=int, default=6, help="turns the transports take")
    parser.add_argument("--plot", default=None, help="write a PNG of the latency distributions here")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    servers = {name: start(target) for name, target in (("tcp", tcp_server), ("openpi", openpi_server), ("vla", vla_server))}
    # Each client is its own process, as each would be its own program: no shared GIL, and the
    # openpi client runs with the stock allocator settings it has in real use.
    specs = {
        "tcp floor": ("tcp", servers["tcp"][1], None),
        "openpi": ("openpi", servers["openpi"][1], None),
        "vla raw": ("vla", servers["vla"][1], None),
        "vla jpeg": ("vla", servers["vla"][1], 90),
    }
    clients = {name: ClientProcess(*spec) for name, spec in specs.items()}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    per_round = max(1, args.requests // args.rounds)
    for client in clients.values():  # warm up connections, caches and allocators
        client.run(10)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("round trips", total=per_round * args.rounds * len(clients))
        for _ in range(args.rounds):
            for name, client in clients.items():
                samples[name].extend(client.run(per_round))
                progress.advance(task, per_round)

    stats = {name: percentiles(s) for name, s in samples.items()}
    table = Table(title=f"loopback round trip, {per_round * args.rounds} requests each: 2x{FRAME} uint8 + state + task -> {HORIZON}x{ACTION_DIM} float32")
    for column in ("transport", "median ms", "p90 ms", "p99 ms", "bytes/request", "median vs tcp floor"):
        table.add_column(column, justify="right" if column != "transport" else "left")
    floor = stats["tcp floor"][0]
    for name, (median, p90, p99) in stats.items():
        table.add_row(name, f"{median:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{clients[name].bytes:,}", f"{median / floor:.2f}x")
    console.print(table)
    raw, openpi = stats["vla raw"][0], stats["openpi"][0]
    ok_floor, ok_openpi = raw <= 2 * floor, raw <= openpi / 3
    console.print(f"vla raw median / tcp floor median = {raw / floor:.2f} (target <= 2): {'met' if ok_floor else 'NOT met'}")
    console.print(f"vla raw median / openpi median    = {raw / openpi:.2f} (target <= 0.33): {'met' if ok_openpi else 'NOT met'}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        ax.boxplot([np.asarray(samples[n]) * 1000 for n in clients], tick_labels=list(clients), showfliers=False)
        ax.set_ylabel("round trip (ms)")
        ax.set_title("loopback round trip: two 480x640 frames -> 50x6 chunk")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        console.print(f"plot written to {args.plot}")

    for client in clients.values():
        client.close()
    for process, _ in servers.values():
        process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
