"""Server-side overhead of serving a LeRobot policy: request in to chunk out, minus the model call.

A tiny ACT (trained here for two steps on a synthetic LeRobot dataset, or --checkpoint) is
served by vla's PolicyServer with the `lerobot` backend on loopback. The model call is
``predict_action_chunk`` itself, timed by wrapping it; everything else the server does is
overhead: decoding and checking the request, batching, stacking the observations, LeRobot's
pre-processing (normalise, device) and post-processing (un-normalise), and building the reply.

- batch 1: one client, requests one after another;
- batch 4: four clients whose requests arrive together and are answered by one model call.

Overhead per request = server ``total_ms`` (frame received -> reply built) - the model call of
its batch. Printed as median and p90, split into the server part (``total_ms - infer_ms``) and
the backend part (``backend.infer`` - model call), next to the model call itself.

    .venv/bin/python bench/policy_latency.py [--requests 60] [--size 224] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TINY_ACT = {
    "pretrained_backbone_weights": None, "dim_model": 32, "n_heads": 2, "dim_feedforward": 64,
    "n_encoder_layers": 1, "n_decoder_layers": 1, "latent_dim": 8, "chunk_size": 40, "n_action_steps": 40,
}


def make_checkpoint(work: Path, size: int) -> Path:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla.training import TrainRequest
    from vla_lerobot.trainer import LeRobotTrainer

    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "action": {"dtype": "float32", "shape": (6,), "names": None},
    }
    for cam in ("front", "wrist"):
        features[f"observation.images.{cam}"] = {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channels"]}
    root = work / "dataset"
    ds = LeRobotDataset.create("local/bench", fps=30, root=root, features=features, use_videos=True)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for _ in range(45):
            q = rng.uniform(-1, 1, 6).astype(np.float32)
            frame = {"observation.state": q, "action": q, "task": "lift the yellow cube"}
            for cam in ("front", "wrist"):
                frame[f"observation.images.{cam}"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    result = LeRobotTrainer("act").train(TrainRequest(dataset=root, output=work / "act", steps=2, batch_size=4, options=TINY_ACT))
    return result.checkpoint


class Timings:
    """Wall times of backend.infer and of the model call inside it, per call, in call order."""

    def __init__(self, backend):
        self.lock = threading.Lock()
        self.calls: list[tuple[int, float, float]] = []  # (batch size, infer ms, model ms)
        self._model_ms = 0.0
        policy = backend._policy
        model_call = policy.predict_action_chunk
        infer = backend.infer

        def timed_model(*args, **kwargs):
            start = time.perf_counter()
            out = model_call(*args, **kwargs)
            self._model_ms += (time.perf_counter() - start) * 1000
            return out

        def timed_infer(batch):
            self._model_ms = 0.0
            start = time.perf_counter()
            out = infer(batch)
            with self.lock:
                self.calls.append((len(batch), (time.perf_counter() - start) * 1000, self._model_ms))
            return out

        policy.predict_action_chunk = timed_model
        backend.infer = timed_infer


def observation(size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.uniform(-1, 1, 6).astype(np.float32), "task": "lift the yellow cube"}
    for cam in ("front", "wrist"):
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return obs


async def measure(backend, timings: Timings, clients: int, requests: int, size: int) -> dict:
    from vla.protocol.client import PolicyClient
    from vla.serving.server import PolicyServer

    server = PolicyServer(backend, host="127.0.0.1", port=0, max_batch=max(clients, 1), max_wait_ms=20.0)
    await server.start()
    await server.wait_settled(120)
    url = f"ws://127.0.0.1:{server.port}"
    conns = [await PolicyClient.connect(url) for _ in range(clients)]
    observations = [observation(size, i) for i in range(clients)]
    server_ms, rtts, sizes = [], [], []
    try:
        for conn, obs in zip(conns, observations):  # warm the path
            await conn.infer(obs)
        timings.calls.clear()
        for _ in range(requests):
            start = time.perf_counter()
            replies = await asyncio.gather(*(conn.infer(obs) for conn, obs in zip(conns, observations)))
            rtt = (time.perf_counter() - start) * 1000
            for reply in replies:
                timing = reply["server_timing"]
                server_ms.append(timing["total_ms"] - timing["infer_ms"])
                sizes.append(timing["batch_size"])
                rtts.append(rtt)
    finally:
        for conn in conns:
            await conn.close()
        await server.stop()
    calls = [c for c in timings.calls if c[0] == clients] or timings.calls
    backend_ms = [infer - model for _, infer, model in calls]
    model_ms = [model for _, _, model in calls]
    med_backend = statistics.median(backend_ms)
    overhead = [s + med_backend for s in server_ms]
    return {
        "batch": clients,
        "batched": sum(1 for s in sizes if s == clients) / len(sizes),
        "overhead_med": statistics.median(overhead),
        "overhead_p90": float(np.percentile(overhead, 90)),
        "server_med": statistics.median(server_ms),
        "backend_med": med_backend,
        "model_med": statistics.median(model_ms),
        "rtt_med": statistics.median(rtts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--size", type=int, default=224, help="camera frames are SIZE x SIZE (two cameras)")
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or make_checkpoint(Path(tmp), args.size)
        backend = LeRobotBackend(LeRobotPolicyConfig(path=str(checkpoint), device="cpu"))
        backend.warmup()
        timings = Timings(backend)
        info = backend.info()
        print(f"tiny ACT ({checkpoint}): cameras {[(c.name, c.shape) for c in info.cameras]}, horizon {info.horizon}, "
              f"torch threads {torch.get_num_threads()}")
        print(f"{'batch':>5} {'batched':>8} {'overhead med':>13} {'p90':>8} {'server':>8} {'backend':>8} {'model':>8} {'client rtt':>11}  (ms)")
        for clients in (1, 4):
            r = asyncio.run(measure(backend, timings, clients, args.requests, args.size))
            print(f"{r['batch']:>5} {r['batched']:>8.0%} {r['overhead_med']:>13.2f} {r['overhead_p90']:>8.2f} {r['server_med']:>8.2f} "
                  f"{r['backend_med']:>8.2f} {r['model_med']:>8.2f} {r['rtt_med']:>11.2f}")
        print("overhead = server total_ms - model call; server = total_ms - backend.infer; backend = backend.infer - model call")


if __name__ == "__main__":
    main()
