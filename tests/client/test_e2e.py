"""End to end over real loopback sockets: the policy server, the `vla run` client and the kinematic arm.

The arm is the kinematic SO-101 test arm (a physical arm cannot run here); everything else is
the real thing: websocket, msgpack, the server with its batcher, the client's worker thread,
the control loop on real time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vla.builtins import TEST_CAMERAS, TimedPolicyConfig
from vla.client.clock import RealClock
from vla.client.controller import Controller, ControlSettings
from vla.client.safety import SafetyLayer
from vla.client.session import run_episodes, wait_connected
from vla.client.ticklog import TickLog, read_log
from vla.client.worker import InferenceWorker
from vla_so101_description.description import SO101
from vla.testing.policies import TimedPolicy

VLA = str(Path(sys.executable).parent / "vla")
PERIOD = 1 / 30


def run_client(url, merge, seconds, arm, max_backoff_s=2.0, log_path=None, jpeg_quality=None):
    clock = RealClock()
    safety = SafetyLayer(SO101.default_safety(), arm.joint_names, arm.forward_kinematics)
    log = TickLog(log_path, t0=clock.now())
    log.records = []
    controller = Controller(arm, safety, ControlSettings(30.0, merge=merge), clock, log, task="e2e", session="t")
    worker = InferenceWorker(url, connect_timeout_s=5.0, max_backoff_s=max_backoff_s, jpeg_quality=jpeg_quality).start()
    try:
        wait_connected(controller, worker, clock, 10.0)
        results = run_episodes(arm, controller, worker, clock, task="e2e", episodes=1, episode_s=seconds)
    finally:
        worker.stop()
        log.close()
    return controller, log, results


def kinds(records, kind):
    return [r for r in records if r["type"] == kind]


@pytest.mark.parametrize("merge", ["latest", "weighted_average", "rtc"])
def test_server_client_and_arm_over_loopback(policy_server, arm_factory, merge):
    # 2 mrad per tick keeps every joint inside its range for the whole run
    policy = TimedPolicy(TimedPolicyConfig(batch_cost_ms=40.0, jitter_ms=20.0, horizon=40, step=0.002))
    server = policy_server(policy)
    arm = arm_factory(cameras=TEST_CAMERAS)
    controller, log, _ = run_client(server.url, merge, 2.0, arm)
    ticks, chunks = kinds(log.records, "tick"), kinds(log.records, "chunk")
    assert 55 <= len(ticks) <= 62
    assert len(chunks) >= 3 and policy.calls == len(chunks)
    assert all(0 < c["rtt_ms"] < 1000 for c in chunks)
    assert all(c["server_timing"]["infer_ms"] >= 20.0 for c in chunks)
    executed = [t for t in ticks if not t["hold"]]
    assert len(executed) >= len(ticks) - 6  # only start-up holds
    assert controller.counts["underflows"] == 0
    assert all(t["t_exec"] <= t["deadline"] for t in executed)
    # the arm moved the way the policy said (it ramps every joint by 2 mrad per tick)
    commands = np.array([q for _, q in arm.commands])
    assert np.abs(commands[-1] - commands[0]).max() > 0.08
    if merge == "rtc":
        assert all(c["delay"] >= 1 for c in chunks[1:])
        assert max(c["discontinuity"] for c in chunks[1:]) < 0.02  # the policy kept the frozen prefix
    layer = SafetyLayer(SO101.default_safety(), arm.joint_names, arm.forward_kinematics)
    assert all(layer.violations(q) == [] for q in commands)


class SeeingPolicy(TimedPolicy):
    """The timed test policy, keeping the frames it was given."""

    keeps_inputs = True

    frames: list

    def infer(self, batch):
        self.frames = getattr(self, "frames", []) + [obs["observation.images.front"] for obs in batch]
        return super().infer(batch)


def test_frames_can_travel_as_jpeg(policy_server, arm_factory):
    policy = SeeingPolicy(TimedPolicyConfig(batch_cost_ms=10.0, horizon=40, step=0.001))
    server = policy_server(policy)
    arm = arm_factory(cameras=TEST_CAMERAS)
    controller, log, _ = run_client(server.url, "latest", 1.0, arm, jpeg_quality=60)
    assert len(kinds(log.records, "chunk")) >= 2 and not kinds(log.records, "event")[1:]
    received = policy.frames[0]
    sent = arm._render("front", arm.cameras["front"], arm.forward_kinematics(np.zeros(6)))
    assert received.shape == sent.shape and received.dtype == np.uint8
    diff = np.abs(received.astype(int) - sent.astype(int))
    assert 0 < diff.mean() < 6  # lossy: JPEG went over the wire, and decoded to the same RGB picture


def start_vla_serve(port: int, env=None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [VLA, "serve", "--policy", "timed", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vla serve exited: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("vla serve did not become ready")


def test_server_killed_mid_run_the_arm_holds_then_resumes(arm_factory, free_port, tmp_path):
    """`vla serve` is SIGKILLed mid-run and started again on the same port."""
    port = free_port
    servers = [start_vla_serve(port)]
    arm = arm_factory(cameras=TEST_CAMERAS)
    marks = {}
    clock = RealClock()

    def chaos():
        time.sleep(1.5)
        marks["kill"] = clock.now()
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait()
        time.sleep(1.0)
        marks["restart"] = clock.now()
        servers.append(start_vla_serve(port))
        marks["ready"] = clock.now()

    thread = threading.Thread(target=chaos, daemon=True)
    try:
        thread.start()
        controller, log, _ = run_client(f"ws://127.0.0.1:{port}", "rtc", 7.0, arm, max_backoff_s=0.25,
                                        log_path=tmp_path / "ticks.jsonl")
    finally:
        thread.join(40)
        for s in servers:
            s.kill()
            s.wait()
    records = list(read_log(tmp_path / "ticks.jsonl"))  # the JSONL tick log as written
    assert records == log.records
    ticks = kinds(records, "tick")
    t = lambda key: marks[key] - log.t0  # noqa: E731 — the log's times count from log.t0
    lost = [e for e in kinds(records, "event") if e["event"] == "disconnected"]
    assert len(lost) == 1
    t_lost = lost[0]["t"]
    # the client noticed the dead server at once (the socket closed), not at its next request
    assert 0 <= t_lost - t("kill") < 0.5
    # and held from the very next tick, within one control period of knowing (plus whatever
    # the OS adds to a sleep on a busy machine)
    before = [r for r in ticks if r["t"] < t_lost]
    after = [r for r in ticks if r["t"] >= t_lost]
    assert after[0]["tick"] == before[-1]["tick"] + 1 + after[0]["missed"]
    assert after[0]["hold"] and after[0]["reason"] == "disconnected"
    assert after[0]["t"] - t_lost <= PERIOD + 0.05
    back = [e for e in kinds(records, "event") if e["event"] == "connected" and e["t"] > t_lost]
    assert back, "the client did not reconnect"
    t_back = back[0]["t"]
    assert t("ready") - 0.5 <= t_back < t("ready") + 1.0
    during = [r for r in ticks if t_lost <= r["t"] < t_back]
    assert len(during) >= 20 and all(r["hold"] for r in during)
    holds = {tuple(r["command"]) for r in during}
    assert len(holds) == 1  # one position held throughout
    resumed = [r for r in ticks if r["t"] > t_back and not r["hold"]]
    assert len(resumed) >= 30
    # never an action after its deadline, across the whole run
    executed = [r for r in ticks if not r["hold"]]
    assert executed and all(r["t_exec"] <= r["deadline"] for r in executed)
    assert not [r for r in ticks if r["reason"] == "late"]


def test_vla_run_cli_stops_on_sigterm_and_vla_report_plots_the_log(policy_server, tmp_path):
    policy = TimedPolicy(TimedPolicyConfig(batch_cost_ms=30.0, horizon=40, step=0.002))
    server = policy_server(policy)
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen(
        [VLA, "run", "--robot", "kinematic", "--task", "wave", "--policy-url", server.url, "--merge", "rtc",
         "--log-dir", str(log_dir), "--duration", "60"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logs = list(log_dir.glob("run_*.jsonl"))
            if logs and sum(1 for r in read_log(logs[0]) if r["type"] == "chunk") >= 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("vla run never merged a chunk")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    records = list(read_log(logs[0]))
    assert records[0]["type"] == "run" and records[0]["robot"] == "kinematic"
    stop = [r for r in records if r["type"] == "event" and r["event"] == "stop"]
    end = [r for r in records if r["type"] == "episode" and r["phase"] == "end"]
    assert stop and stop[0]["reason"] == "SIGTERM"
    assert end and end[0]["interrupted"] is True

    png = tmp_path / "run.png"
    report = subprocess.run([VLA, "report", str(logs[0]), "--out", str(png)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert report.returncode == 0, report.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert '"underflows": 0' in report.stdout and '"executed_after_deadline": 0' in report.stdout


@pytest.mark.lerobot
def test_vla_run_records_episodes_and_sigterm_closes_the_current_one(policy_server, tmp_path):
    """`vla run --record`: a finished episode and one stopped by SIGTERM both land in the dataset."""
    pytest.importorskip("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    policy = TimedPolicy(TimedPolicyConfig(batch_cost_ms=20.0, horizon=40, step=0.001))
    server = policy_server(policy)
    record = tmp_path / "data"
    (tmp_path / "vla.yaml").write_text("arms:\n  arm7: arm7.yaml\n")
    (tmp_path / "arm7.yaml").write_text("robot: kinematic\n")
    proc = subprocess.Popen(
        [VLA, "run", "--task", "wave", "--policy-url", server.url, "--episodes", "5",
         "--duration", "1", "--record", str(record), "--arm", "arm7", "--log-dir", str(tmp_path / "logs")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        log = None
        while time.monotonic() < deadline:
            logs = list((tmp_path / "logs").glob("run_*.jsonl"))
            if logs:
                log = logs[0]
                starts = [r for r in read_log(log) if r["type"] == "episode" and r["phase"] == "start"]
                ticks = [r for r in read_log(log) if r["type"] == "tick" and r["episode"] == 1]
                if len(starts) >= 2 and len(ticks) >= 10:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("vla run never reached its second episode")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    (dataset,) = list(record.iterdir())
    assert dataset.name.endswith("_wave_arm7_" + dataset.name.rsplit("_", 1)[1])
    ds = LeRobotDataset(f"local/{dataset.name}", root=dataset)
    assert ds.meta.total_episodes == 2  # the finished one and the one SIGTERM closed
    ends = [r for r in read_log(log) if r["type"] == "episode" and r["phase"] == "end"]
    assert [e["interrupted"] for e in ends] == [False, True]
    frames = ends[0]["counts"]["ticks"]
    assert 25 <= frames <= 31 and ds.meta.episodes[0]["length"] == frames
    item = ds[0]
    assert tuple(item["observation.images.front"].shape) == (3, 240, 320)
    assert tuple(item["action"].shape) == (6,)


@pytest.mark.parametrize("merge", ["latest", "weighted_average", "rtc"])
def test_the_simulated_arm_solves_lift_through_the_client(policy_server, merge):
    """Server (scripted expert from vla-sim), client and the MuJoCo SO-101, over loopback."""
    pytest.importorskip("mujoco")
    pytest.importorskip("vla_sim")
    os.environ.setdefault("MUJOCO_GL", "egl")
    from vla.plugins import get_spec

    server = policy_server(get_spec("policies", "scripted").build())
    robot = get_spec("robots", "sim").build()
    robot.connect()
    try:
        clock = RealClock()
        safety = SafetyLayer(SO101.default_safety(), robot.joint_names, robot.forward_kinematics)
        log = TickLog(None, t0=clock.now())
        log.records = []
        controller = Controller(robot, safety, ControlSettings(robot.control_hz, merge=merge), clock, log)
        worker = InferenceWorker(server.url).start()
        try:
            wait_connected(controller, worker, clock, 10.0)
            (result,) = run_episodes(robot, controller, worker, clock, task="lift", seed=5, episodes=1)
        finally:
            worker.stop()
    finally:
        robot.disconnect()
    assert result.success is True, result
    assert result.counts["underflows"] == 0
    executed = [r for r in log.records if r["type"] == "tick" and not r["hold"]]
    assert all(r["t_exec"] <= r["deadline"] for r in executed)
