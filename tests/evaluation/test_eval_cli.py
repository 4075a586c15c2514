"""`vla eval` on the MuJoCo SO-101 against a real policy server (the scripted expert) over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

VLA = str(Path(sys.executable).parent / "vla")

pytest.importorskip("mujoco")
pytest.importorskip("vla_sim")


@pytest.fixture(scope="module")
def scripted_server():
    """`vla serve`'s server class with the `scripted` policy from vla-sim, on a loopback port."""
    from vla.plugins import get_spec
    from vla.serving.server import PolicyServer

    backend = get_spec("policies", "scripted").build()
    loop = asyncio.new_event_loop()
    server = PolicyServer(backend, host="127.0.0.1", port=0)
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        loop.run_until_complete(server.wait_settled(60))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(60)
    yield f"ws://127.0.0.1:{server.port}"
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def lab(tmp_path):
    """A lab folder whose sim renders small frames (the video is the only thing that renders)."""
    (tmp_path / "vla.yaml").write_text("plugins:\n  sim:\n    image_height: 96\n    image_width: 128\n")
    return tmp_path


def vla_eval(lab, *args, timeout=240):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([VLA, "eval", *args], capture_output=True, text=True, cwd=lab, env=env, timeout=timeout)


def test_eval_reports_success_at_k_per_task_with_plot_json_and_video(scripted_server, lab):
    out = lab / "eval"
    result = vla_eval(lab, "--robot", "sim", "--task", "lift", "--task", "push_left", "--episodes", "2",
                      "--seed", "3", "--k", "1,2", "--policy-url", scripted_server, "--out", str(out),
                      "--video", "lift.gif")
    assert result.returncode == 0, result.stderr + result.stdout
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["lift", "push_left"] and results["k"] == [1, 2]
    assert results["policy"] == "scripted" and results["robot"] == "sim"
    # what `vla board` reads: when, which video, and each run's incidents (the sim's knocked-off cubes)
    assert results["video"] == "lift.gif" and results["finished_at"] > 1.7e9 and "checkpoint" in results
    assert all(isinstance(run["incidents"], list) for r in results["tasks"].values() for run in r["runs"])
    ends = [json.loads(line) for line in (out / "ticks.jsonl").read_text().splitlines()]
    ends = [r for r in ends if r["type"] == "episode" and r["phase"] == "end"]
    for task, r in results["tasks"].items():
        assert r["episodes"] == 2 and [run["seed"] for run in r["runs"]] == [3, 4]
        logged = [e["success"] for e in ends if e["task"] == task]
        assert [run["success"] for run in r["runs"]] == logged
        c = sum(logged)
        assert r["successes"] == c
        assert r["success_at"]["1"] == pytest.approx(c / 2)
        assert r["success_at"]["2"] == pytest.approx(1.0 if c else 0.0)
    # the expert does its job through the whole client (serving, queue, RTC merge, safety); its
    # own success rate is vla-sim's to test, this only shows the chain can carry it
    assert sum(r["successes"] for r in results["tasks"].values()) >= 2
    for column in ("success@1", "success@2", "lift", "push_left"):
        assert column in result.stdout
    assert (out / "success.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    gif = Image.open(out / "lift.gif")
    assert gif.size == (128, 96) and gif.n_frames >= 5
    counts = results["tasks"]["lift"]["runs"][0]["counts"]
    # 10 fps of a 30 Hz episode; the GIF writer merges identical frames, which the arm holding
    # still before the first chunk makes (more of them on a loaded machine)
    expected = counts["ticks"] // 3 + 1
    assert expected - (counts["holds"] // 3 + 2) <= gif.n_frames <= expected + 1, (gif.n_frames, counts)


def test_eval_counts_failures_when_episodes_time_out(scripted_server, lab):
    out = lab / "short"
    result = vla_eval(lab, "--robot", "sim", "--task", "pick_place", "--episodes", "2", "--duration", "0.5",
                      "--policy-url", scripted_server, "--out", str(out))
    assert result.returncode == 0, result.stderr
    r = json.loads((out / "results.json").read_text())["tasks"]["pick_place"]
    assert r["episodes"] == 2 and r["successes"] == 0 and r["success_at"]["1"] == 0.0
    assert all(run["success"] is False and run["duration_s"] < 2.0 for run in r["runs"])


def test_eval_refuses_a_robot_that_cannot_judge_episodes(lab):
    result = vla_eval(lab, "--robot", "kinematic", "--task", "wave", "--policy-url", "ws://127.0.0.1:9")
    assert result.returncode != 0
    assert "cannot reset and judge episodes" in result.stderr
