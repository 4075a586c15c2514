"""`vla gates` on recorded lab folders: a pass and a fail of every gate, with its evidence."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from vla.cli import cli
from vla.config import load_config
from vla.lab.gates import gate_g0, gate_g1, gate_g2, gate_g3, gate_latency, judge
from vla.lab.records import find

KINEMATIC = "robot: kinematic\nconfig: {cameras: {}}\n"


def test_g0_passes_with_calibrated_arms_inside_their_robots_limits(tmp_path, recorded):
    loaded = load_config(recorded["lab"](tmp_path, {"arm01": KINEMATIC, "arm02": KINEMATIC}), environ={})
    g = gate_g0(loaded)
    assert g.passed and g.summary == "2 of 2 arms ready"
    assert all("calibrated (kinematic test arm" in e and "_safety.yaml within the so101 ranges" in e for e in g.evidence)


def test_g0_fails_an_uncalibrated_arm_a_bad_safety_file_and_limits_beyond_the_robots(tmp_path, recorded):
    so101 = f"robot: so101\nconfig: {{id: arm03, calibration_dir: {tmp_path / 'calib'}}}\n"
    config = recorded["lab"](tmp_path, {"arm01": KINEMATIC, "arm02": KINEMATIC, "arm03": so101, "arm04": KINEMATIC})
    (tmp_path / "arms" / "arm02_safety.yaml").write_text(
        (tmp_path / "arms" / "arm02_safety.yaml").read_text().replace("max: 1.5, max_step: 0.2}\n  shoulder_lift", "max: 3.9, max_step: 0.2}\n  shoulder_lift", 1))
    (tmp_path / "arms" / "arm04_safety.yaml").write_text("joints:\n  shoulder_pan: {min: 1.0, max: 0.5}\n")
    g = gate_g0(load_config(config, environ={}))
    assert not g.passed and g.figures["failing"] == ["arm02", "arm03", "arm04"]
    text = "\n".join(g.evidence)
    assert re.search(r"arm02: shoulder_pan limits \[-1.500, 3.900\] rad go beyond the robot's own \[-\d\.\d+, \d\.\d+\]", text)
    assert "arm03: not calibrated: no calibration file" in text and "arm03.json" in text
    assert "arm04:" in text and "expected max >= min" in text
    assert g.evidence[0].startswith("arm01: calibrated")


def test_g1_and_latency_pass_on_a_steady_arm_and_fail_on_a_slow_or_starved_one(tmp_path, recorded):
    logs = tmp_path / "logs"
    recorded["run"](logs / "steady.jsonl", "arm01", 75.0, latency_s=0.05)
    found = find(logs, startup_s=2.0)
    cfg = load_config(recorded["lab"](tmp_path / "lab", {}), environ={}).config.gates
    g1, lat = gate_g1(found, cfg), gate_latency(found, cfg)
    assert g1.passed, g1.evidence
    fig = g1.figures["arm01"]
    assert fig["control_hz"] == pytest.approx(30.0, abs=0.1) and fig["underflows"] == 0 and fig["minutes"] > 1.2
    assert fig["underflows_per_min_ci95"][0] == 0 and 0 < fig["underflows_per_min_ci95"][1] < 5
    assert lat.passed and lat.figures["median_ms"] <= 120 and "95% CI" in lat.evidence[0]

    # arm02: replies slower than a chunk lasts (40 actions at 30 Hz = 1.3 s) starve its queue;
    # arm03 runs at 10 Hz
    recorded["run"](logs / "starved.jsonl", "arm02", 75.0, latency_s=1.8)
    recorded["run"](logs / "slow.jsonl", "arm03", 75.0, latency_s=0.05, control_hz=10.0)
    found = find(logs, startup_s=2.0)
    g1 = gate_g1(found, cfg)
    assert not g1.passed and g1.summary == "1 of 3 arms stable; not: arm02, arm03"
    by_arm = {e.split(":")[0]: e for e in g1.evidence}
    assert "underflows at" in by_arm["arm02"] and g1.figures["arm02"]["underflows_per_min"] >= 1
    assert "below 15 Hz" in by_arm["arm03"] and g1.figures["arm03"]["control_hz"] == pytest.approx(10, abs=0.1)
    # the KPI is one median over every chunk of the folder: the starved arm alone fails it
    assert gate_latency(found, cfg).passed
    starved = tmp_path / "starved"
    starved.mkdir()
    (logs / "starved.jsonl").rename(starved / "starved.jsonl")
    lat = gate_latency(find(starved, startup_s=2.0), cfg)
    assert not lat.passed and lat.figures["median_ms"] > 120 and "arm02: median" in "\n".join(lat.evidence)


def test_g1_needs_a_minute_of_evidence(tmp_path, recorded):
    recorded["run"](tmp_path / "logs" / "short.jsonl", "arm01", 20.0)
    cfg = load_config(recorded["lab"](tmp_path / "lab", {}), environ={}).config.gates
    g1 = gate_g1(find(tmp_path / "logs", 2.0), cfg)
    assert not g1.passed and "min of evidence (needs 1)" in g1.evidence[0]


def test_g2_and_g3_judge_tasks_of_one_checkpoint_and_the_rewarders_agreement(tmp_path, recorded):
    evals = tmp_path / "evals"
    cfg = load_config(recorded["lab"](tmp_path / "lab", {}), environ={}).config.gates
    # ckpt-1: lift 13/20 (65%): G2 fails
    recorded["eval"](evals / "a", "ckpt-1", {"lift": [True] * 13 + [False] * 7}, 1000.0)
    found = find(evals)
    g2 = gate_g2(found, cfg)
    assert not g2.passed and "no task reaches it yet; best ckpt-1 / lift: 13/20 = 65%" in g2.summary
    # ckpt-2: lift over two evaluations 15/20 (75%): G2 passes; 3 tasks at >= 80% but one over 10 trials only
    recorded["eval"](evals / "b", "ckpt-2", {"lift": [True] * 8 + [False] * 2, "push_left": [True] * 17 + [False] * 3,
                                             "pick_place": [True] * 9 + [False] * 1}, 2000.0)
    recorded["eval"](evals / "c", "ckpt-2", {"lift": [True] * 7 + [False] * 3}, 3000.0)
    recorded["calibration"](evals / "rewarder", 50, 47)  # 94% on 50 clips
    found = find(evals)
    g2, g3 = gate_g2(found, cfg), gate_g3(found, cfg)
    assert g2.passed and g2.summary == "push_left at 85% over 20 trials (ckpt-2)"  # the best one
    assert any("ckpt-2 / lift: 15/20 = 75% (95% CI 53%-89%)" in e for e in g2.evidence)
    assert not g3.passed and "1 of 3 tasks" in g3.summary and "agreement 94% on 50 clips" in g3.summary
    # ten more pick_place trials, lift to 16/20 = 80%: three tasks; the rewarder holds
    recorded["eval"](evals / "d", "ckpt-2", {"pick_place": [True] * 8 + [False] * 2, "lift": [True]}, 4000.0)
    g3 = gate_g3(find(evals), cfg)
    assert not g3.passed  # lift is 16/21 = 76%: not yet
    recorded["eval"](evals / "e", "ckpt-2", {"lift": [True] * 4}, 5000.0)  # 20/25 = 80%
    g3 = gate_g3(find(evals), cfg)
    assert g3.passed, g3.evidence
    assert g3.figures["tasks"] == ["lift", "pick_place", "push_left"] and g3.figures["checkpoint"] == "ckpt-2"
    # a rewarder below 90% agreement, or on too few clips, fails G3
    recorded["calibration"](evals / "rewarder", 50, 40)
    g3 = gate_g3(find(evals), cfg)
    assert not g3.passed and "agreement 80% on 50 clips (95% CI 67%-89%)" in g3.summary
    recorded["calibration"](evals / "rewarder", 30, 30)
    g3 = gate_g3(find(evals), cfg)
    assert not g3.passed and "(needs 50 clips)" in g3.summary


def test_vla_gates_prints_every_gate_and_exits_1_until_all_pass(tmp_path, recorded):
    lab = tmp_path / "lab"
    config = recorded["lab"](lab, {"arm01": KINEMATIC})
    recorded["run"](lab / "logs" / "run_1.jsonl", "arm01", 70.0)
    recorded["eval"](lab / "logs" / "eval_1", "ckpt-1", {t: [True] * 19 + [False] for t in ("lift", "push_left", "pick_place")}, 1.0)
    recorded["calibration"](lab / "rewarder-reports", 50, 46)
    (lab / "logs" / "notes.jsonl").write_text("not json\n")  # not a tick log: ignored
    (lab / "logs" / "eval_2").mkdir()
    (lab / "logs" / "eval_2" / "results.json").write_text("{broken")
    out = tmp_path / "gates.json"
    result = CliRunner().invoke(cli, ["--config", str(config), "gates", "--json", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("G0", "G1", "G2", "G3", "latency"):
        assert re.search(rf"│ {name}\s+│ pass", result.output), (name, result.output)
    assert "5 of 5 gates pass" in result.output and "skipped" in result.output and "eval_2/results.json" in result.output
    data = json.loads(out.read_text())
    assert [g["name"] for g in data] == ["G0", "G1", "G2", "G3", "latency"] and all(g["verdict"] == "pass" for g in data)
    (lab / "rewarder-reports" / "calibration_heuristic.json").unlink()
    result = CliRunner().invoke(cli, ["--config", str(config), "gates"])
    assert result.exit_code == 1 and re.search(r"│ G3\s+│ fail", result.output) and "4 of 5 gates pass" in result.output
