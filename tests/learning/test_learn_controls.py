"""`vla learn` through the real policy server, rewarder service and arm processes: the controls.

- A rewarder that always answers 0 (served at --rewarder-url) gives the learner nothing to learn
  from, while the audit shows what the simulator saw: none of it reaches the learner.
- SIGKILL of a running `vla learn`, then --resume: the run finishes on the same budget, with the
  same choice an uninterrupted run makes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("vla_sim")
pytest.importorskip("vla_primitives")
pytest.importorskip("vla_cmaes")
pytest.importorskip("vla_heuristic")
pytestmark = pytest.mark.slow


@pytest.fixture
def zero_rewarder():
    """The real rewarder service, its heuristic rewarder wrapped to answer 0 whatever it sees."""
    from vla.learning.rewarders import NoisyRewarder
    from vla.rewarding.service import RewarderService, RunningService
    from vla_heuristic.rewarder import HeuristicRewarder

    service = RewarderService("zero", lambda: NoisyRewarder(HeuristicRewarder(), "zero"))
    with RunningService(service) as running:
        assert service.wait_loaded(30)
        yield running.url


def test_zero_rewarder_teaches_nothing_and_the_audit_never_reaches_the_learner(tmp_path, sim_calibration,
                                                                                zero_rewarder, kit):
    out = tmp_path / "zero"
    kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "2", "--rewarder-url", zero_rewarder,
              "--budget", "20", "--heldout", "4", *kit.SMALL, calibration=sim_calibration)
    result = json.loads((out / "result.json").read_text())
    learner = kit.read_jsonl(out / "learner.jsonl")
    audit = {a["job"]: a for a in kit.read_jsonl(out / "audit.jsonl")}
    # what the learner took in: rewarder replies (all 0) and the arms' own measurements, nothing else
    assert learner and {k for line in learner for k in line} == {
        "generation", "job", "candidate_id", "score", "success", "length_s", "path_m", "safety_events", "arm"}
    assert all(line["score"] == 0.0 and line["success"] is False for line in learner)
    # the simulator judged every one of those episodes, in the audit only
    assert all(audit[line["job"]]["sim_success"] in (True, False) for line in learner)
    assert all(audit[line["job"]]["rewarder_score"] == 0.0 for line in learner)
    checkpoint = json.loads((out / "checkpoint.json").read_text())["run"]
    assert all(p["rewarder_success"] == 0 and p["best_fitness"] <= 0 for p in checkpoint["curve"])
    assert all(s["rewarder_success"] == 0 for s in checkpoint["selections"])
    assert result["heldout"]["rewarder_successes"] == 0 and result["heldout"]["episodes"] == 4
    assert result["episodes"] <= 20 and Path(result["curve_png"]).stat().st_size > 1000


def _arm_processes(out: Path) -> list[int]:
    """Arm processes of the run in ``out`` still alive (their command line names its audit file)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "vla.learning.arm" in cmdline and str(out) in cmdline:
                pids.append(int(proc.name))
    return pids


BUDGET = 50  # seven rounds of six: a signal lands well before the last, however fast the machine


def _long_run(kit, sim_calibration) -> tuple[str, ...]:
    return ("--task", "lift", "--robot", "sim", "--arms", "2", "--budget", str(BUDGET), "--heldout", "2", *kit.SMALL,
            "--set-policy", f"calibration={sim_calibration}")


