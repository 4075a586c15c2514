"""How fast the simulated SO-101 runs: control steps per second, with cameras rendered when asked.

A policy served by `vla serve` asks for an observation (both cameras) each time the client
requests a chunk: with chunks of 40 and a threshold of 0.6 that is every 16 ticks; a policy
without chunking asks every tick. This script drives the sim with the scripted expert's chunks
(in-process, so the network is not measured) and times the simulator alone (physics + rendering)
in each regime, then reports the real-time factor against the 30 Hz control rate.

    python bench/sim_rate.py [--seconds 20] [--size 224]
Target: at least 30 simulated control steps per second with both cameras at 224x224.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")

TARGET_STEPS_PER_S = 30.0


def measure(robot, policy, observe_every: int, seconds: float, task: str) -> dict:
    """Run ``seconds`` of simulated control, observing (both cameras) every ``observe_every`` ticks."""
    sim_s = plan_s = 0.0
    ticks = observes = 0
    seed = 0
    robot.reset(task, seed)
    queue = []
    while ticks < seconds * robot.control_hz:
        if robot.timed_out() or robot.success():
            seed += 1
            robot.reset(task, seed)
            queue = []
        if ticks % observe_every == 0 or not queue:
            t0 = time.perf_counter()
            obs = robot.observe()
            sim_s += time.perf_counter() - t0
            observes += 1
            t0 = time.perf_counter()
            queue = list(policy.infer([obs])[0])
            plan_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        robot.act(queue.pop(0))
        sim_s += time.perf_counter() - t0
        ticks += 1
    return {"ticks": ticks, "observes": observes, "sim_s": sim_s, "plan_s": plan_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds per regime")
    parser.add_argument("--size", type=int, default=224, help="camera height and width")
    parser.add_argument("--task", default="pick_place")
    args = parser.parse_args()

    from vla_sim.config import SimConfig
    from vla_sim.expert import ScriptedPolicy
    from vla_sim.robot import SimRobot

    t0 = time.perf_counter()
    robot = SimRobot(SimConfig(image_height=args.size, image_width=args.size))
    robot.reset(args.task, 0)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    robot.observe()
    first_render_s = time.perf_counter() - t0
    policy = ScriptedPolicy()
    policy.warmup()

    # render cost alone
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        robot.observe()
    observe_ms = (time.perf_counter() - t0) / n * 1000

    print(f"sim build {build_s:.2f} s, first render (GL context) {first_render_s:.2f} s")
    print(f"observe() with 2 cameras at {args.size}x{args.size}: {observe_ms:.1f} ms")
    print(f"{'regime':<34}{'steps/s':>10}{'x real time':>13}{'plan ms/chunk':>15}")
    rows = []
    regimes = [("physics only (no cameras)", None), ("cameras every 20 ticks (chunk 40, 0.5)", 20),
               ("cameras every 16 ticks (chunk 40, 0.6)", 16), ("cameras every tick", 1)]
    for label, every in regimes:
        if every is None:
            robot.reset(args.task, 0)
            ticks = int(args.seconds * robot.control_hz)
            q = robot.joint_positions()
            t0 = time.perf_counter()
            for _ in range(ticks):
                robot.act(q)
            sim_s, plan_ms = time.perf_counter() - t0, float("nan")
        else:
            r = measure(robot, policy, every, args.seconds, args.task)
            ticks, sim_s = r["ticks"], r["sim_s"]
            plan_ms = r["plan_s"] / r["observes"] * 1000
        rate = ticks / sim_s
        rows.append((label, rate))
        print(f"{label:<34}{rate:>10.0f}{rate / robot.control_hz:>13.1f}{plan_ms:>15.1f}")
    robot.close()
    worst = min(rate for _, rate in rows[1:])
    verdict = "meets" if worst >= TARGET_STEPS_PER_S else "MISSES"
    print(f"slowest rendered regime: {worst:.0f} steps/s -> {verdict} the target of {TARGET_STEPS_PER_S:.0f} steps/s")


if __name__ == "__main__":
    main()
