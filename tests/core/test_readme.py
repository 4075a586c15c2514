"""The README's promises: its first commands are the Makefile's, and its CLI reference is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_starts_with_make_demo_and_make_test():
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_cli_reference_in_readme_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_reference.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def readme_plugins(tmp_path: Path) -> Path:
    """The plugin guide's example plugins, written from the README's own code blocks, made
    importable with their entry points (a dist-info folder, as pip would write) under one path."""
    import tomllib

    text = (REPO / "README.md").read_text()
    files = re.findall(r"`(vla-[a-z]+/[^`]+)`[^\n]*:\n\n```[a-z]*\n(.*?)```", text, re.S)
    assert {f.split("/")[0] for f, _ in files} == {"vla-constant", "vla-motion", "vla-toyarm"}, [f for f, _ in files]
    site = tmp_path / "site"
    for rel, body in files:
        dist, inner = rel.split("/", 1)
        if inner == "pyproject.toml":
            project = tomllib.loads(body)["project"]
            info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
            points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["vla"].items())
            (info / "entry_points.txt").write_text("[vla]\n" + points)
        else:
            path = site / inner
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(body)
    return site


def test_the_plugin_guide_examples_work_as_written(tmp_path):
    """A policy, a rewarder and a robot plugin, exactly as the README shows them: listed, conform,
    the rewarder scores over HTTP, and `vla run` drives the robot with the policy's targets."""
    import json
    import os
    import socket
    import time
    import urllib.request

    site = readme_plugins(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("ARM_ID", None)
    vla = str(Path(sys.executable).parent / "vla")

    def run(*args, **kw):
        return subprocess.run([vla, *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path, **kw)

    listed = json.loads(run("plugins", "list", "--json").stdout)
    names = {(c["kind"], c["name"]) for c in listed["components"]}
    assert {("policies", "constant"), ("rewarders", "motion"), ("robots", "toyarm")} <= names
    assert listed["failures"] == []
    check = ("from vla.testing import check_plugin; from vla.testing.safety import check_safety_property;"
             "from vla_toyarm.description import TOYARM;"
             "[check_plugin(d) for d in ('vla-constant', 'vla-motion', 'vla-toyarm')];"
             "check_safety_property(TOYARM, examples=100, client_examples=10); print('ok')")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def wait_ready(port, proc):
        for _ in range(200):
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if json.loads(r.read()).get("status") == "ready":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("not ready")

    # the rewarder, through the real service
    import base64
    import io

    import numpy as np
    from PIL import Image

    def png(value):
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()

    port = free_port()
    proc = subprocess.Popen([vla, "serve-rewarder", "--rewarder", "motion", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        wait_ready(port, proc)

        def score(frames):
            body = json.dumps({"goal": "wave", "frames": frames}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/score", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        moved, still = score([png(10), png(200)]), score([png(10), png(10)])
        assert moved["success"] and moved["score"] == 1.0 and moved["rewarder"] == "motion"
        assert not still["success"] and still["score"] == 0.0 and still["details"] == {"mean_change": 0.0}
    finally:
        proc.terminate()
        proc.wait(20)

    # the policy drives the robot: vla init --robot toyarm, vla doctor, vla run --arm
    assert run("init", "lab", "--robot", "toyarm").returncode == 0
    lab = tmp_path / "lab"
    (lab / "vla.yaml").write_text((lab / "vla.yaml").read_text().replace(
        "plugins: {}", "plugins:\n  constant: {position: [0.3, 0.2, 0.5, 1.0]}"))
    doctor = run("--config", str(lab / "vla.yaml"), "doctor", "--no-network")
    arm = [line for line in doctor.stdout.splitlines() if " arm arm01" in line]
    assert arm and "robot toyarm, config checked by ToyArmConfig" in arm[0] and "FAIL" not in "".join(arm), doctor.stdout
    port = free_port()
    proc = subprocess.Popen([vla, "--config", str(lab / "vla.yaml"), "serve", "--policy", "constant", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=lab)
    try:
        wait_ready(port, proc)
        drive = subprocess.run([vla, "run", "--arm", "arm01", "--task", "hold", "--duration", "1.5",
                                "--policy-url", f"ws://127.0.0.1:{port}"], capture_output=True, text=True, env=env,
                               timeout=120, cwd=lab)
        assert drive.returncode == 0, drive.stderr
    finally:
        proc.terminate()
        proc.wait(20)
    from vla.client.ticklog import read_log

    ticks = [r for r in read_log(next((lab / "logs").glob("run_*.jsonl"))) if r["type"] == "tick"]
    header = next(read_log(next((lab / "logs").glob("run_*.jsonl"))))
    assert header["robot"] == "toyarm" and header["safety"].endswith("safety/toyarm.yaml")
    assert np.allclose(ticks[-1]["command"], [0.3, 0.2, 0.5, 1.0], atol=1e-6)  # reached through the step limit
