"""`vla fleet run`: one process per arm against one policy server, each with its own folder,
log and safety file; SIGTERM or Ctrl-C (SIGINT) holds every arm and closes every episode; an arm that loses its
camera is reported and restarted while the other goes on."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from click.testing import CliRunner

from vla.cli import cli
from vla.client.ticklog import read_log


def episodes(log_path):
    return [r for r in read_log(log_path) if r["type"] == "episode"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_holds_every_arm_and_closes_every_episode(sig, lab, policy, fleet_process, tmp_path):
    config = lab()
    fleet = fleet_process(config, tmp_path / "run", "--all", "--task", "wave", "--policy-url", policy.url)
    fleet.wait_for(lambda: all(fleet.status(a).get("ticks", 0) > 45 for a in ("arm01", "arm02")),
                   what="both arms running")
    fleet.proc.send_signal(sig)
    assert fleet.wait(60) == 128 + sig, fleet.text()
    summary = json.loads((tmp_path / "run" / "fleet.json").read_text())
    assert summary["stopped_by"] == sig.name
    safety_files = set()
    for arm in summary["arms"]:
        # each arm is stopped by the supervisor's SIGTERM, whatever stopped the supervisor
        assert arm["outcome"] == "stopped" and arm["exit_codes"] == [128 + signal.SIGTERM], arm
        folder = tmp_path / "run" / "arms" / arm["label"]
        records = list(read_log(folder / "ticks.jsonl"))
        assert records[0]["label"] == arm["label"] and records[0]["kind"] == "fleet"
        ends = [r for r in records if r["type"] == "episode" and r["phase"] == "end"]
        assert ends and ends[-1]["interrupted"] is True  # the episode was closed, not cut off
        assert any(r["type"] == "event" and r["event"] == "stop" and r["reason"] == "SIGTERM" for r in records)
        # nothing new was commanded after the stop: the arm held its last safe command
        stop_at = next(i for i, r in enumerate(records) if r["type"] == "event" and r["event"] == "stop")
        assert not any(r["type"] == "tick" for r in records[stop_at:])
        status = json.loads((folder / "status.json").read_text())
        assert status["state"] == "stopped" and status["control_hz"] > 15, status
        safety_files.add(status["safety"])
        assert "tick log" in (folder / "arm.log").read_text()
    assert safety_files == {str(config.parent / "arms" / f"{a}_safety.yaml") for a in ("arm01", "arm02")}


def test_an_arm_that_loses_its_camera_is_reported_restarted_and_the_other_goes_on(lab, policy, fleet_process, tmp_path):
    config = lab({"arm01": {}, "arm02": {"camera_fails_after_s": 1.0}})
    fleet = fleet_process(config, tmp_path / "run", "--arm", "arm01", "--arm", "arm02", "--task", "wave",
                          "--policy-url", policy.url, "--restart", "1", "--for", "14")
    code = fleet.wait(90)
    assert code == 1, fleet.text()  # an arm crashed: the fleet says so
    summary = {a["label"]: a for a in json.loads((tmp_path / "run" / "fleet.json").read_text())["arms"]}
    good, bad = summary["arm01"], summary["arm02"]
    assert good["outcome"] == "stopped" and good["starts"] == 1 and good["exit_codes"] == [143], good
    assert good["ticks"] > 150 and good["control_hz"] > 15  # it went on at its rate all along
    assert bad["starts"] == 2 and bad["exit_codes"] == [1, 1], bad  # restarted once, then given up
    assert bad["outcome"] == "crashed" and "delivers no frames" in bad["cause"]
    log = (tmp_path / "run" / "arms" / "arm02" / "arm.log").read_text()
    assert log.count("--- start") == 2 and "delivers no frames" in log
    assert "arm02 crashed" in fleet.text() and "delivers no frames" in fleet.text()


def test_the_arms_are_chosen_one_way_and_must_exist(lab, tmp_path):
    config = lab()
    runner = CliRunner()
    for args, message in ((["--arms", "2"], "--arms N needs --robot"),
                          (["--arm", "arm09"], "no such arm"),
                          (["--all", "--arm", "arm01"], "choose the arms one way"),
                          (["--arm", "arm01", "--arm", "arm01"], "named twice")):
        result = runner.invoke(cli, ["--config", str(config), "fleet", "run", "--task", "t", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_arms_hold_and_stop_by_themselves_when_the_supervisor_is_killed(lab, policy, fleet_process, tmp_path):
    config = lab()
    fleet = fleet_process(config, tmp_path / "run", "--all", "--task", "wave", "--policy-url", policy.url)
    fleet.wait_for(lambda: all(fleet.status(a).get("ticks", 0) > 30 for a in ("arm01", "arm02")), what="both arms running")
    pids = [fleet.status(a)["pid"] for a in ("arm01", "arm02")]
    fleet.proc.kill()  # no chance to pass a stop on
    fleet.wait(10)
    end = time.time() + 30
    while time.time() < end and any(fleet.status(a).get("state") == "running" for a in ("arm01", "arm02")):
        time.sleep(0.2)
    for label in ("arm01", "arm02"):
        assert fleet.status(label)["state"] == "stopped", fleet.status(label)
        records = list(read_log(tmp_path / "run" / "arms" / label / "ticks.jsonl"))
        assert any(r["type"] == "event" and r["event"] == "stop" and r["reason"] == "supervisor gone" for r in records)
    for pid in pids:  # and the processes are gone
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"arm process {pid} still runs")
