"""`vla run --preflight` against a real `vla serve --policy lerobot` serving the tiny ACT trained on the
training dataset: it refuses to start with front and wrist crossed, naming the check, and starts
when the deployment matches. Off by default on the simulator; on by default for a real arm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from vla.cli import cli
from vla.matching.checks import PREFLIGHT_CHECKS

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]
VLA = str(Path(sys.executable).parent / "vla")


@pytest.fixture(scope="module")
def served_act(checkpoints, lab, tmp_path_factory):
    """`vla serve --policy lerobot` on the matching checkpoint, in a subprocess; yields its ws:// URL."""
    import socket

    root = tmp_path_factory.mktemp("serve")
    config = root / "vla.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"lerobot": {"path": str(checkpoints["matching"])}}}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "serve.log", "w+")
    process = subprocess.Popen([VLA, "--config", str(config), "serve", "--policy", "lerobot", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"vla serve exited:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "vla serve did not become ready"
            time.sleep(0.5)
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def run(lab: Path, *args: str):
    result = CliRunner().invoke(cli, ["--config", str(lab / "vla.yaml"), "run", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def events(log_dir: Path, name: str) -> list[dict]:
    records = [json.loads(line) for p in log_dir.glob("*.jsonl") for line in p.read_text().splitlines()]
    return [r for r in records if r.get("type") == "event" and r.get("event") == name]


def test_preflight_refuses_crossed_cameras_before_anything_moves(training, served_act, lab, tmp_path, with_crossed_sim):
    logs = tmp_path / "logs"
    result = run(lab, "--arm", "crossed", "--task", "lift", "--policy-url", served_act, "--preflight",
                 "--dataset", str(training), "--log-dir", str(logs), "--duration", "1")
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "pre-flight check failed: camera_identity: cameras swapped" in result.stderr
    assert "front looks like the training's wrist" in result.stderr
    (event,) = events(logs, "preflight")
    assert event["status"] == "fail" and event["checks"]["camera_identity"] == "fail"
    assert event["checks"]["task"] == event["checks"]["cameras"] == "pass"
    # without --checkpoint the server's metadata stands in: it does not say how long the policy trained
    assert event["checks"]["training_length"] == "skip"
    records = [json.loads(line) for p in logs.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert not [r for r in records if r["type"] == "tick"], "the arm was commanded before the pre-flight refused"


def test_preflight_lets_a_matching_deployment_start(training, checkpoints, served_act, lab, tmp_path):
    logs = tmp_path / "logs"
    result = run(lab, "--arm", "sim0", "--task", "lift", "--policy-url", served_act, "--preflight",
                 "--dataset", str(training), "--checkpoint", str(checkpoints["matching"]), "--log-dir", str(logs),
                 "--duration", "1", "--seed", "7")
    assert result.exit_code == 0, result.stdout + result.stderr
    (event,) = events(logs, "preflight")
    assert event["status"] == "pass" and event["checks"] == {n: "pass" for n in PREFLIGHT_CHECKS}, event
    records = [json.loads(line) for p in logs.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len([r for r in records if r["type"] == "tick"]) >= 5


def test_preflight_is_off_on_the_sim_by_default_and_needs_a_dataset_when_asked(served_act, lab, tmp_path,
                                                                                with_crossed_sim):
    logs = tmp_path / "logs"
    result = run(lab, "--arm", "crossed", "--task", "lift", "--policy-url", served_act, "--log-dir", str(logs),
                 "--duration", "0.5")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert events(logs, "preflight") == []
    result = run(lab, "--arm", "sim0", "--task", "lift", "--policy-url", served_act, "--preflight", "--log-dir",
                 str(logs), "--duration", "0.5")
    assert result.exit_code == 3 and "--preflight needs the training dataset" in result.stderr


def test_preflight_is_on_by_default_for_a_real_arm(training, served_act, tmp_path):
    """A robot that cannot reset itself counts as hardware: core's kinematic test arm here, standing at
    all-zero joints, which the training (every episode from the sim's home pose) never started from."""
    config = tmp_path / "vla.yaml"
    config.write_text(yaml.safe_dump({"preflight": {"dataset": str(training)}, "log_dir": "logs",
                                      "client": {"actions_per_chunk": 10, "merge": "latest", "control_hz": 10}}))
    args = ["--config", str(config), "run", "--robot", "kinematic", "--task", "lift the yellow cube", "--policy-url",
            served_act, "--duration", "0.5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "pre-flight check failed: start_state" in result.stderr and "shoulder_lift" in result.stderr
    (event,) = events(tmp_path / "logs", "preflight")
    assert event["checks"]["start_state"] == "fail"
    skipped = CliRunner().invoke(cli, [*args[:3], "--no-preflight", *args[3:]])
    assert skipped.exit_code == 0, skipped.stdout + skipped.stderr


def test_doctor_reads_the_policys_contract_from_a_running_server(training, served_act, lab):
    """`vla doctor --policy-url`: cameras and chunking from the server's metadata frame, no training length."""
    result = CliRunner().invoke(cli, ["--config", str(lab / "vla.yaml"), "doctor", "--dataset", str(training),
                                      "--policy-url", served_act, "--arm", "sim0", "--task", "lift", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert report["checkpoint"]["policy"] == "lerobot/act" and report["checkpoint"]["path"] == served_act
    assert by_name["cameras"]["numbers"]["policy"] == {"front": [48, 64, 3], "wrist": [48, 64, 3]}
    assert by_name["chunking"]["numbers"]["horizon"] == 10 and by_name["chunking"]["status"] == "pass"
    assert by_name["training_length"]["status"] == "skip"
