"""`vla learn --record DIR` keeps the rewarder-approved episodes as LeRobot datasets, named the lab's way."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("vla_sim")
pytest.importorskip("vla_primitives")
pytestmark = [pytest.mark.slow, pytest.mark.lerobot]


def test_record_keeps_exactly_the_rewarder_approved_episodes(tmp_path, sim_calibration, kit):
    pytest.importorskip("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla.recording.naming import parse_dataset_name

    out, rec = tmp_path / "run", tmp_path / "datasets"
    # inverted answers: most episodes of an untrained policy fail, so most are "approved" here
    kit.vla_learn(out, "--task", "lift", "--robot", "sim", "--arms", "1", "--rewarder-noise", "invert",
                  "--budget", "4", "--heldout", "2", "--record", str(rec), "--set-trainer", "popsize=2",
                  "--set-trainer", "layouts_per_generation=1", "--selection-layouts", "1", "--select-every", "1",
                  calibration=sim_calibration, timeout=1800)
    audit = kit.read_jsonl(out / "audit.jsonl")
    approved = sum(1 for a in audit if a["rewarder_success"])
    assert len(audit) == 6 and approved >= 1
    (dataset,) = list(rec.iterdir())
    name = parse_dataset_name(dataset.name)
    assert name["task"] == "lift" and name["arm_id"] == "sim01"
    ds = LeRobotDataset(f"local/{dataset.name}", root=dataset)
    assert ds.meta.total_episodes == approved
    assert ds[0]["task"] == "lift the yellow cube"
    assert "observation.images.front" in ds.meta.features
    result = json.loads((out / "result.json").read_text())
    assert result["heldout"]["episodes"] == 2
