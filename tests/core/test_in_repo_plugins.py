"""Every plugin in plugins/ that is installed shows up in `vla plugins list --json` and conforms."""

from __future__ import annotations

import json
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from vla.testing import check_plugin

REPO = Path(__file__).resolve().parents[2]
IN_REPO = sorted(
    tomllib.loads(p.read_text())["project"]["name"] for p in REPO.glob("plugins/*/*/pyproject.toml")
)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_every_installed_in_repo_plugin_is_listed(vla_cli):
    installed = [d for d in IN_REPO if _installed(d)]
    assert installed, "make test installs the in-repo plugins"
    payload = json.loads(vla_cli("plugins", "list", "--json", check=True).stdout)
    listed = {p["distribution"] for p in payload["plugins"]}
    assert set(installed) <= listed
    assert payload["failures"] == []


@pytest.mark.parametrize("dist", IN_REPO)
def test_in_repo_plugin_conforms(dist):
    if not _installed(dist):
        pytest.fail(f"{dist} is in plugins/ but not installed; run `make test`")
    check_plugin(dist)  # raises ConformanceError naming every problem


@pytest.mark.parametrize("folder", sorted(p.parent.relative_to(REPO) for p in REPO.glob("plugins/*/*/pyproject.toml")))
def test_every_plugin_has_its_own_tests(folder):
    """Plugins own their tests: `make test` runs plugins/*/*/tests beside the core suite."""
    tests = sorted((REPO / folder / "tests").glob("test_*.py"))
    assert tests, f"{folder} has no tests/test_*.py"
