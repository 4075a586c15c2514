"""Asynchronous control at 30 Hz against a policy that takes 150 +- 50 ms, for each merge mode.

Prints, per merge mode: underflows per minute (target 0), observe-to-action in ticks (from
the tick an observation was taken to the first tick that executes an action of the chunk
computed from it), and the largest joint jump between consecutive commands at chunk
boundaries (the executed target came from a different chunk than the tick before) next to
the largest jump inside chunks. ``rtc (max delay)`` is RTC with the frozen prefix sized by the
slowest recent reply, as before issue 13; ``rtc`` sizes it by the 90th percentile.

Time: by default the run is on **simulated time**. The real `vla run` control loop
(``vla.client.controller`` + ``vla.client.session``) runs against a ``SimulatedClock``; each
request is answered by a real ``PolicyBackend`` at once and its reply is delivered after a
latency drawn uniformly from 100-200 ms of simulated time (``vla.client.simlink``). So two
simulated minutes per mode take a few seconds, and a seed reproduces a run exactly.
``--real SECONDS`` also runs each mode in real time over a loopback websocket against the
policy server (``vla.serving.server.PolicyServer``) answering with the same policy, which then
sleeps so each call takes 100-200 ms.

The policy tracks a smooth reference trajectory; every chunk carries its own small error
(as two forward passes of a real model disagree), so chunk seams show up as jumps unless the
merge hides them. It honours RTC inputs the way RTC does: the first ``inference_delay``
actions equal the previous chunk, then a guidance weight falls linearly to zero over the
rest of the overlap.

    python bench/async_control.py [--minutes 2] [--seed 0] [--plot out.png] [--real 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

from vla.client.clock import SimulatedClock
from vla.client.controller import Controller, ControlSettings
from vla.client.queue import MERGE_MODES
from vla.client.safety import SafetyLayer
from vla.client.session import run_episodes, wait_connected
from vla.client.simlink import SimulatedLink
from vla.client.ticklog import TickLog
from vla_so101_description.description import SO101
from vla.policy import PolicyInfo

HZ = 30.0
HORIZON = 40
CHUNK_ERROR_RAD = 0.03  # std of each chunk's own offset from the reference


def reference(t: np.ndarray) -> np.ndarray:
    """A smooth trajectory inside the SO-101's limits and workspace; (len(t), 6) radians."""
    t = np.asarray(t, dtype=float)[:, None]
    amp = np.array([0.6, 0.25, 0.3, 0.4, 0.8, 0.5])
    freq = np.array([0.10, 0.13, 0.17, 0.11, 0.07, 0.2])  # Hz
    phase = np.array([0.0, 1.0, 2.0, 0.5, 1.5, 0.0])
    centre = np.array([0.0, -0.4, 0.3, 0.0, 0.0, 0.6])
    return centre + amp * np.sin(2 * np.pi * freq * t + phase)


