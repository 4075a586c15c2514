"""The first thing a lab does: serve the scripted expert, then `vla run --robot sim --task lift --record`.

It used to record episodes of an arm that never moved (every request refused because the
client sent cameras to a policy that takes none, the run table saying "rejected 0", exit 0).
Here the real `vla serve --policy scripted`, the real `vla run` and LeRobot's own loader check
that the episodes succeed, that no request failed, and that the recorded actions move.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

VLA = str(Path(sys.executable).parent / "vla")

pytest.importorskip("mujoco")
pytest.importorskip("vla_sim")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scripted_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([VLA, "serve", "--policy", "scripted", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if json.loads(response.read()).get("status") == "ready":
                    break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        raise AssertionError("vla serve --policy scripted did not become ready")
    yield f"ws://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)
    log.close()


def test_recording_the_scripted_expert_on_the_sim_records_two_successful_moving_episodes(scripted_server, tmp_path):
    pytest.importorskip("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla.client.ticklog import read_log

    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "vla.yaml").write_text("plugins:\n  sim:\n    image_height: 96\n    image_width: 128\n")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env.pop("ARM_ID", None)
    result = subprocess.run(
        [VLA, "run", "--robot", "sim", "--task", "lift", "--episodes", "2", "--record", "datasets/",
         "--policy-url", scripted_server],
        capture_output=True, text=True, cwd=lab, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Svt[" not in result.stderr and "Map:" not in result.stderr, "encoder chatter belongs in the log file"
    (log,) = list((lab / "logs").glob("run_*.jsonl"))
    records = list(read_log(log))
    ends = [r for r in records if r["type"] == "episode" and r["phase"] == "end"]
    assert [e["success"] for e in ends] == [True, True]
    assert not [r for r in records if r["type"] == "event" and r.get("event") == "error"]
    assert all(e["counts"].get("errors", 0) == 0 and e["counts"]["replies"] > 0 for e in ends)
    encoder_log = log.with_suffix(".encoder.log")
    assert encoder_log.is_file() and "Svt" in encoder_log.read_text(errors="replace")

    (dataset,) = list((lab / "datasets").iterdir())
    assert "//" not in result.stdout.replace("ws://", "")
    ds = LeRobotDataset(f"local/{dataset.name}", root=dataset)
    assert ds.meta.total_episodes == 2
    for episode in range(2):
        start = int(ds.meta.episodes[episode]["dataset_from_index"])
        stop = int(ds.meta.episodes[episode]["dataset_to_index"])
        actions = np.stack([ds[i]["action"].numpy() for i in range(start, stop, 5)])
        travel = np.abs(np.diff(actions, axis=0)).sum(axis=0)
        assert travel[:5].max() > 0.3, f"episode {episode}: the recorded arm barely moved ({travel})"
        assert ds[start]["task"] == "lift the yellow cube"
