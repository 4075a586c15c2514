"""The real-arm path of `vla learn` on the kinematic test arm (no hardware can run here): real time,
an operator who resets the scene before every episode, pauses (every arm holds; the cut
episode runs again) and resumes, all from scripted input.

The learner, its policy server and the rewarder service run in this process (the policy is a
one-parameter stand-in: the kinematic arm has no cubes for the primitives); the arm is a real
arm process on the same control path as `vla run`, over the WebSocket protocol."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from vla.rewarder import Score

pytestmark = pytest.mark.slow


class TurnRewarder:
    """Scores how far the picture changed from the first frame to the last: the arm turned."""

    threshold = 0.5
    thread_safe = True

    def score(self, frames, goal):
        first, last = (np.asarray(f, dtype=np.float32) for f in (frames[0], frames[-1]))
        score = float(np.clip(np.abs(last - first).mean() / 4.0, 0.0, 1.0))
        return Score(score, score >= self.threshold, {"rule": "turn"})


def test_real_arm_episodes_wait_for_the_operator_and_a_pause_reruns_the_cut_episode(tmp_path, monkeypatch, kit):
    from rich.console import Console

    from vla import plugins
    from vla.learning.loop import LearnRun, LearnSettings
    from vla.learning.operator import Operator
    from vla.rewarding.service import RewarderService, RunningService

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import learn_standin

    monkeypatch.setattr(plugins, "_registry", plugins.load_registry(((learn_standin.Plugin, "vla-test-reach"),)))
    lab = tmp_path / "lab"
    (lab / "arms").mkdir(parents=True)
    (lab / "arms" / "arm01.yaml").write_text("robot: kinematic\nconfig:\n  cameras:\n    front: [96, 128, 3]\n")
    (lab / "vla.yaml").write_text("arms:\n  arm01: arms/arm01.yaml\n")
    service = RewarderService("turn", TurnRewarder)
    # Enter for the first episode, then a pause while it runs, Enter to resume, then Enter per episode
    script = io.StringIO("\n" + "p\n" + "\n" + "\n" * 12)
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    with RunningService(service) as running:
        assert service.wait_loaded(10)
        settings = LearnSettings(
            task="turn the arm", robot="kinematic", arms=["arm01"], out=tmp_path / "run", budget=6, clock="real",
            config_path=str(lab / "vla.yaml"), policy="reach-test", rewarder=None, rewarder_url=running.url,
            trainer_overrides={"popsize": 2, "layouts_per_generation": 1}, selection_layouts=1, select_every=1,
            heldout=1, episode_s=0.5,
        )
        try:
            result = LearnRun(settings, operator=Operator(console, stream=script)).run()
        finally:
            print(screen.getvalue())  # shown when the test fails
    text = screen.getvalue()
    prompts = text.count("reset the scene for episode")
    assert "paused: every arm holds" in text and "resumed" in text
    learner = kit.read_jsonl(tmp_path / "run" / "learner.jsonl")
    audit = kit.read_jsonl(tmp_path / "run" / "audit.jsonl")
    # every episode that ran to its end was prompted for; the one the pause cut ran again
    # (2 training episodes and 2 selection checks count against the budget; the held-out test not)
    assert prompts == len(audit) + 1
    assert result["episodes"] == 4 and len(learner) == 2 and result["heldout"]["episodes"] == 1
    # a real arm cannot judge itself: the audit has no physics verdict, the result says so
    assert all(a["sim_success"] is None for a in audit)
    assert result["heldout"]["audited_successes"] is None
    assert all(0.45 <= a["length_s"] <= 0.75 for a in audit)  # real time, --duration 0.5
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["robot"] == "kinematic" and saved["checkpoint"].endswith("checkpoint.json")
