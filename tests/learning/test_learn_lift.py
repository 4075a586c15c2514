"""`vla learn` learns a task from the rewarder alone, and learns to fail from an inverted one.

Both runs go through the real command: the policy server (primitives), the rewarder service
(heuristic) and two arm processes on the simulated clock. Held-out test layouts are judged by
the simulator's physics, through the audit log the learner never reads. The runs are
deterministic (seeded layouts, seeded CMA-ES, a lockstep link on simulated time).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("vla_sim")
pytest.importorskip("vla_primitives")
pytest.importorskip("vla_cmaes")
pytest.importorskip("vla_heuristic")
pytestmark = pytest.mark.slow


def test_learns_lift_from_rewarder_scores_alone(tmp_path, sim_calibration, kit):
    out = tmp_path / "lift"
    kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "2", "--rewarder", "heuristic",
                  "--budget", "200", "--heldout", "20", "--duration", "7", calibration=sim_calibration, timeout=1800)
    result = json.loads((out / "result.json").read_text())
    h = result["heldout"]
    assert result["task"] == "lift" and result["episodes"] <= 200 and h["episodes"] == 20
    assert h["audited_successes"] >= 16, result  # >= 80% by physics on layouts it never trained on
    assert h["rewarder_successes"] >= 16
    assert result["cpu_s"] > 0 and result["wall_s"] > 0 and result["checkpoint"].endswith("checkpoint.json")
    state = json.loads((out / "checkpoint.json").read_text())["run"]
    first, last = state["curve"][0], state["curve"][-1]
    assert last["rewarder_success"] > first["rewarder_success"]  # it learned, from the rewarder's replies
    eval_summary = json.loads((out / "heldout" / "results.json").read_text())  # `vla eval`'s summary
    assert eval_summary["tasks"]["lift"]["successes"] == h["audited_successes"]


def test_an_inverted_rewarder_teaches_it_to_fail(tmp_path, sim_calibration, kit):
    out = tmp_path / "inverted"
    kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "2", "--rewarder-noise", "invert",
                  "--budget", "80", "--heldout", "10", "--duration", "7", calibration=sim_calibration, timeout=1800)
    result = json.loads((out / "result.json").read_text())
    state = json.loads((out / "checkpoint.json").read_text())["run"]
    # the learner made the inverted rewarder happy ...
    assert state["curve"][-1]["rewarder_success"] >= 0.8
    assert result["heldout"]["rewarder_successes"] >= 8
    # ... which the simulator, in the audit, calls failing
    assert result["heldout"]["audited_successes"] <= 1
    audit = kit.read_jsonl(out / "audit.jsonl")
    held = [a for a in audit if a["phase"] == "heldout"]
    assert sum(a["rewarder_success"] != a["sim_success"] for a in held) >= 0.9 * len(held)
