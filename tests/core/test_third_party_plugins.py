"""Plugins installed the way a third party ships them: a pyproject with a `vla` entry point,
pip-installed into this environment, seen and removed through the real `vla` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path



def _write_plugin(root: Path, dist: str, module_body: str) -> Path:
    package = dist.replace("-", "_")
    folder = root / dist
    (folder / package).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"
            dependencies = ["vla"]

            [project.entry-points.vla]
            {package} = "{package}.plugin"
            """
        )
    )
    (folder / package / "__init__.py").write_text("")
    (folder / package / "plugin.py").write_text(textwrap.dedent(module_body))
    (folder / package / "impl.py").write_text(
        "class Greeter:\n    def __init__(self, config):\n        self.config = config\n"
    )
    return folder


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        timeout=300,
    )


GOOD_PLUGIN = """
    import attrs
    from vla import hookimpl
    from vla.specs import HealthCheck, PolicySpec, ServiceSpec

    @attrs.define
    class GreeterConfig:
        greeting: str = "hello"

    @hookimpl
    def register_policies(register):
        register(
            PolicySpec(
                name="{name}",
                description="A third-party test policy.",
                factory="{package}.impl:Greeter",
                config=GreeterConfig,
                services=[ServiceSpec(name="policy", image="example/{name}:1", port=8080,
                                      healthcheck=HealthCheck.http(8080))],
            )
        )
"""


def test_third_party_plugin_install_list_resolve_uninstall(tmp_path, vla_cli):
    suffix = uuid.uuid4().hex[:8]
    dist = f"vla-thirdparty-{suffix}"
    package = dist.replace("-", "_")
    name = f"greeter-{suffix}"
    folder = _write_plugin(tmp_path, dist, GOOD_PLUGIN.format(name=name, package=package))

    result = vla_cli("plugins", "install", str(folder))
    assert result.returncode == 0, result.stderr
    try:
        listed = json.loads(vla_cli("plugins", "list", "--json", check=True).stdout)
        rows = [c for c in listed["components"] if c["distribution"] == dist]
        assert [(r["kind"], r["name"], r["image"]) for r in rows] == [("policies", name, f"example/{name}:1")]
        assert rows[0]["version"] == "0.0.1"

        # the name resolves to the factory and builds with the plugin's config defaults
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "from vla.plugins import get_spec;"
                f"obj = get_spec('policies', '{name}').build();"
                "print(type(obj).__name__, obj.config.greeting)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.split() == ["Greeter", "hello"]

        table = vla_cli("plugins", "list", "--kind", "policies", check=True).stdout
        assert name in table
    finally:
        result = vla_cli("plugins", "uninstall", dist)
    assert result.returncode == 0, result.stderr
    listed = json.loads(vla_cli("plugins", "list", "--json", check=True).stdout)
    assert all(c["distribution"] != dist for c in listed["components"])


def test_plugin_that_raises_at_import_is_reported_and_skipped(tmp_path, vla_cli):
    suffix = uuid.uuid4().hex[:8]
    dist = f"vla-broken-{suffix}"
    folder = _write_plugin(tmp_path, dist, "raise RuntimeError('this plugin is broken on purpose')\n")
    _pip("install", "--no-deps", str(folder))
    try:
        help_result = vla_cli("--help")
        assert help_result.returncode == 0
        assert "plugins" in help_result.stdout
        assert dist in help_result.stderr and "broken on purpose" in help_result.stderr

        listed = vla_cli("plugins", "list", "--json")
        assert listed.returncode == 0
        payload = json.loads(listed.stdout)
        assert any(f["distribution"] == dist and "broken on purpose" in f["error"] for f in payload["failures"])
        assert dist in listed.stderr
    finally:
        uninstall = vla_cli("plugins", "uninstall", dist)
    assert uninstall.returncode == 0, uninstall.stderr
    assert dist not in vla_cli("plugins", "list", "--json").stderr


def test_load_plugins_env_limits_what_loads(vla_cli):
    everything = json.loads(vla_cli("plugins", "list", "--json", check=True).stdout)
    none = json.loads(vla_cli("plugins", "list", "--json", env={"VLA_LOAD_PLUGINS": ""}, check=True).stdout)
    assert {p["distribution"] for p in none["plugins"]} == {"vla"}
    third = [p["distribution"] for p in everything["plugins"] if p["distribution"] != "vla"]
    assert third, "the suite runs with the in-repo plugins installed"
    only = json.loads(vla_cli("plugins", "list", "--json", env={"VLA_LOAD_PLUGINS": third[0]}, check=True).stdout)
    assert {p["distribution"] for p in only["plugins"]} == {"vla", third[0]}
