"""Calibration maths against hand-worked and brute-force figures, and the `vla rewarder` and
`vla serve-rewarder` commands run as real subprocesses on labelled clips written to disk."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vla.rewarding.calibration import choose_threshold, confusion, roc_auc, roc_curve, summarise, ClipScore
from vla.rewarding.client import RewarderClient
from vla.rewarding.labels import ClipWriter, LabelsError, load_clips
from vla_heuristic.synthetic import TASK_GOALS, draw_scene

VLA = str(Path(sys.executable).parent / "vla")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_confusion_and_threshold_by_hand():
    scores = np.array([0.9, 0.8, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 0], bool)
    c = confusion(scores, labels, 0.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (3, 1, 3, 1)
    assert c["agreement"] == 6 / 8 and c["precision"] == 3 / 4 and c["recall"] == 3 / 4
    # pairs (success, failure) where the success scores higher: 4*4 pairs, 13 ordered right
    assert roc_auc(scores, labels) == pytest.approx(13 / 16)
    # the best agreement is 6/8, reached between 0.55 and 0.6 and between 0.3 and 0.4 among others;
    # the tie goes to the candidate nearest the current threshold (0.5)
    t = choose_threshold(scores, labels, "agreement", prefer=0.5)
    assert confusion(scores, labels, t)["agreement"] == 6 / 8 and 0.4 < t <= 0.55
    t = choose_threshold(scores, labels, "youden", prefer=0.5)
    tpr = lambda t: np.mean(scores[labels] >= t)
    fpr = lambda t: np.mean(scores[~labels] >= t)
    best = max(tpr(u) - fpr(u) for u in np.linspace(0, 1.01, 1000))
    assert tpr(t) - fpr(t) == pytest.approx(best)
    # nothing predicted successful: precision is undefined, not zero
    assert confusion(scores, labels, 0.95)["precision"] is None


def test_roc_auc_matches_brute_force_and_curve():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(4, 40))
        labels = rng.random(n) < 0.5
        labels[0], labels[1] = True, False
        scores = np.round(rng.random(n), 1)  # ties on purpose
        pairs = [(p, q) for p in scores[labels] for q in scores[~labels]]
        brute = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs])
        assert roc_auc(scores, labels) == pytest.approx(brute)
        fpr, tpr, _ = roc_curve(scores, labels)
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
        assert np.trapezoid(tpr, fpr) == pytest.approx(brute)
    assert roc_auc(np.array([0.2, 0.4]), np.array([True, True])) is None


def test_summary_skips_failed_clips():
    results = [ClipScore("a", "t", True, 0.9), ClipScore("b", "t", False, None, "ValueError: x"), ClipScore("c", "t", False, 0.1)]
    s = summarise(results, 0.5)
    assert s["n_errors"] == 1 and s["n_scored"] == 2 and s["at_threshold"]["agreement"] == 1.0


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """18 synthetic clips over the three tasks; two carry the wrong label on purpose."""
    root = tmp_path_factory.mktemp("clips")
    flipped = {"lift_3", "push_left_0"}
    with ClipWriter(root) as writer:
        for task, goal in TASK_GOALS.items():
            for i in range(6):
                success = i % 2 == 0
                clip_id = f"{task}_{i}"
                label = (not success) if clip_id in flipped else success
                writer.add(clip_id, task, goal, label, draw_scene(task, success, seed=100 + i, n_frames=2))
    return root


def test_labels_file_errors(tmp_path, labelled):
    assert len(load_clips(labelled)) == 18 and len(load_clips(labelled, ["lift"])) == 6
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "x", "task": "lift", "goal": "lift the yellow cube", "success": "yes", "frames": ["x/0.png"]}\n')
    with pytest.raises(LabelsError, match=r"labels.jsonl:1: field 'success' must be bool"):
        load_clips(tmp_path)
    bad.write_text('{"id": "x", "task": "lift", "goal": "g", "success": true, "frames": ["../../etc/passwd"]}\n')
    with pytest.raises(LabelsError, match="leaves the labels folder"):
        load_clips(tmp_path)


def vla(*args, env=None, timeout=240):
    return subprocess.run([VLA, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_calibrate_cli_writes_report_and_plot(tmp_path, labelled):
    out = tmp_path / "reports"
    result = vla("rewarder", "calibrate", "--rewarder", "heuristic", "--labels", str(labelled), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "calibration_heuristic.json").read_text())
    assert (out / "calibration_heuristic.png").read_bytes()[:8] == PNG_MAGIC
    assert report["n_clips"] == 18 and report["n_errors"] == 0
    # the rewarder is right on every clip, so it disagrees exactly with the two flipped labels
    assert report["at_threshold"]["agreement"] == pytest.approx(16 / 18)
    assert report["per_task"]["pick_place"]["at_threshold"]["agreement"] == 1.0
    assert report["per_task"]["lift"]["at_threshold"]["agreement"] == pytest.approx(5 / 6)
    assert 0.8 < report["roc_auc"] < 1.0
    assert report["threshold"] == 0.5 and 0.0 <= report["chosen_threshold"] <= 1.0
    assert {c["id"] for c in report["clips"] if (c["score"] >= 0.5) != c["label"]} == {"lift_3", "push_left_0"}
    assert "agreement" in result.stderr and "pick_place" in result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_rewarder_cli_and_ab_against_it(tmp_path, labelled):
    port = free_port()
    proc = subprocess.Popen([VLA, "serve-rewarder", "--rewarder", "heuristic", "--port", str(port), "--ema", "0.5"],
                            env={**os.environ, "VLA_API_KEY": "lab-key"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client = RewarderClient(f"http://127.0.0.1:{port}", api_key="lab-key", retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                health = client.wait_ready(timeout=1)
                break
            except (ConnectionError, TimeoutError):
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode() if proc.poll() is not None else "not ready"
        assert health == {**health, "status": "ready", "rewarder": "heuristic", "smoothing": {"ema_alpha": 0.5}}
        frames = draw_scene("lift", True, seed=5, n_frames=2)
        assert client.score(frames, "lift the yellow cube").success

        out = tmp_path / "ab"
        result = vla("rewarder", "ab", "heuristic", "heuristic", "--labels", str(labelled), "--url-b",
                     f"http://127.0.0.1:{port}", "--task", "lift", "--task", "pick_place", "--out", str(out),
                     env={"VLA_API_KEY": "lab-key"})
        assert result.returncode == 0, result.stderr
        report = json.loads((out / "ab_heuristic(A)_vs_heuristic(B).json").read_text())
        assert (out / "ab_heuristic(A)_vs_heuristic(B).png").read_bytes()[:8] == PNG_MAGIC
        a, b = report["a"], report["b"]
        assert a["source"] == "in-process" and b["source"].startswith("http://127.0.0.1")
        assert a["n_clips"] == b["n_clips"] == 12
        # the same rewarder in-process and over HTTP (PNG frames, lossless) gives the same scores
        assert [c["score"] for c in a["clips"]] == pytest.approx([c["score"] for c in b["clips"]])
        assert a["at_threshold"]["agreement"] == pytest.approx(11 / 12)
        assert "agreement @threshold" in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_cli_errors_name_the_problem(tmp_path, labelled):
    result = vla("serve-rewarder", "--rewarder", "no-such-rewarder", "--port", str(free_port()))
    assert result.returncode == 2 and "no rewarder named 'no-such-rewarder'" in result.stderr
    result = vla("rewarder", "calibrate", "--rewarder", "heuristic", "--labels", str(tmp_path))
    assert result.returncode == 1 and "no such labels file" in result.stderr
    result = vla("rewarder", "calibrate", "--rewarder", "heuristic", "--labels", str(labelled), "--set", "threshold=high")
    assert result.returncode == 2 and "threshold" in result.stderr
