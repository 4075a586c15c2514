"""Served by the real `vla serve` in another process to a real simulated arm through the same
session runner as `vla run`/`vla eval`/`vla learn` (controller, safety layer, lockstep link on a
simulated clock): the learned lift parameters lift the cube, and no command is clamped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import GOALS, LEARNED

VLA = str(Path(sys.executable).parent / "vla")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, *settings: str) -> subprocess.Popen:
    args = [VLA, "serve", "--policy", "primitives", "--port", str(port), "--log-level", "warning"]
    for s in settings:
        args += ["--set", s]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vla serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("vla serve did not become ready")


def test_served_lift_through_the_session_runner(tmp_path, calibration_file):
    from vla.client.runner import SessionOptions, SessionRunner
    from vla.config import load_config

    params = tmp_path / "lift.json"
    params.write_text(json.dumps({"task": GOALS["lift"], "params": LEARNED["lift"]}))
    (tmp_path / "vla.yaml").write_text("log_dir: logs\nplugins:\n  sim:\n    cameras: [front]\n")
    port = _free_port()
    proc = _serve(port, f"calibration={calibration_file}", f"params={params}", "robot=sim")
    try:
        lab = load_config(tmp_path / "vla.yaml", environ={})
        options = SessionOptions(tasks=GOALS["lift"], robot="sim", episodes=3, seed=730000, clock="simulated",
                                 sim_latency_s=0.1, policy_url=f"ws://127.0.0.1:{port}", actions_per_chunk=600,
                                 handle_signals=False, log_dir=str(tmp_path / "logs"), kind="test")
        summary = SessionRunner(lab, options).run()
    finally:
        proc.terminate()
        proc.wait(10)
    assert summary.exit_code == 0, summary.error
    assert [r.success for r in summary.episodes] == [True, True, True]
    records = [json.loads(line) for line in Path(summary.log_path).read_text().splitlines()]
    ticks = [r for r in records if r["type"] == "tick"]
    chunks = [r for r in records if r["type"] == "chunk"]
    assert not any(t["clamps"] for t in ticks)  # nothing for the safety layer to correct
    assert len(chunks) <= 2 * 3  # long chunks: at most two requests an episode
    assert all(r["type"] != "event" or r["event"] not in ("error", "rejected") for r in records)


def test_serve_refuses_a_missing_calibration_in_one_line():
    result = subprocess.run([VLA, "serve", "--policy", "primitives", "--port", "0", "--set", "robot=sim"],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == 2
    assert "need a camera calibration: set calibration=PATH" in result.stderr
