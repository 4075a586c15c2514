"""The heuristic rewarder: rules from YAML (with errors that name the key), goal matching, each
rule's geometry on drawn scenes, and both rewarder plugins passing the conformance check."""

from __future__ import annotations

import numpy as np
import pytest

from vla.testing import check_plugin
from vla_heuristic.config import HeuristicConfig
from vla_heuristic.rewarder import HeuristicRewarder
from vla_heuristic.rules import DEFAULT_RULES, RulesError, load_rules, parse_rules
from vla_heuristic.synthetic import TASK_GOALS, draw_scene


def test_plugins_conform():
    assert check_plugin("vla-heuristic") == {**check_plugin("vla-heuristic"), "rewarders": ["heuristic"]}
    assert "qwen-vl" in check_plugin("vla-qwen-vl")["rewarders"]


def test_qwen_vl_service_specs():
    from vla.plugins import get_spec

    spec = get_spec("rewarders", "qwen-vl")
    rewarder, vllm = spec.services
    assert rewarder.name == "rewarder" and rewarder.port == 18080 and rewarder.depends_on == ("vllm",)
    assert rewarder.image == "vla-runtime:latest" and rewarder.build_context == "images/runtime" and rewarder.gpus == 0
    assert "--set" in rewarder.command and "base_url=http://vllm:8000/v1" in rewarder.command
    assert vllm.image.startswith("vllm/vllm-openai") and vllm.gpus == 1 and vllm.ipc_host and not vllm.public
    args = dict(zip(vllm.command[::2], vllm.command[1::2]))
    assert args["--model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and args["--served-model-name"] == args["--model"]
    for flag in ("--max-model-len", "--limit-mm-per-prompt", "--gpu-memory-utilization"):
        assert flag in args
    # readiness on /v1/models: vLLM's /health stays 200 after a GPU fault (vllm#36960)
    assert vllm.healthcheck.command[0] == "python3" and vllm.healthcheck.http_path == "/v1/models"
    assert vllm.healthcheck.start_period_s >= 600 and "/cache/huggingface" in vllm.volumes.values()
    assert vllm.image == "vllm/vllm-openai:v0.32.0" and vllm.gpu_memory_fraction == float(args["--gpu-memory-utilization"])


@pytest.mark.parametrize("task,arm", [(t, "yellow") for t in sorted(TASK_GOALS)] + [("lift", "white")])
def test_drawn_scenes_agree(heuristic, task, arm):
    wrong = []
    for seed in range(20):
        success = seed % 2 == 0
        frames = draw_scene(task, success, seed=seed, n_frames=3, arm=arm)
        if heuristic.score(frames, TASK_GOALS[task]).success is not success:
            wrong.append(seed)
    assert wrong == []


def test_goal_matching(heuristic):
    frames = draw_scene("push_left", True, seed=3)
    for goal in ("Push the green cube to the left of the line.", "push_left", "  PUSH the green cube to the LEFT of the line "):
        assert heuristic.score(frames, goal).details["task"] == "push_left"
    with pytest.raises(LookupError, match="no heuristic rule for goal 'stack the cubes'.*pick_place"):
        heuristic.score(frames, "stack the cubes")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        heuristic.score([np.zeros((10, 10), np.uint8)], "lift")


def test_scores_rise_smoothly_past_the_cutoff(heuristic):
    """The score is a logistic of the measure: 0.5 at the cut-off, increasing with the measure."""
    import cv2

    def scene(cube_x):
        img = np.full((240, 320, 3), 200, np.uint8)
        cv2.line(img, (160, 40), (160, 239), (20, 20, 20), 2)
        cv2.rectangle(img, (cube_x, 120), (cube_x + 16, 136), (30, 170, 50), -1)
        return img

    scores = [heuristic.score([scene(x)], "push_left").score for x in (120, 135, 142, 150, 170)]
    assert scores == sorted(scores, reverse=True)  # further left, higher
    assert scores[0] > 0.99 and scores[-1] < 0.01


def write(tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_rules_file_errors_name_the_key(tmp_path):
    cases = {
        "tasks: {}\n": "colours",
        "colours: {red: [{h: [0, 200]}]}\ntasks: {t: {goal: g, rule: inside, object: red, container: red}}\n": "colours.red[0].h",
        "colours: {red: [{h: [0, 10]}]}\ntasks: {t: {goal: g, rule: teleport, object: red}}\n": "tasks.t.rule",
        "colours: {red: [{h: [0, 10]}]}\ntasks: {t: {goal: g, rule: inside, object: red, container: blue}}\n": "tasks.t.container",
        "colours: {red: [{h: [0, 10]}]}\ntasks: {t: {goal: g, rule: raised, object: red, min_rize: 0.1}}\n": "min_rize",
        "colours: {red: [{h: [0, 10]}]}\ntasks: {t: {goal: g, rule: past_line, object: red, side: left, line: {y: 0.5}}}\n": "tasks.t.line",
        "colours: {red: [{h: [0, 10]}]}\nroi: [0.5, 0, 0.2, 1]\ntasks: {t: {goal: g, rule: raised, object: red}}\n": "roi",
        "colours: {red: [{h: [0, 10]}]}\ntasks: {t: {rule: raised, object: red}}\n": "tasks.t.goal",
    }
    for text, key in cases.items():
        with pytest.raises(RulesError) as err:
            load_rules(write(tmp_path, text))
        assert key in str(err.value) and str(tmp_path) in str(err.value), (text, err.value)
    with pytest.raises(RulesError, match="no such rules file"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="threshold"):
        HeuristicRewarder(HeuristicConfig(threshold=1.5))


def test_tuned_rules_for_a_real_camera(tmp_path):
    """A lab's own file: different colours, a region of interest, a fixed line, single-frame lift."""
    import cv2

    path = write(tmp_path, """
roi: [0.0, 0.2, 1.0, 1.0]          # ignore the top of the image (a busy wall)
colours:
  orange: [{h: [8, 20], s: [150, 255], v: [80, 255]}]
tasks:
  over:
    goal: push the orange block over the tape
    rule: past_line
    object: orange
    line: {y: 0.5}
    side: down
  up:
    goal: pick up the orange block
    rule: raised
    object: orange
    table_y: 0.8
    min_rise: 0.1
""")
    r = HeuristicRewarder(HeuristicConfig(rules=str(path)))
    img = np.full((200, 300, 3), 90, np.uint8)
    cv2.rectangle(img, (100, 5), (140, 30), (240, 120, 20), -1)  # an orange thing outside the ROI
    low = img.copy()
    cv2.rectangle(low, (140, 120), (160, 140), (240, 120, 20), -1)
    high = img.copy()
    cv2.rectangle(high, (140, 80), (160, 100), (240, 120, 20), -1)
    assert r.score([low], "push the orange block over the tape").success
    assert not r.score([high], "push the orange block over the tape").success
    assert r.score([high], "pick up the orange block").success  # bottom at 0.5 < 0.8 - 0.1
    assert not r.score([low], "pick up the orange block").success  # bottom at 0.7: not 0.1 above the table


def test_default_rules_cover_the_sim_tasks():
    rules = load_rules(DEFAULT_RULES)
    assert {rules.find(goal).id for goal in TASK_GOALS.values()} == set(TASK_GOALS)
    assert parse_rules({"colours": {"red": {"h": [0, 5]}}, "tasks": {"x": {"goal": "g", "rule": "raised", "object": "red"}}}, "inline").tasks["x"]
