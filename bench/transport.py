"""Transport benchmark: one observation (two 480x640x3 uint8 frames, 6-float state, task text)
answered by a 50x6 float32 chunk, on loopback. Compares:

  tcp floor      plain length-prefixed TCP, no framing or encoding beyond the raw bytes
  ws floor       the same bytes as one websocket frame each way (picows on both ends, no
                 encoding): what RFC 6455 itself costs, the client's masking and the
                 server's unmasking of 1.8 MB, below which no websocket protocol can go
  openpi         openpi-client's WebsocketClientPolicy against a server that decodes and encodes
                 with openpi-client's msgpack_numpy, configured as openpi's server is
  vla raw        PolicyClient -> `vla serve` (PolicyServer + batcher + model thread), raw frames;
                 the bench policy keeps nothing it is given (PolicyInfo.keeps_inputs=False), so
                 a lone client's frames are read in place, not copied out of the read buffer
  vla jpeg       (with --jpeg) the same with JPEG frames (quality 90)

Each server and each client runs in its own process (as each would be its own program). The
variants take turns in blocks of ``--block`` round trips, so that background load on this
shared machine hits them alike; one run is ``--blocks`` turns of every variant. Every run
gives a median per variant, and the ratios of the medians; the verdict is the median of each
ratio over ``--runs`` runs. CPU time per request is measured for every client (its own
process time) and every server (its /proc utime+stime), which is what the round trip costs
when the machine is not idle.

Targets (issue 13): vla raw / tcp floor <= 2.0 and vla raw / openpi < 0.33, each the median of
at least 5 interleaved runs.

    python bench/transport.py [--runs 5] [--blocks 6] [--block 40] [--jpeg] [--pin] [--plot transport.png]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
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


def ws_server(port_queue) -> None:
    """Answers every binary message with the chunk's raw bytes, reading nothing of it."""
    from picows import WSListener, WSMsgType, ws_create_server

    reply = np.zeros((HORIZON, ACTION_DIM), np.float32).tobytes()

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.BINARY:
                transport.send(WSMsgType.BINARY, reply)

    async def main():
        server = await ws_create_server(lambda _request: Echo(), "127.0.0.1", 0, max_frame_size=16 << 20)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Where the scheduler puts a client and its server changes every variant's figure: left free,
# the TCP floor measured 0.24 ms in one run and 0.50 ms in the next (one core taking turns, or
# two). With --pin every server runs on one core and every client on the other, as a GPU host
# and an arm's computer are two machines; the floor is then ~0.3 ms and vla's ratio to it higher.
SERVER_CPU, CLIENT_CPU = 1, 0


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _serve_pinned(target, port_queue, cpu) -> None:
    pin(cpu)
    target(port_queue)


def start(target, cpu: int | None = None) -> tuple[mp.Process, int]:
    ctx = mp.get_context("spawn")
    port_queue = ctx.Queue()
    process = ctx.Process(target=_serve_pinned, args=(target, port_queue, cpu), daemon=True)
    process.start()
    return process, port_queue.get(timeout=60)


# ------------------------------------------------------------------------------ clients


def raw_parts(obs: dict) -> list:
    """The observation as the floors send it: each frame's, the state's and the task's bytes."""
    return [
        memoryview(obs["observation.images.front"]).cast("B"),
        memoryview(obs["observation.images.wrist"]).cast("B"),
        memoryview(obs["observation.state"]).cast("B"),
        obs["task"].encode(),
    ]


class TcpClient:
    def __init__(self, port: int, obs: dict):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.obs = obs
        self.bytes = sum(len(p) for p in self._parts()) + 8 + 8 + HORIZON * ACTION_DIM * 4

    def _parts(self):
        return raw_parts(self.obs)

    def round_trip(self) -> None:
        parts = self._parts()
        self.sock.sendall(struct.pack("<Q", sum(len(p) for p in parts)))
        for part in parts:
            self.sock.sendall(part)
        (size,) = struct.unpack("<Q", self.sock.recv(8, socket.MSG_WAITALL))
        actions = np.frombuffer(self.sock.recv(size, socket.MSG_WAITALL), np.float32).reshape(HORIZON, ACTION_DIM)
        assert actions.shape == (HORIZON, ACTION_DIM)


