"""The README's example plugin, exactly as the README prints it, built into the runtime image and
healthy under `vla up` on the real Docker engine, with its "checkpoint" handed over by
`--set path=HOST_FILE` (mounted read-only into the container).

The plugin is installed the way a third party installs one (pip, from its folder) into a
folder of its own on PYTHONPATH, so this test leaves the suite's environment as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
VLA = str(Path(sys.executable).parent / "vla")


def readme_block(after: str) -> str:
    """The first fenced code block after the line that mentions ``after``."""
    text = (REPO / "README.md").read_text()
    start = text.index(after)
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def constant_plugin(tmp_path):
    """vla-constant written from the README and pip-installed into its own folder."""
    folder = tmp_path / "vla-constant"
    (folder / "vla_constant").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(readme_block("`vla-constant/pyproject.toml`:"))
    (folder / "vla_constant" / "__init__.py").write_text("")
    (folder / "vla_constant" / "plugin.py").write_text(readme_block("`vla-constant/vla_constant/plugin.py`"))
    (folder / "vla_constant" / "policy.py").write_text(readme_block("`vla-constant/vla_constant/policy.py`"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(folder)], check=True, timeout=300)
    return site


def test_the_readme_plugin_builds_into_the_runtime_image_and_serves_its_checkpoint(
        docker_client, base_image, constant_plugin, tmp_path):
    project = f"vlatest-{uuid.uuid4().hex[:8]}"
    port = free_port()
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "vla.yaml").write_text(yaml.safe_dump({
        "policy_server": {"host": "127.0.0.1", "port": port},
        "deploy": {"project": project, "policy_port": port},
    }))
    held = [0.1, -0.2, 0.3, 0.0, 0.2, 0.5]
    (lab / "held.json").write_text(json.dumps({"position": held}))
    env = {**os.environ, "PYTHONPATH": str(constant_plugin), "VLA_BIND_ADDRESS": "127.0.0.1", "VLA_BASE_IMAGE": base_image}
    env.pop("VLA_CONFIG", None)
    env.pop("VLA_API_KEY", None)

    def vla(*args, timeout=1200):
        return subprocess.run([VLA, *args], cwd=lab, env=env, capture_output=True, text=True, timeout=timeout)

    listing = json.loads(vla("plugins", "list", "--json").stdout)
    assert any(c["name"] == "constant" and c["distribution"] == "vla-constant" for c in listing["components"])
    try:
        started = time.monotonic()
        up = vla("up", "--policy", "constant", "--set", "path=held.json")
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\nvla up (runtime image with vla-constant, build included): {time.monotonic() - started:.0f}s")
        image = docker_client.images.get("vla-runtime:latest")
        assert "vla-constant" in image.attrs["Config"]["Labels"]["ai.vla.plugin.distributions"].split()
        compose = yaml.safe_load((lab / ".vla" / "compose.yaml").read_text())
        policy = compose["services"]["policy"]
        assert policy["command"][-2:] == ["--set", "path=/mnt/vla/path/held.json"]
        assert {"type": "bind", "source": str(lab / "held.json"), "target": "/mnt/vla/path/held.json",
                "read_only": True} in policy["volumes"]

        ps = json.loads(vla("ps", "--json").stdout)
        [row] = [r for r in ps["services"] if r["service"] == "policy"]
        assert row["state"] == "running" and row["health"] == "healthy" and row["plugin"] == "constant"

        from vla.protocol.client import PolicyClient

        async def ask():
            client = await PolicyClient.connect(f"ws://127.0.0.1:{port}", arm="ci-arm")
            try:
                assert client.metadata["policy"] == "constant"
                return await client.infer({"observation.state": np.zeros(6, np.float32), "task": "hold"})
            finally:
                await client.close()

        reply = asyncio.run(ask())
        # the position came from the mounted file, not the config's default of zeros
        np.testing.assert_allclose(reply["actions"], np.tile(held, (40, 1)), atol=1e-6)
    finally:
        down = vla("down", "--volumes", timeout=180)
        for c in docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
            c.remove(force=True)
    assert down.returncode == 0, down.stderr
