"""Fixtures for `vla learn` runs: a calibrated simulated camera (made once) and a runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VLA = str(Path(sys.executable).parent / "vla")
# Small rounds so that a test run fits in a couple of minutes on two busy cores.
SMALL = ("--set-trainer", "popsize=6", "--set-trainer", "layouts_per_generation=1",
         "--selection-layouts", "4", "--select-every", "2")


def env():
    return {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "VLA_RAISE_ERRORS": ""}


@pytest.fixture(scope="session")
def sim_calibration(tmp_path_factory) -> Path:
    """The front camera's calibration, made by `vla calibrate camera` on a simulated arm (the
    procedure `vla learn` itself runs when it finds none): the learner never sees the truth."""
    pytest.importorskip("mujoco")
    pytest.importorskip("vla_sim")
    lab = tmp_path_factory.mktemp("calib-lab")
    (lab / "arms").mkdir()
    (lab / "arms" / "sim01.yaml").write_text("robot: sim\nconfig:\n  cameras: [front]\n")
    (lab / "vla.yaml").write_text("arms:\n  sim01: arms/sim01.yaml\n")
    target = lab / "camera-front.yaml"
    done = subprocess.run([VLA, "--config", str(lab / "vla.yaml"), "calibrate", "camera", "--arm", "sim01", "--yes",
                           "--out", str(target)], capture_output=True, text=True, env=env(), timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    return target


def vla_learn(out: Path, *args: str, calibration: Path | None = None, timeout: float = 900, check: bool = True):
    extra = ("--set-policy", f"calibration={calibration}") if calibration is not None else ()
    done = subprocess.run([VLA, "learn", "--out", str(out), *args, *extra], capture_output=True, text=True, env=env(),
                          timeout=timeout, cwd=out.parent)
    if check:
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}"
    return done


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def kit():
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(SMALL=SMALL, VLA=VLA, env=env, vla_learn=vla_learn, read_jsonl=read_jsonl)