def test_sigkill_then_resume_finishes_the_same_budget_with_the_same_choice(tmp_path, sim_calibration, kit):
    budget, args = BUDGET, _long_run(kit, sim_calibration)
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen([kit.VLA, "learn", "--out", str(killed), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=kit.env(), cwd=tmp_path)
    checkpoint, learner_log = killed / "checkpoint.json", killed / "learner.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        # killed mid-round: a round checkpointed, and episodes of the next one already scored
        if checkpoint.exists() and learner_log.exists():
            saved = json.loads(checkpoint.read_text())["run"]
            if saved["curve"] and len(learner_log.read_text().splitlines()) > saved["episodes"]:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()
    at_kill = json.loads(checkpoint.read_text())["run"]
    assert at_kill["phase"] == "learn" and at_kill["episodes"] < budget
    for _ in range(100):  # the arms die with the learner
        if not _arm_processes(killed):
            break
        time.sleep(0.2)
    assert not _arm_processes(killed)

    kit.vla_learn(killed, *args, "--resume")
    whole = tmp_path / "whole"
    kit.vla_learn(whole, *args)
    resumed, straight = (json.loads((d / "result.json").read_text()) for d in (killed, whole))
    assert resumed["resumed"] == 1 and straight["resumed"] == 0
    assert resumed["episodes"] == straight["episodes"] <= budget
    assert resumed["generations"] == straight["generations"]
    assert resumed["chosen"] == straight["chosen"]  # same seed, same layouts, same scores: same search
    # the audit holds the episodes the kill cut short too; the learner's log holds each job once, as if
    # never killed
    audit = [line["job"] for line in kit.read_jsonl(killed / "audit.jsonl") if line["phase"] == "train"]
    learner = [line["job"] for line in kit.read_jsonl(killed / "learner.jsonl")]
    assert len(audit) > len(set(audit))
    assert len(learner) == len(set(learner))
    assert sorted(learner) == sorted(line["job"] for line in kit.read_jsonl(whole / "learner.jsonl"))
    runs = json.loads((killed / "checkpoint.json").read_text())["run"]
    assert runs["phase"] == "done" and len(runs["curve"]) == straight["generations"]


def test_sigterm_stops_the_run_like_ctrl_c_says_how_to_resume_and_takes_the_arms_along(tmp_path, sim_calibration, kit):
    out = tmp_path / "term"
    out.mkdir()
    proc = subprocess.Popen([kit.VLA, "learn", "--out", str(out), *_long_run(kit, sim_calibration)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=kit.env(), cwd=tmp_path, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not _arm_processes(out):
        time.sleep(0.1)
    assert _arm_processes(out), proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-3000:]
    assert "terminated (SIGTERM)" in stderr and "--resume" in stderr
    assert not _arm_processes(out)


def test_resume_without_a_checkpoint_and_a_second_run_in_the_same_folder_fail_clearly(tmp_path, sim_calibration, kit):
    out = tmp_path / "none"
    done = kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "1", "--budget", "10", "--resume",
                     calibration=sim_calibration, check=False)
    assert done.returncode == 1 and "nothing to resume" in done.stderr
    out.mkdir(exist_ok=True)
    (out / "checkpoint.json").write_text("{}")
    done = kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "1", "--budget", "10",
                     calibration=sim_calibration, check=False)
    assert done.returncode == 1 and "already holds a run" in done.stderr


def test_a_rewarder_that_is_down_fails_the_run_with_the_cause(tmp_path, sim_calibration, kit):
    done = kit.vla_learn(tmp_path / "down", "--task", "lift", "--robot", "sim", "--arms", "1", "--budget", "10",
                     "--rewarder-url", "http://127.0.0.1:9", calibration=sim_calibration, check=False, timeout=120)
    assert done.returncode == 1
    assert "rewarder at http://127.0.0.1:9" in done.stderr and "not ready" in done.stderr


def _start_and_wait_for_a_scored_episode(kit, out: Path, *args) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([kit.VLA, "learn", "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kit.env(), cwd=out.parent)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "audit.jsonl").exists() and (out / "audit.jsonl").read_text().strip():
            return proc
        time.sleep(0.2)
    raise AssertionError(f"no episode was scored: {proc.communicate(timeout=30)[1][-3000:]}")


def test_an_arm_that_crashes_stops_the_run_with_its_name(tmp_path, sim_calibration, kit):
    out = tmp_path / "crash"
    proc = _start_and_wait_for_a_scored_episode(
        kit, out, "--task", "lift", "--robot", "sim", "--arms", "2", "--budget", "60", *kit.SMALL,
        "--set-policy", f"calibration={sim_calibration}")
    (victim,) = [pid for pid in _arm_processes(out) if "sim02" in Path(f"/proc/{pid}/cmdline").read_text()]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "arm sim02 exited (code -9)" in stderr


def test_a_rewarder_that_goes_down_mid_run_stops_it_with_the_cause(tmp_path, sim_calibration, kit):
    from vla.rewarding.service import RewarderService, RunningService
    from vla_heuristic.rewarder import HeuristicRewarder

    service = RewarderService("heuristic", HeuristicRewarder)
    running = RunningService(service).__enter__()
    assert service.wait_loaded(30)
    proc = _start_and_wait_for_a_scored_episode(
        kit, tmp_path / "down-later", "--task", "lift", "--robot", "sim", "--arms", "1", "--budget", "60",
        "--rewarder-url", running.url, *kit.SMALL, "--set-policy", f"calibration={sim_calibration}")
    running.close()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert "arm sim01 failed" in stderr and "the rewarder is down" in stderr