class WsClient:
    """The observation's raw bytes as one masked binary frame; the reply's arrival ends the trip."""

    def __init__(self, port: int, obs: dict):
        from picows import WSListener, WSMsgType, ws_connect

        self.loop = asyncio.new_event_loop()
        self.payload = b"".join(raw_parts(obs))
        client = self

        class Replies(WSListener):
            def on_ws_frame(self, transport, frame) -> None:
                if frame.msg_type == WSMsgType.BINARY:
                    actions = np.frombuffer(frame.get_payload_as_bytes(), np.float32).reshape(HORIZON, ACTION_DIM)
                    client.reply.set_result(actions)

        self.binary = WSMsgType.BINARY
        self.transport, _ = self.loop.run_until_complete(
            ws_connect(Replies, f"ws://127.0.0.1:{port}", max_frame_size=16 << 20))
        self.reply: asyncio.Future | None = None
        self.bytes = len(self.payload) + 14 + HORIZON * ACTION_DIM * 4 + 4

    async def _round_trip(self) -> None:
        self.reply = self.loop.create_future()
        self.transport.send(self.binary, self.payload)
        assert (await self.reply).shape == (HORIZON, ACTION_DIM)

    def round_trip(self) -> None:
        self.loop.run_until_complete(self._round_trip())


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
        self.loop.run_until_complete(self._round_trips(1))

    def timed_round_trips(self, n: int) -> list[float]:
        """``n`` round trips in one coroutine, as `vla run`'s worker makes them on its long-lived loop."""
        return self.loop.run_until_complete(self._round_trips(n))

    async def _round_trips(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            reply = await self.client.infer(self.obs)
            times.append(time.perf_counter() - t0)
            assert reply["actions"].shape == (HORIZON, ACTION_DIM)
        if not self.bytes:
            from vla.protocol.codec import encode

            self.bytes = self.request_bytes + len(encode(reply))
        return times


def client_main(conn, kind: str, port: int, jpeg_quality: int | None, cpu: int | None = None) -> None:
    pin(cpu)
    obs = make_observation()
    if kind == "tcp":
        client = TcpClient(port, obs)
    elif kind == "ws":
        client = WsClient(port, obs)
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
        cpu0 = time.process_time()
        if isinstance(client, VlaClient):
            times = client.timed_round_trips(n)
        else:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                client.round_trip()
                times.append(time.perf_counter() - t0)
        conn.send((times, time.process_time() - cpu0))


class ClientProcess:
    def __init__(self, kind: str, port: int, jpeg_quality: int | None, cpu: int | None = None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=client_main, args=(child, kind, port, jpeg_quality, cpu), daemon=True)
        self.process.start()
        self.bytes = self.conn.recv()

    def run(self, n: int) -> tuple[list[float], float]:
        """``n`` round trips: their times and the client's CPU seconds for them."""
        self.conn.send(n)
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)


# ------------------------------------------------------------------------------ main


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(samples) * 1000.0
    return float(np.median(ms)), float(np.percentile(ms, 90)), float(np.percentile(ms, 99))


