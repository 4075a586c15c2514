"""The CLI must start without importing heavy libraries: they cost seconds on an arm's computer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "lerobot", "mujoco", "cv2")
VLA = str(Path(sys.executable).parent / "vla")


def _imported_modules(args: list[str]) -> set[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, "-X importtime printed nothing"
    return modules


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_import_vla_cli_is_light():
    modules = _imported_modules([sys.executable, "-X", "importtime", "-c", "import vla.cli"])
    assert "vla.cli" in modules
    assert _heavy(modules) == []


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list"], ["plugins", "list", "--json"]])
def test_cli_commands_with_all_plugins_are_light(args):
    modules = _imported_modules([VLA, *args])
    assert _heavy(modules) == [], f"`vla {' '.join(args)}` imported heavy modules"
