"""The GPU host's stack on a real Docker engine: build, `vla up`, a simulated episode driven
from the host, `vla ps` / `vla logs` / `vla down`, and recovery from a crashed policy server.

Needs the engine and compose v2 (scripts/docker/install-engine.sh) and builds its images
from a Debian base made by scripts/docker/make-base-image.sh (no registry is reachable).
Everything listens on 127.0.0.1 and on free ports, under a project name of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
VLA = str(Path(sys.executable).parent / "vla")
BASE_IMAGE = os.environ.get("VLA_BASE_IMAGE", "vla-base:bookworm")
RUNTIME_IMAGE = "vla-runtime:latest"


def vla(*args, cwd, timeout=600, check=False, env=None):
    full_env = {**os.environ, "VLA_BIND_ADDRESS": "127.0.0.1", **(env or {})}
    full_env.pop("VLA_CONFIG", None)
    result = subprocess.run([VLA, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and result.returncode != 0:
        raise AssertionError(f"vla {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(docker_client):  # the root conftest's engine client, under the name these tests use
    return docker_client


@pytest.fixture(scope="module")
def images(client, base_image, tmp_path_factory):
    """The runtime image with the CPU plugins, built by `vla build` on the base image."""
    figures = {}
    start = time.monotonic()
    # any folder will do: `vla build` finds the Dockerfiles through the installed vla
    folder = tmp_path_factory.mktemp("build")
    result = vla("build", "scripted", "heuristic", "--base-image", BASE_IMAGE, cwd=folder, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    figures["build_s"] = time.monotonic() - start
    assert f"{RUNTIME_IMAGE}\tbuilt in" in result.stdout
    print(f"\nimage figures: {figures}")
    return figures


def project_leftovers(client, project: str) -> dict[str, list[str]]:
    label = {"label": f"com.docker.compose.project={project}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],
        "networks": [n.name for n in client.networks.list(filters=label)],
        "volumes": [v.name for v in client.volumes.list(filters=label)],
    }


@pytest.fixture
def lab(tmp_path, client):
    """A lab folder whose vla.yaml points the client at the ports `vla up` publishes."""
    project = f"vlatest-{uuid.uuid4().hex[:8]}"
    policy_port, rewarder_port = free_port(), free_port()
    config = {
        "lab": "ci",
        "log_dir": "logs",
        "policy_server": {"host": "127.0.0.1", "port": policy_port},
        "rewarder": {"host": "127.0.0.1", "port": rewarder_port},
        "deploy": {"project": project, "policy_port": policy_port, "rewarder_port": rewarder_port},
    }
    (tmp_path / "vla.yaml").write_text(yaml.safe_dump(config))
    yield tmp_path, project, policy_port, rewarder_port
    vla("down", "--volumes", cwd=tmp_path, timeout=120)
    # never leak: whatever `vla down` left is removed here (and the test has already failed)
    for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
        c.remove(force=True)


def read_events(log_dir: Path) -> list[dict]:
    files = sorted(log_dir.glob("run_*.jsonl"))
    assert files, f"no tick log in {log_dir}"
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def episode_ends(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("type") == "episode" and e.get("phase") == "end"]


def test_runtime_image_is_lean_labelled_and_non_root(client, images):
    image = client.images.get(RUNTIME_IMAGE)
    config = image.attrs["Config"]
    assert config["User"] == "vla"
    assert config["Healthcheck"]["Test"][0] == "CMD" and "python" in config["Healthcheck"]["Test"][1]
    labels = config["Labels"]
    assert labels["ai.vla.protocol"] == "vla/1"
    assert labels["ai.vla.plugin.name"] == "vla-runtime"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert "plugins/robots/sim" in labels["ai.vla.plugins"] and "plugins/rewarders/heuristic" in labels["ai.vla.plugins"]
    probe = (
        "import importlib.util as u, sys; "
        "missing = [m for m in ('mujoco', 'cv2', 'vla_sim', 'vla_heuristic') if u.find_spec(m) is None]; "
        "heavy = [m for m in ('torch', 'transformers', 'lerobot') if u.find_spec(m) is not None]; "
        "print(missing, heavy); sys.exit(1 if missing or heavy else 0)"
    )
    out = client.containers.run(RUNTIME_IMAGE, ["python", "-c", probe], remove=True)
    assert out.strip() == b"[] []"


def test_up_episode_ps_logs_down_leaves_nothing(client, images, lab):
    folder, project, policy_port, rewarder_port = lab
    start = time.monotonic()
    up = vla("up", "--policy", "scripted", "--rewarder", "heuristic", cwd=folder)
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"\ntime to healthy: {time.monotonic() - start:.1f}s")
    assert f"ws://127.0.0.1:{policy_port}" in up.stdout and f"http://127.0.0.1:{rewarder_port}" in up.stdout
    written = yaml.safe_load((folder / ".vla" / "compose.yaml").read_text())
    assert written["name"] == project and set(written["services"]) == {"policy", "rewarder"}

    with urllib.request.urlopen(f"http://127.0.0.1:{rewarder_port}/healthz", timeout=5) as r:
        assert json.loads(r.read())["status"] == "ready"

    run = vla("run", "--robot", "sim", "--task", "lift", "--seed", "0", "--episodes", "1", cwd=folder, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    events = read_events(folder / "logs")
    ends = episode_ends(events)
    assert len(ends) == 1 and ends[0]["success"] is True and not ends[0]["interrupted"], ends
    assert any(e.get("type") == "event" and e.get("event") == "connected" for e in events)

    ps = vla("ps", "--json", cwd=folder, check=True)
    rows = {r["service"]: r for r in json.loads(ps.stdout)["services"]}
    assert set(rows) == {"policy", "rewarder"}
    assert all(r["state"] == "running" and r["health"] == "healthy" for r in rows.values()), rows
    assert rows["policy"]["plugin"] == "scripted" and rows["rewarder"]["plugin"] == "heuristic"
    table = vla("ps", cwd=folder, check=True)
    assert "policy" in table.stdout and "healthy" in table.stdout

    logs = vla("logs", "policy", cwd=folder, check=True)
    assert "policy-1" in logs.stdout and "rewarder-1" not in logs.stdout
    assert vla("logs", "no-such-service", cwd=folder).returncode != 0

    down = vla("down", cwd=folder)
    assert down.returncode == 0, down.stdout + down.stderr
    assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": []}


def test_crashed_policy_server_comes_back_and_the_client_finishes(client, images, lab):
    """The policy server's process is SIGKILLed from the host, as the kernel's OOM killer or a
    crash would end it. Docker's restart policy (`unless-stopped`) brings the container back;
    the client holds the arm meanwhile, reconnects by itself and finishes the episode.

    (`docker kill` itself is an operator's stop: Docker marks the container manually stopped
    and no restart policy restarts it, by design; the crash is what the policy is for.)
    """
    folder, project, _, _ = lab
    vla("up", "--policy", "scripted", "--rewarder", "heuristic", cwd=folder, check=True)
    [policy] = client.containers.list(filters={"label": [f"com.docker.compose.project={project}", "com.docker.compose.service=policy"]})

    env = {**os.environ, "VLA_BIND_ADDRESS": "127.0.0.1"}
    env.pop("VLA_CONFIG", None)
    proc = subprocess.Popen([VLA, "run", "--robot", "sim", "--task", "lift", "--seed", "1", "--episodes", "1"],
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        log_dir = folder / "logs"
        while time.monotonic() < deadline:
            events = read_events(log_dir) if list(log_dir.glob("run_*.jsonl")) else []
            # kill mid-episode, once the arm is following the server's chunks
            if sum(1 for e in events if e.get("type") == "tick" and not e.get("hold")) > 10:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.2)
        else:
            pytest.fail("the client never started its episode")
        policy.reload()
        os.kill(policy.attrs["State"]["Pid"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    events = read_events(folder / "logs")
    connected = [e for e in events if e.get("event") == "connected"]
    disconnected = [e for e in events if e.get("event") == "disconnected"]
    assert len(disconnected) >= 1 and len(connected) >= 2, [e for e in events if "event" in e]
    ends = episode_ends(events)
    assert len(ends) == 1 and ends[0]["success"] is True and not ends[0]["interrupted"], ends
    policy.reload()
    assert policy.attrs["RestartCount"] >= 1
    deadline = time.monotonic() + 60  # health checks run every 10 s: healthy again shortly
    while policy.attrs["State"].get("Health", {}).get("Status") != "healthy" and time.monotonic() < deadline:
        time.sleep(1)
        policy.reload()
    assert policy.attrs["State"]["Running"] and policy.attrs["State"]["Health"]["Status"] == "healthy"


def test_gpu_dry_run_is_a_valid_compose_file_with_reservations_and_vllm_flags(client, tmp_path):
    needed = {"openvla", "qwen-vl"}
    listing = json.loads(vla("plugins", "list", "--json", cwd=tmp_path, check=True).stdout)
    if not needed <= {c["name"] for c in listing["components"]}:
        pytest.fail(f"plugins {needed} must be installed for this check")
    result = vla("up", "--policy", "openvla", "--rewarder", "qwen-vl", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "accepted by `docker compose config`" in result.stderr
    doc = yaml.safe_load(result.stdout)
    # compose itself, independently of vla, accepts what was printed
    printed = tmp_path / "printed.yaml"
    printed.write_text(result.stdout)
    check = subprocess.run(["docker", "compose", "-f", str(printed), "config", "--quiet"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    services = doc["services"]
    assert {"policy", "rewarder", "vllm"} <= set(services)
    for name in ("policy", "vllm"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in services["rewarder"]
    vllm = services["vllm"]
    flags = [c for c in vllm["command"] if c.startswith("--")]
    for flag in ("--model", "--served-model-name", "--max-model-len", "--limit-mm-per-prompt", "--gpu-memory-utilization"):
        assert flag in flags
    assert vllm["ipc"] == "host"
    assert any(str(v).startswith("model-cache:") for v in vllm["volumes"])
    assert doc["volumes"]["model-cache"]["name"] == "vla-model-cache"
    assert services["rewarder"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert int(vllm["healthcheck"]["start_period"].rstrip("s")) >= 300
    assert "ports" not in vllm


def test_gpu_services_on_a_host_without_nvidia_fail_before_starting(client, tmp_path):
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    project = f"vlatest-{uuid.uuid4().hex[:8]}"
    (tmp_path / "vla.yaml").write_text(yaml.safe_dump({"deploy": {"project": project, "policy_port": free_port(), "rewarder_port": free_port()}}))
    result = vla("up", "--policy", "openvla", "--rewarder", "qwen-vl", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "nvidia" in result.stderr and "policy" in result.stderr and "vllm" in result.stderr
    assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": []}


def test_unknown_plugin_or_bad_config_starts_nothing(client, tmp_path):
    project = f"vlatest-{uuid.uuid4().hex[:8]}"
    (tmp_path / "vla.yaml").write_text(yaml.safe_dump({"deploy": {"project": project}}))
    result = vla("up", "--policy", "no-such-policy", "--rewarder", "heuristic", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "no-such-policy" in result.stderr
    (tmp_path / "vla.yaml").write_text(f"deploy:\n  project: {project}\n  rewarder_port: lots\n")
    result = vla("up", "--rewarder", "heuristic", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "deploy.rewarder_port" in result.stderr
    assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": []}


def test_model_cache_survives_down_and_goes_with_down_volumes(client, base_image, tmp_path, monkeypatch):
    """A service that mounts the model cache (a stand-in policy: Python's http.server in the
    base image, registered for this test only) gets the lab's named cache volume, owned by uid
    1000 and written by the service running as 1000; `vla down` keeps it, `vla down --volumes`
    removes it."""
    import types

    from click.testing import CliRunner

    from vla import hookimpl, plugins
    from vla.cli import cli
    from vla.specs import HealthCheck, PolicySpec, ServiceSpec

    port = 8000
    spec = PolicySpec(
        name="cache-probe", description="serves its model cache folder", factory="collections:OrderedDict",
        services=(ServiceSpec(
            name="policy", image=BASE_IMAGE,
            # writes into the cache first: the cache must be writable by the user it runs as (1000)
            command=("sh", "-c", f"touch /cache/written-by-$(id -u) && exec python3 -m http.server {port} -d /cache"),
            port=port, healthcheck=HealthCheck.http(port, "/", interval_s=1.0, start_period_s=30.0),
            volumes={"model-cache": "/cache"},
        ),),
    )
    module = types.ModuleType("cache_probe_plugin")
    module.register_policies = hookimpl(lambda register: register(spec))
    monkeypatch.setenv("VLA_LOAD_PLUGINS", "")
    monkeypatch.setenv("VLA_BIND_ADDRESS", "127.0.0.1")
    monkeypatch.delenv("VLA_CONFIG", raising=False)
    monkeypatch.setattr(plugins, "_registry", plugins.load_registry(extra_plugins=((module, "vla-cache-probe"),)))
    monkeypatch.chdir(tmp_path)
    project = f"vlatest-{uuid.uuid4().hex[:8]}"
    cache = f"{project}-weights"
    (tmp_path / "vla.yaml").write_text(yaml.safe_dump({"deploy": {"project": project, "policy_port": free_port(), "model_cache_volume": cache}}))
    runner = CliRunner()
    try:
        up = runner.invoke(cli, ["up", "--policy", "cache-probe"], catch_exceptions=False)
        assert up.exit_code == 0, up.output
        assert cache in [v.name for v in client.volumes.list()]
        listing = client.containers.run(BASE_IMAGE, ["sh", "-c", "stat -c '%u:%g' /cache && ls /cache"], remove=True,
                                        volumes={cache: {"bind": "/cache", "mode": "ro"}}).decode().split()
        assert listing[0] == "1000:1000" and "written-by-1000" in listing, listing
        kept = runner.invoke(cli, ["down"], catch_exceptions=False)
        assert kept.exit_code == 0, kept.output
        assert "--volumes removes them" in kept.output
        assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": [cache]}
        gone = runner.invoke(cli, ["down", "--volumes"], catch_exceptions=False)
        assert gone.exit_code == 0, gone.output
        assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": []}
    finally:
        runner.invoke(cli, ["down", "--volumes"])


def test_a_busy_port_fails_at_once_and_is_named(client, lab):
    """Something else (here a plain socket) holds the policy port: `vla up` says so within
    seconds, naming the port, instead of waiting out the health checks."""
    folder, project, policy_port, _ = lab
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", policy_port))
        holder.listen()
        started = time.monotonic()
        result = vla("up", "--policy", "scripted", "--rewarder", "heuristic", cwd=folder, timeout=60)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert f"port {policy_port} (policy) on 127.0.0.1 is already in use" in result.stderr
    assert "deploy.policy_port" in result.stderr
    assert project_leftovers(client, project) == {"containers": [], "networks": [], "volumes": []}
