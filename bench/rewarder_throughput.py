"""Frames scored per second by the heuristic rewarder through the HTTP service.

Starts `vla serve-rewarder --rewarder heuristic` as its own process on a free loopback port,
then keeps it busy from client threads (kept-alive connections, request bodies encoded once up
front) for a fixed time, once per frame encoding (PNG and JPEG in base64 JSON, raw uint8 arrays
in msgpack), and prints frames/s, requests/s and latency. The clients share the machine with
the server, so on a small machine the figures are a floor.

    .venv/bin/python bench/rewarder_throughput.py [--seconds 10] [--clients 4] [--frames-per-request 1]
        [--size 224] [--labels DIR]    # frames from labelled clips (e.g. `vla sim clips`) instead of drawn ones
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from vla.rewarding.client import RewarderClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_frames(args) -> list[tuple[list[np.ndarray], str]]:
    """(frames, goal) pairs to send, cycling through the three tasks."""
    if args.labels:
        from vla.rewarding.labels import load_clips

        clips = load_clips(args.labels)[:30]
        return [(c.load_frames()[-frames_for(c.task, args):], c.goal) for c in clips]
    from vla_heuristic.synthetic import TASK_GOALS, draw_scene

    items = []
    for i in range(12):
        task = list(TASK_GOALS)[i % 3]
        frames = draw_scene(task, i % 2 == 0, seed=i, size=(args.size, args.size), n_frames=max(2, args.frames_per_request))
        items.append((frames[-frames_for(task, args):], TASK_GOALS[task]))
    return items


def frames_for(task: str, args) -> int:
    # "lift" compares the first frame with the last: it needs two
    return max(2, args.frames_per_request) if task == "lift" else args.frames_per_request


def bodies(items, encoding: str) -> list[tuple[bytes, str, int]]:
    """Request bodies made once up front, so the figures are the service's, not the client's encoder."""
    import json

    from vla.protocol.codec import encode_bytes
    from vla.rewarding.frames import to_base64

    out = []
    for frames, goal in items:
        if encoding == "msgpack":
            out.append((encode_bytes({"goal": goal, "frames": np.stack(frames)}), "application/msgpack", len(frames)))
        else:
            body = {"goal": goal, "frames": [to_base64(f, encoding) for f in frames]}
            out.append((json.dumps(body).encode(), "application/json", len(frames)))
    return out


def run(url: str, encoding: str, items, seconds: float, clients: int) -> dict:
    import http.client
    from urllib.parse import urlsplit

    prepared = bodies(items, encoding)
    host, port = urlsplit(url).hostname, urlsplit(url).port
    latencies: list[float] = []
    frames_done = [0]
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(k: int):
        conn = http.client.HTTPConnection(host, port, timeout=30)  # kept alive
        i = k
        while time.monotonic() < stop:
            body, ctype, n = prepared[i % len(prepared)]
            t0 = time.perf_counter()
            conn.request("POST", "/score", body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t0
            with lock:
                if resp.status == 200:
                    latencies.append(dt)
                    frames_done[0] += n
                else:
                    errors[0] += 1
            i += clients
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "encoding": encoding,
        "frames_per_s": frames_done[0] / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95_ms": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "errors": errors[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per encoding")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--frames-per-request", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="drawn frames are size x size (the sim's camera)")
    parser.add_argument("--labels", default=None)
    parser.add_argument("--encodings", default="png,jpeg,msgpack")
    args = parser.parse_args()

    items = load_frames(args)
    port = free_port()
    vla = str(Path(sys.executable).parent / "vla")
    server = subprocess.Popen([vla, "serve-rewarder", "--rewarder", "heuristic", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "VLA_API_KEY": ""})
    url = f"http://127.0.0.1:{port}"
    try:
        probe = RewarderClient(url, retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                probe.wait_ready(timeout=1)
                break
            except (ConnectionError, TimeoutError):
                if server.poll() is not None or time.monotonic() > deadline:
                    print(server.stderr.read().decode(), file=sys.stderr)
                    return 1
        h, w = items[0][0][0].shape[:2]
        print(f"heuristic rewarder via HTTP: {args.clients} clients, {args.frames_per_request} frame(s)/request, "
              f"{w}x{h} frames, {args.seconds:.0f}s per encoding, {os.cpu_count()} CPU(s)")
        for encoding in args.encodings.split(","):
            r = run(url, encoding, items, args.seconds, args.clients)
            print(f"  {encoding:8s} {r['frames_per_s']:8.1f} frames/s  {r['requests_per_s']:7.1f} req/s  "
                  f"p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  errors {r['errors']}")
        from vla_heuristic.rewarder import HeuristicRewarder

        rewarder = HeuristicRewarder()
        n = frames_done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            frames, goal = items[n % len(items)]
            rewarder.score(frames, goal)
            n += 1
            frames_done += len(frames)
        elapsed = time.perf_counter() - t0
        print(f"  in-process, one thread, no HTTP: {frames_done / elapsed:8.1f} frames/s ({elapsed / n * 1000:.1f} ms per request)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