def one_run(clients, servers, args, progress, task) -> dict:
    """One interleaved run: per variant its samples and CPU per request (client, server)."""
    out = {name: {"samples": [], "client_cpu": 0.0, "server_cpu": 0.0} for name in clients}
    for _ in range(args.blocks):
        for name, (client, server_pid) in clients.items():
            before = process_cpu_s(server_pid)
            times, cpu = client.run(args.block)
            out[name]["server_cpu"] += process_cpu_s(server_pid) - before
            out[name]["client_cpu"] += cpu
            out[name]["samples"].extend(times)
            progress.advance(task, args.block)
    n = args.blocks * args.block
    for stats in out.values():
        stats["median"] = float(np.median(stats["samples"])) * 1000.0
        stats["client_cpu_ms"] = stats["client_cpu"] / n * 1000.0
        stats["server_cpu_ms"] = stats["server_cpu"] / n * 1000.0
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (the verdict is the median over runs)")
    parser.add_argument("--blocks", type=int, default=6, help="turns each variant takes per run")
    parser.add_argument("--block", type=int, default=40, help="round trips per turn")
    parser.add_argument("--jpeg", action="store_true", help="also measure vla with JPEG frames")
    parser.add_argument("--plot", default=None, help="write a PNG of the latency distributions here")
    parser.add_argument("--pin", action="store_true",
                        help="servers on CPU 1, clients on CPU 0 (default: the scheduler places them)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    pinned = args.pin and len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else False
    server_cpu, client_cpu = (SERVER_CPU, CLIENT_CPU) if pinned else (None, None)
    servers = {
        name: start(target, server_cpu)
        for name, target in (("tcp", tcp_server), ("ws", ws_server), ("openpi", openpi_server), ("vla", vla_server))
    }
    specs = {
        "tcp floor": ("tcp", None),
        "ws floor": ("ws", None),
        "openpi": ("openpi", None),
        "vla raw": ("vla", None),
    }
    if args.jpeg:
        specs["vla jpeg"] = ("vla", 90)
    clients = {
        name: (ClientProcess(kind, servers[kind][1], quality, client_cpu), servers[kind][0].pid)
        for name, (kind, quality) in specs.items()
    }
    for client, _ in clients.values():  # warm up connections, caches and allocators
        client.run(20)
    runs = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("round trips", total=args.runs * args.blocks * args.block * len(clients))
        for _ in range(args.runs):
            runs.append(one_run(clients, servers, args, progress, task))

    names = list(clients)
    per_run = Table(title=f"median round trip (ms) per interleaved run, {args.blocks}x{args.block} requests per variant")
    per_run.add_column("run", justify="right")
    for name in names:
        per_run.add_column(name, justify="right")
    per_run.add_column("vla/tcp", justify="right")
    per_run.add_column("vla/ws", justify="right")
    per_run.add_column("vla/openpi", justify="right")
    per_run.add_column("ws/openpi", justify="right")
    floor_ratios, ws_ratios, openpi_ratios, ws_openpi_ratios = [], [], [], []
    for i, run in enumerate(runs, 1):
        floor_ratios.append(run["vla raw"]["median"] / run["tcp floor"]["median"])
        ws_ratios.append(run["vla raw"]["median"] / run["ws floor"]["median"])
        openpi_ratios.append(run["vla raw"]["median"] / run["openpi"]["median"])
        ws_openpi_ratios.append(run["ws floor"]["median"] / run["openpi"]["median"])
        per_run.add_row(str(i), *(f"{run[n]['median']:.3f}" for n in names), f"{floor_ratios[-1]:.2f}",
                        f"{ws_ratios[-1]:.2f}", f"{openpi_ratios[-1]:.3f}", f"{ws_openpi_ratios[-1]:.3f}")
    console.print(per_run)

    samples = {n: [t for run in runs for t in run[n]["samples"]] for n in names}
    table = Table(title=f"all runs: 2x{FRAME} uint8 + state + task -> {HORIZON}x{ACTION_DIM} float32, loopback")
    for column in ("transport", "median ms", "p90 ms", "p99 ms", "client CPU ms/req", "server CPU ms/req", "bytes/request"):
        table.add_column(column, justify="right" if column != "transport" else "left")
    for name in names:
        median, p90, p99 = percentiles(samples[name])
        client_cpu = float(np.median([run[name]["client_cpu_ms"] for run in runs]))
        server_cpu = float(np.median([run[name]["server_cpu_ms"] for run in runs]))
        table.add_row(name, f"{median:.3f}", f"{p90:.3f}", f"{p99:.3f}", f"{client_cpu:.3f}", f"{server_cpu:.3f}",
                      f"{clients[name][0].bytes:,}")
    console.print(table)
    console.print("servers on CPU %d, clients on CPU %d" % (SERVER_CPU, CLIENT_CPU) if pinned else "processes not pinned")
    console.print(f"vla/raw-TCP per run: {', '.join(f'{r:.2f}' for r in floor_ratios)}; "
                  f"vla/openpi per run: {', '.join(f'{r:.3f}' for r in openpi_ratios)}")
    # what the websocket protocol alone (no encoding at all) reaches: the bound on any vla/openpi
    console.print(f"websocket floor (medians over runs): ws/raw-TCP = {np.median([r['ws floor']['median'] / r['tcp floor']['median'] for r in runs]):.2f}, "
                  f"ws/openpi = {np.median(ws_openpi_ratios):.3f}; vla/ws = {np.median(ws_ratios):.2f}", soft_wrap=True)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        ax.boxplot([np.asarray(samples[n]) * 1000 for n in names], tick_labels=names, showfliers=False)
        ax.set_ylabel("round trip (ms)")
        ax.set_title("loopback round trip: two 480x640 frames -> 50x6 chunk")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        console.print(f"plot written to {args.plot}")

    for client, _ in clients.values():
        client.close()
    for process, _ in servers.values():
        process.terminate()

    floor_ratio, openpi_ratio = float(np.median(floor_ratios)), float(np.median(openpi_ratios))
    ok_floor, ok_openpi = floor_ratio <= 2.0, openpi_ratio < 0.33
    verdict = "met" if ok_floor and ok_openpi else "NOT met"
    console.print(
        f"verdict (median of {len(runs)} interleaved runs): vla/raw-TCP = {floor_ratio:.2f} (target <= 2.0, "
        f"{'met' if ok_floor else 'NOT met'}); vla/openpi = {openpi_ratio:.3f} (target < 0.33, "
        f"{'met' if ok_openpi else 'NOT met'}): {verdict}",
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
