"""Shared fixtures: run the real `vla` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
VLA = str(Path(sys.executable).parent / "vla")


def run_vla(*args: str, env: dict | None = None, cwd: str | os.PathLike | None = None, timeout: float = 120, check: bool = False):
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([VLA, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"vla {' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture
def vla_cli():
    return run_vla


def pytest_collection_modifyitems(config, items):
    """In CI a test that needs Docker must run, not skip: an absent engine is a failure there."""
    if os.environ.get("CI"):
        return
    try:
        import docker

        docker.from_env().ping()
        return
    except Exception:
        pass
    skip = pytest.mark.skip(reason="no Docker engine here (CI installs one; `make test` does as root)")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------ Docker (tests marked docker)
BASE_IMAGE = os.environ.get("VLA_BASE_IMAGE", "vla-base:bookworm")


@pytest.fixture(scope="session")
def docker_client():
    """The real engine's client (the docker marker skips the test where none runs, except in CI)."""
    import docker

    client = docker.from_env()
    client.ping()
    return client


@pytest.fixture(scope="session")
def base_image(docker_client):
    """The Debian base image, made once without a registry (debootstrap) when it is missing."""
    import docker.errors

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run([str(REPO / "scripts/docker/make-base-image.sh"), BASE_IMAGE], check=True, timeout=900)
    return BASE_IMAGE
