"""`make demo`: the whole loop on one machine, with the simulated arm and CPU models.

It starts a policy server with the scripted expert (`vla serve --policy scripted`), waits
until it reports ready, drives the simulated SO-101 through `vla eval` on each task for a
few episodes over a real WebSocket, and leaves in demo-output/: the success rate per task,
a video of one episode, and a plot of the run (queue length, round trips, safety clamps).

Then the headline: `vla learn` teaches two simulated arms to lift the cube from the heuristic
rewarder's scores alone (no demonstrations), and reports the learned policy's success on
held-out layouts by the simulator's physics check, with its learning curve, in
demo-output/learn/. DEMO_LEARN=0 skips it; DEMO_LEARN_BUDGET sets its episode budget.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-output"
VLA = str(Path(sys.executable).parent / "vla")
TASKS = ("pick_place", "push_left", "lift")
EPISODES = int(os.environ.get("DEMO_EPISODES", "3"))
LEARN = os.environ.get("DEMO_LEARN", "1") != "0"
LEARN_BUDGET = int(os.environ.get("DEMO_LEARN_BUDGET", "240"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    status = "starting"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the policy server exited with code {server.returncode}; see {OUT / 'server.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                status = json.loads(response.read()).get("status", "?")
        except OSError:
            pass
        except ValueError:
            status = "?"
        if status == "ready":
            return
        time.sleep(0.5)
    raise SystemExit(f"the policy server did not become ready in {timeout_s:.0f} s (last status: {status})")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    port = free_port()
    print(f"vla demo: serving the scripted expert on ws://127.0.0.1:{port}", flush=True)
    with open(OUT / "server.log", "w") as log:
        server = subprocess.Popen(
            [VLA, "serve", "--policy", "scripted", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_ready(port, server)
        args = [VLA, "eval", "--robot", "sim", "--policy-url", f"ws://127.0.0.1:{port}"]
        for task in TASKS:
            args += ["--task", task]
        args += ["--episodes", str(EPISODES), "--k", "1," + str(EPISODES), "--out", str(OUT), "--video", "episode.mp4"]
        print("vla demo: " + " ".join(Path(a).name if a == VLA else a for a in args), flush=True)
        result = subprocess.run(args, env=env)
        if result.returncode != 0:
            return result.returncode
        subprocess.run([VLA, "report", str(OUT / "ticks.jsonl"), "--out", str(OUT / "run.png")], env=env, check=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    if LEARN:
        code = learn(env)
        if code != 0:
            return code
    print(f"vla demo: results, video and plots are in {OUT.relative_to(ROOT)}/")
    for path in sorted(OUT.rglob("*")):
        if path.suffix in (".mp4", ".gif", ".png", ".json"):
            print(f"  {path.relative_to(ROOT)}")
    return 0


def learn(env: dict) -> int:
    """`vla learn` on lift: two arms, the heuristic rewarder, no demonstrations."""
    out = OUT / "learn"
    args = [VLA, "learn", "--task", "lift", "--robot", "sim", "--arms", "2", "--rewarder", "heuristic",
            "--budget", str(LEARN_BUDGET), "--heldout", "20", "--out", str(out)]
    if (out / "result.json").is_file():
        shutil.rmtree(out)  # an earlier demo's finished run: learn again from scratch
    elif (out / "checkpoint.json").is_file():
        args.append("--resume")  # an earlier demo stopped mid-run: go on from its checkpoint
    print("vla demo: " + " ".join(Path(a).name if a == VLA else a for a in args), flush=True)
    result = subprocess.run(args, env=env)
    if result.returncode != 0:
        print(f"vla demo: vla learn failed with exit code {result.returncode}; see {out.relative_to(ROOT)}/", flush=True)
        return result.returncode
    summary = json.loads((out / "result.json").read_text())
    heldout = summary["heldout"]
    print(f"vla demo: learned lift from rewarder scores in {summary['episodes']} episodes: "
          f"{heldout['audited_successes']}/{heldout['episodes']} held-out layouts lifted (simulator physics), "
          f"rewarder said {heldout['rewarder_successes']}/{heldout['episodes']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
