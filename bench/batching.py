"""Batching benchmark: throughput of 4 clients against 1 client, on a server whose batch call
costs a set time whatever the batch size (as a GPU forward pass roughly does).

The server (`PolicyServer` with the `timed` test policy) runs in its own process; the clients
are `PolicyClient`s on separate websocket connections, each sending its next observation as
soon as its previous chunk arrives, like arms that ask continuously. Target (issue 3): 4 clients
get 3x the throughput of 1 or more.

    python bench/batching.py [--cost-ms 50] [--seconds 6] [--clients 4] [--plot batching.png]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time

import numpy as np

CAMERAS = {"front": [96, 128, 3], "wrist": [96, 128, 3]}


def server(port_queue, cost_ms: float, max_batch: int, max_wait_ms: float) -> None:
    from vla.builtins import TimedPolicyConfig
    from vla.serving.server import PolicyServer
    from vla.testing.policies import TimedPolicy

    policy = TimedPolicy(TimedPolicyConfig(batch_cost_ms=cost_ms, cameras=CAMERAS, max_batch=max_batch))

    async def main():
        srv = PolicyServer(policy, host="127.0.0.1", port=0, max_batch=max_batch, max_wait_ms=max_wait_ms)
        await srv.start()
        await srv.wait_settled(30)
        port_queue.put(srv.port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def arm(url: str, index: int, seconds: float, latencies: list[float], sizes: list[int]) -> int:
    from vla.protocol.client import PolicyClient
    from vla.testing.policies import expected_chunk

    rng = np.random.default_rng(index)
    client = await PolicyClient.connect(url)
    images = {f"observation.images.{n}": rng.integers(0, 256, size=s, dtype=np.uint8) for n, s in CAMERAS.items()}
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        state = rng.uniform(-1, 1, 6).astype(np.float32)
        t0 = time.perf_counter()
        reply = await client.infer({"observation.state": state, "task": "lift the yellow cube", **images})
        latencies.append(time.perf_counter() - t0)
        sizes.append(reply["server_timing"]["batch_size"])
        # every answer is checked: batching must not mix up whose chunk is whose
        if not np.allclose(reply["actions"], expected_chunk(state), atol=1e-5):
            raise AssertionError(f"client {index} got another observation's chunk")
        done += 1
    await client.close()
    return done


async def run_clients(url: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    sizes: list[int] = []
    # a short warm-up so connections and allocators are settled before timing
    await asyncio.gather(*(arm(url, 100 + i, 0.5, [], []) for i in range(clients)))
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(arm(url, i, seconds, latencies, sizes) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": sum(counts),
        "throughput": sum(counts) / elapsed,
        "latency_ms": float(np.median(latencies) * 1000),
        "p90_ms": float(np.percentile(latencies, 90) * 1000),
        "mean_batch": float(np.mean(sizes)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cost-ms", type=float, default=50.0, help="what one batch call costs")
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per configuration")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--plot", default=None, help="write a PNG of throughput per configuration here")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console()
    ctx = mp.get_context("spawn")
    port_queue = ctx.Queue()
    process = ctx.Process(
        target=server, args=(port_queue, args.cost_ms, args.clients, args.max_wait_ms), daemon=True
    )
    process.start()
    url = f"ws://127.0.0.1:{port_queue.get(timeout=60)}"
    try:
        with console.status(f"1 client for {args.seconds:.0f} s"):
            one = asyncio.run(run_clients(url, 1, args.seconds))
        with console.status(f"{args.clients} clients for {args.seconds:.0f} s"):
            many = asyncio.run(run_clients(url, args.clients, args.seconds))
    finally:
        process.terminate()

    table = Table(title=f"batching: one model call costs {args.cost_ms:.0f} ms, max wait {args.max_wait_ms:.0f} ms")
    for column in ("clients", "requests", "throughput (req/s)", "median latency ms", "p90 ms", "mean batch"):
        table.add_column(column, justify="right")
    for row in (one, many):
        table.add_row(
            str(row["clients"]), str(row["requests"]), f"{row['throughput']:.1f}", f"{row['latency_ms']:.1f}",
            f"{row['p90_ms']:.1f}", f"{row['mean_batch']:.2f}",
        )
    console.print(table)
    ratio = many["throughput"] / one["throughput"]
    console.print(f"throughput {args.clients} clients / 1 client = {ratio:.2f}x (target >= 3): {'met' if ratio >= 3 else 'NOT met'}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.bar(["1 client", f"{args.clients} clients"], [one["throughput"], many["throughput"]], color=["#888", "#2a7"])
        ax.set_ylabel("chunks per second")
        ax.set_title(f"batched serving, {args.cost_ms:.0f} ms per model call")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        console.print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