class TrackingPolicy:
    """A PolicyBackend that follows ``reference`` from the observation's timestamp, with per-chunk error."""

    def __init__(self, seed: int, rtc: bool = True, latency_s=None):
        self.rng = np.random.default_rng(seed)
        self.rtc = rtc
        # Real-time mode only: the server passes no client timestamp to backends, so the chunk
        # starts from this process's clock (client and server share the machine), and each
        # call then sleeps like a model on a GPU would take time.
        self.latency_s = latency_s

    def info(self) -> PolicyInfo:
        return PolicyInfo("tracking", (), 6, 6, HORIZON, supports_rtc=self.rtc)

    def warmup(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def infer(self, batch):
        out = []
        started = time.perf_counter()
        for obs in batch:
            t = obs.get("timestamp", started) + np.arange(1, HORIZON + 1) / HZ
            chunk = reference(t) + self.rng.normal(0.0, CHUNK_ERROR_RAD, 6)
            prev = obs.get("prev_chunk")
            if self.rtc and prev is not None and len(prev):
                d = int(obs.get("inference_delay", 0))
                n = min(len(prev), HORIZON)
                # soft mask: 1 on the frozen prefix, then falling linearly to 0 at the overlap's end
                w = np.clip((n - np.arange(n)) / max(1, n - d), 0.0, 1.0)
                w[: min(d, n)] = 1.0
                chunk[:n] = w[:, None] * prev[:n] + (1 - w[:, None]) * chunk[:n]
            out.append(chunk.astype(np.float32))
        if self.latency_s is not None:
            time.sleep(max(0.0, self.latency_s() - (time.perf_counter() - started)))
        return out


def kinematic_arm(t_start: float):
    """The kinematic SO-101 test arm, no cameras, starting on the reference trajectory."""
    from vla.builtins import KinematicArmConfig
    from vla.testing.kinematic import KinematicArm

    arm = KinematicArm(KinematicArmConfig(control_hz=HZ, cameras={}, initial_q=list(reference([t_start])[0])), SO101)
    arm.connect()
    return arm


def jumps(records: list[dict]) -> dict:
    ticks = [r for r in records if r["type"] == "tick"]
    chunks = [r for r in records if r["type"] == "chunk"]
    # From the second chunk on: the first one starts wherever the arm happened to be.
    settled = chunks[1]["t"] if len(chunks) > 1 else 0.0
    seam, inside = [], []
    for a, b in zip(ticks, ticks[1:]):
        if a["hold"] or b["hold"] or a["t"] < settled:
            continue
        jump = float(np.max(np.abs(np.subtract(b["command"], a["command"]))))
        (seam if a["chunk"] != b["chunk"] else inside).append(jump)
    minutes = (ticks[-1]["t"] - ticks[0]["t"]) / 60.0
    underflows = sum(1 for r in ticks if r["underflow"])
    rtts = [c["rtt_ms"] for c in chunks if c.get("rtt_ms") is not None]
    o2a = [c["first_tick"] - c["obs_tick"] for c in chunks[1:]]
    return {
        "o2a_median": float(np.median(o2a)) if o2a else float("nan"),
        "o2a_p90": float(np.percentile(o2a, 90)) if o2a else float("nan"),
        "rtt_median_ms": float(np.median(rtts)) if rtts else float("nan"),
        "rtt_max_ms": max(rtts, default=float("nan")),
        "minutes": minutes,
        "ticks": len(ticks),
        "chunks": sum(1 for r in records if r["type"] == "chunk"),
        "underflows": underflows,
        "underflows_per_min": underflows / minutes if minutes else float("nan"),
        "seam_max": max(seam, default=0.0),
        "seam_mean": float(np.mean(seam)) if seam else 0.0,
        "inside_max": max(inside, default=0.0),
        "inside_mean": float(np.mean(inside)) if inside else 0.0,
        "late": sum(1 for r in ticks if r["reason"] == "late"),
        "clamps": sum(len(r["clamps"]) for r in ticks),
        "ticks_series": ticks,
    }


MODES = {mode: (mode, {}) for mode in MERGE_MODES}
MODES["rtc (max delay)"] = ("rtc", {"rtc_delay_percentile": 100.0})


def latency_model(rng: random.Random, tail: float):
    """Reply latency: uniform 100-200 ms, plus 100-200 ms more for a share ``tail`` of replies
    (a Wi-Fi retry, a GC pause): the slow tail is what the max of recent delays locks on to."""
    return lambda: rng.uniform(0.100, 0.200) + (rng.uniform(0.100, 0.200) if rng.random() < tail else 0.0)


def simulated_run(mode: str, minutes: float, seed: int, tail: float = 0.0) -> dict:
    merge, extra = MODES[mode]
    clock = SimulatedClock()
    arm = kinematic_arm(0.0)
    safety = SafetyLayer(SO101.default_safety(), arm.joint_names, arm.forward_kinematics)
    log = TickLog(None)
    log.records = []
    controller = Controller(arm, safety, ControlSettings(HZ, actions_per_chunk=HORIZON, chunk_size_threshold=0.6,
                                                         merge=merge, **extra), clock, log, task="track")
    rng = random.Random(seed)
    link = SimulatedLink(TrackingPolicy(seed), clock, latency_model(rng, tail))
    wait_connected(controller, link, clock, 5.0)
    t0 = time.perf_counter()
    run_episodes(arm, controller, link, clock, task="track", episodes=1, episode_s=minutes * 60.0)
    out = jumps(log.records)
    out["wall_s"] = time.perf_counter() - t0
    return out


def real_run(mode: str, seconds: float, seed: int) -> dict:
    """The same loop in real time over a loopback websocket to the policy server (timed policy)."""
    import asyncio
    import threading

    from vla.client.clock import RealClock
    from vla.client.worker import InferenceWorker
    from vla.serving.server import PolicyServer  # the server `vla serve` runs

    rng = random.Random(seed)
    policy = TrackingPolicy(seed, latency_s=lambda: rng.uniform(0.100, 0.200))
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(30)
    arm = kinematic_arm(time.perf_counter())
    clock = RealClock()
    safety = SafetyLayer(SO101.default_safety(), arm.joint_names, arm.forward_kinematics)
    log = TickLog(None, t0=clock.now())
    log.records = []
    merge, extra = MODES[mode]
    controller = Controller(arm, safety, ControlSettings(HZ, actions_per_chunk=HORIZON, merge=merge, **extra), clock,
                            log, task="track")
    worker = InferenceWorker(f"ws://127.0.0.1:{server.port}").start()
    try:
        wait_connected(controller, worker, clock, 10.0)
        run_episodes(arm, controller, worker, clock, task="track", episodes=1, episode_s=seconds)
    finally:
        worker.stop()
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    return jumps(log.records)


def print_table(title: str, results: dict[str, dict]) -> None:
    print(title)
    print(f"{'merge':<18}{'minutes':>8}{'chunks':>8}{'underflows/min':>16}{'obs->act ticks p50/p90':>24}"
          f"{'seam max':>10}{'seam mean':>11}"
          f"{'inside max':>12}{'inside mean':>13}{'late':>6}{'clamps':>8}{'rtt p50/max ms':>16}")
    for mode, r in results.items():
        print(f"{mode:<18}{r['minutes']:>8.2f}{r['chunks']:>8d}{r['underflows_per_min']:>16.2f}"
              f"{r['o2a_median']:>17.1f}/{r['o2a_p90']:<6.1f}"
              f"{r['seam_max']:>10.4f}{r['seam_mean']:>11.4f}{r['inside_max']:>12.4f}{r['inside_mean']:>13.4f}"
              f"{r['late']:>6d}{r['clamps']:>8d}{r['rtt_median_ms']:>10.0f}/{r['rtt_max_ms']:<5.0f}")
    print("(jumps: largest change of any joint between consecutive commands, radians)")


def plot(results: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    modes = list(results)
    x = np.arange(len(modes))
    axes[0].bar(x - 0.2, [results[m]["seam_max"] for m in modes], 0.4, label="at chunk boundaries")
    axes[0].bar(x + 0.2, [results[m]["inside_max"] for m in modes], 0.4, label="inside chunks")
    axes[0].set_xticks(x, modes)
    axes[0].set_ylabel("largest joint jump per tick (rad)")
    axes[0].legend()
    for m in modes:
        ticks = results[m]["ticks_series"][: int(10 * HZ)]
        axes[1].plot([t["t"] for t in ticks], [t["command"][0] for t in ticks], label=m, lw=1)
    axes[1].set_xlabel("time (s)")
    axes[1].set_ylabel("shoulder_pan command (rad), first 10 s")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="simulated minutes per merge mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="also write a PNG of the jumps")
    parser.add_argument("--real", type=float, default=0.0, help="also run each mode this many real seconds over loopback")
    parser.add_argument("--tail", type=float, default=0.05, help="share of slow replies in the second simulated table")
    args = parser.parse_args(argv)

    results = {mode: simulated_run(mode, args.minutes, args.seed) for mode in MODES}
    wall = sum(r["wall_s"] for r in results.values())
    print_table(
        f"async control, {HZ:g} Hz, chunks of {HORIZON}, threshold 0.6, policy latency uniform 100-200 ms; "
        f"{args.minutes:g} simulated minutes per mode on a simulated clock ({wall:.1f} s of wall time in all)",
        results,
    )
    if args.plot:
        plot(results, args.plot)
    tailed = {mode: simulated_run(mode, args.minutes, args.seed, args.tail) for mode in MODES}
    print()
    print_table(f"the same with {args.tail:.0%} of replies 100-200 ms slower (a slow tail)", tailed)
    if args.real > 0:
        real = {mode: real_run(mode, args.real, args.seed) for mode in MODES}
        print()
        print_table(f"real time over a loopback websocket to the policy server, {args.real:g} s per mode, "
                    "the same policy sleeping 100-200 ms per call", real)
    for label, table in (("uniform latency", results), (f"{args.tail:.0%} slow tail", tailed)):
        latest, rtc, old = (table[m]["o2a_median"] for m in ("latest", "rtc", "rtc (max delay)"))
        print(f"observe-to-action, median, {label}: latest {latest:.1f} ticks, rtc {rtc:.1f} ({rtc - latest:+.1f}), "
              f"rtc with the max delay {old:.1f} ({old - latest:+.1f})")
    ok = all(r["underflows"] == 0 for r in results.values())
    latest, rtc = tailed["latest"]["o2a_median"], tailed["rtc"]["o2a_median"]
    print(f"verdict: underflows {'0 in every mode' if ok else 'NOT 0'} (uniform latency); "
          f"with a slow tail rtc adds {rtc - latest:+.1f} ticks over latest, "
          f"{tailed['rtc (max delay)']['o2a_median'] - latest:+.1f} with the max delay")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
