"""The qwen-vl rewarder against a real vLLM: vLLM's CPU build (images/vllm-cpu) on the real Docker
engine, brought up by `vla up --rewarder qwen-vl` with `plugins: {qwen-vl: {profile: cpu}}`.

Only the GPU and the real weights are substituted: the server is vLLM 0.32's own OpenAI API
server, serving a tiny, randomly initialised Qwen2-VL that the container makes into the model
volume at first start (images/vllm-cpu/test_models.py). Random weights make the scores
meaningless, so the tests check where a score comes from (vLLM's logprobs, recomputed here
from a request of our own) and how the stack behaves, not what it judges.

One stack for the whole module (vLLM takes ~40 s to load): the tests reach the rewarder on its
published port and vLLM, which is internal to the project, on its container address. The last
test stops vLLM; teardown runs `vla down --volumes` and removes the project's containers and
its model-cache volume.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

VLA = str(Path(sys.executable).parent / "vla")
FIGURES: dict[str, float] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(seed: int, n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def stack(docker_client, base_image, tmp_path_factory):
    """`vla up --rewarder qwen-vl` with the cpu profile, healthy; `vla down --volumes` after."""
    from vla_qwen_vl.plugin import CPU_MODEL, VLLM_PORT

    project = f"vlatest-vllm-{uuid.uuid4().hex[:6]}"
    cache = f"{project}-models"
    port, policy_port = free_port(), free_port()
    lab = tmp_path_factory.mktemp("cpu-lab")
    (lab / "vla.yaml").write_text(yaml.safe_dump({
        "rewarder": {"url": f"http://127.0.0.1:{port}"},
        "deploy": {"project": project, "rewarder_port": port, "policy_port": policy_port, "model_cache_volume": cache},
        "plugins": {"qwen-vl": {"profile": "cpu"}},
    }))
    env = {**os.environ, "VLA_BIND_ADDRESS": "127.0.0.1", "VLA_BASE_IMAGE": base_image}
    for var in ("VLA_CONFIG", "VLA_API_KEY"):
        env.pop(var, None)

    def vla(*args, timeout=1500):
        return subprocess.run([VLA, *args], cwd=lab, env=env, capture_output=True, text=True, timeout=timeout)

    try:
        started = time.monotonic()
        up = vla("up", "--policy", "scripted", "--rewarder", "qwen-vl")  # the README's CPU-only stack
        FIGURES["vla up (builds included when missing)"] = time.monotonic() - started
        assert up.returncode == 0, up.stdout + up.stderr
        [vllm] = docker_client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                                  "com.docker.compose.service=vllm"]})
        address = next(iter(vllm.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        yield {"lab": lab, "vla": vla, "project": project, "cache": cache, "url": f"http://127.0.0.1:{port}",
               "vllm": vllm, "vllm_url": f"http://{address}:{VLLM_PORT}/v1", "model": CPU_MODEL, "up": up}
    finally:
        down = vla("down", "--volumes", timeout=300)
        left = docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
        for c in left:  # `vla down` should have removed them all; the assert below says so
            c.remove(force=True)
        import docker.errors

        cache_left = any(v.name == cache for v in docker_client.volumes.list())
        try:
            docker_client.volumes.get(cache).remove(force=True)
        except docker.errors.NotFound:
            pass
        print("\n" + "\n".join(f"figure: {k}: {v:.1f}s" for k, v in FIGURES.items()))
    assert down.returncode == 0, down.stderr
    assert not [c.name for c in left], "vla down left containers behind"
    assert not cache_left, "vla down --volumes left the model volume behind"


def rewarder(stack, **kw):
    from vla_qwen_vl.config import QwenVLConfig
    from vla_qwen_vl.rewarder import QwenVLRewarder

    settings = dict(base_url=stack["vllm_url"], model=stack["model"], retries=1, backoff_s=0.1, timeout_s=30.0,
                    startup_timeout_s=10.0)
    return QwenVLRewarder(QwenVLConfig(**{**settings, **kw}))


def test_vla_up_brings_vllm_cpu_the_rewarder_and_a_policy_to_healthy(stack, docker_client):
    ps = json.loads(stack["vla"]("ps", "--json").stdout)
    rows = {r["service"]: r for r in ps["services"]}
    assert {name: rows[name]["health"] for name in ("policy", "rewarder", "vllm")} == dict.fromkeys(
        ("policy", "rewarder", "vllm"), "healthy")
    compose = yaml.safe_load((stack["lab"] / ".vla" / "compose.yaml").read_text())
    assert compose["services"]["vllm"]["image"] == "vla-vllm-cpu:latest"
    assert compose["services"]["rewarder"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    # the test model was made into the lab's model volume, and vLLM serves it under its test name
    logs = stack["vllm"].logs().decode("utf-8", "replace")
    assert "made test model qwen2-vl" in logs or "using the test model already in" in logs
    mounts = {m["Name"]: m["Destination"] for m in stack["vllm"].attrs["Mounts"] if m["Type"] == "volume"}
    assert mounts.get(stack["cache"]) == "/cache/huggingface"
    import httpx

    served = httpx.get(stack["vllm_url"] + "/models", timeout=10).json()
    assert [m["id"] for m in served["data"]] == [stack["model"]] and served["data"][0]["max_model_len"] == 512


def test_the_backend_scores_a_frame_and_a_clip_from_vllms_logprobs(stack):
    import httpx

    from vla_qwen_vl.frames import render_prompt, to_data_url, to_pil
    from vla_qwen_vl.scoring import score_from_top_logprobs

    r = rewarder(stack)
    r.warmup()
    start = time.perf_counter()
    one = r.score(frames(0, 1), "lift the yellow cube")
    FIGURES["first score, one frame"] = time.perf_counter() - start
    assert 0.0 <= one.score <= 1.0 and one.details["backend"] == "openai" and one.details["frames_sent"] == 1
    assert one.details["test_model"] == stack["model"]
    # the same request sent by hand: the score is P(yes) / (P(yes) + P(no)) of vLLM's own logprobs
    image = to_data_url(to_pil(frames(0, 1)[0], r.config.max_side), r.config.image_format, r.config.jpeg_quality)
    body = r.backend.chat_request([image], render_prompt(r.config.prompt, "lift the yellow cube", 1))
    reply = httpx.post(stack["vllm_url"] + "/chat/completions", json=body, timeout=60).json()
    top = [(t["token"], t["logprob"]) for t in reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]]
    assert len(top) == 20
    assert one.score == pytest.approx(score_from_top_logprobs(top, r.config.yes_tokens, r.config.no_tokens)[0], abs=1e-6)

    start = time.perf_counter()
    clip = r.score(frames(1, 7), "lift the yellow cube")
    FIGURES["score, a 7-frame clip (4 sent)"] = time.perf_counter() - start
    assert clip.details["frames_sent"] == 4 and 0.0 <= clip.score <= 1.0
    assert clip.details["p_yes"] > 0 and clip.details["p_no"] > 0
    # the pixels reach the model (other frames, another score); the same frames, the same score
    assert r.score(frames(2, 7), "lift the yellow cube").score != pytest.approx(clip.score, abs=1e-7)
    assert r.score(frames(1, 7), "lift the yellow cube").score == pytest.approx(clip.score, abs=1e-6)
    batch = r.score_batch([(frames(1, 7), "lift the yellow cube"), (frames(0, 1), "lift the yellow cube")])
    assert [s.score for s in batch] == pytest.approx([clip.score, one.score], abs=1e-6)


def test_serve_rewarder_answers_score_end_to_end_through_vllm(stack):
    from vla.rewarding.client import RewarderClient

    client = RewarderClient(stack["url"])
    health = client.health()
    assert health["status"] == "ready" and health["rewarder"] == "qwen-vl"
    start = time.perf_counter()
    reply = client.score_reply(frames(3, 2), "lift the yellow cube")
    FIGURES["POST /score through the rewarder service"] = time.perf_counter() - start
    assert reply["rewarder"] == "qwen-vl" and 0.0 <= reply["score"] <= 1.0
    details = reply["details"]
    assert details["backend"] == "openai" and details["model"] == stack["model"] and details["frames_sent"] == 2
    assert details["p_yes"] + details["p_no"] <= 1.0 + 1e-9 and len(details["top_logprobs"]) == 5
    direct = rewarder(stack).score(frames(3, 2), "lift the yellow cube")
    assert reply["raw_score"] == pytest.approx(direct.score, abs=1e-6)  # what vLLM said, through the service


def test_calibrate_through_the_service_writes_a_report_that_says_test_model(stack, tmp_path):
    from PIL import Image

    labels = tmp_path / "clips"
    rows = []
    for i in range(6):
        folder = labels / f"clip{i}"
        folder.mkdir(parents=True)
        names = []
        for k, f in enumerate(frames(10 + i, 2)):
            Image.fromarray(f).save(folder / f"{k:03d}.png")
            names.append(f"clip{i}/{k:03d}.png")
        rows.append({"id": f"clip{i}", "task": "lift", "goal": "lift the yellow cube", "success": i % 2 == 0,
                     "frames": names})
    (labels / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    start = time.monotonic()
    result = stack["vla"]("rewarder", "calibrate", "--rewarder", "qwen-vl", "--url", stack["url"],
                          "--labels", str(labels), "--out", str(tmp_path / "reports"), timeout=300)
    FIGURES["vla rewarder calibrate --url, 6 clips"] = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "reports" / "calibration_qwen-vl.json").read_text())
    assert report["test_model"] is True and "random" in report["note"] and stack["model"] in report["note"]
    assert list(report)[:2] == ["note", "test_model"]  # the header comes first
    assert report["n_scored"] == 6 and report["n_errors"] == 0 and report["source"] == stack["url"]
    assert "TEST MODEL" in " ".join(result.stderr.split())
    assert (tmp_path / "reports" / "calibration_qwen-vl.png").stat().st_size > 0


def test_clear_one_line_errors_for_a_wrong_model_and_a_request_over_the_context(stack):
    from vla.rewarding.errors import BackendError

    with pytest.raises(BackendError) as err:
        rewarder(stack, model="Qwen/Qwen2.5-VL-7B-Instruct").score(frames(0, 1), "lift the yellow cube")
    assert err.value.code == "model_not_found" and "\n" not in err.value.message
    assert "'Qwen/Qwen2.5-VL-7B-Instruct'" in err.value.message and f"it serves {stack['model']}" in err.value.message
    with pytest.raises(BackendError, match="does not serve model"):
        rewarder(stack, model="nope").warmup()

    with pytest.raises(BackendError) as err:  # 4 images fit in 512 tokens; a 600-word goal does not
        rewarder(stack).score(frames(0, 1), "lift the yellow cube " * 150)
    assert err.value.code == "request_too_long" and "\n" not in err.value.message
    assert "context" in err.value.message and "--max-model-len" in err.value.message


def test_vllm_down_is_a_clear_one_line_error_through_the_service(stack):
    """Last: stops vLLM. The rewarder keeps serving and says what is wrong, in one line."""
    from vla.rewarding.client import RewarderClient
    from vla.rewarding.errors import BackendError, RewarderError

    stack["vllm"].stop(timeout=10)
    with pytest.raises(RewarderError) as err:
        RewarderClient(stack["url"], retries=0).score(frames(0, 1), "lift the yellow cube")
    assert err.value.status == 502 and err.value.code == "backend_unavailable"
    assert "\n" not in err.value.message and "vllm:8000" in err.value.message and "cannot connect" in err.value.message
    assert RewarderClient(stack["url"]).health()["status"] == "ready"  # the service itself is up
    with pytest.raises(BackendError) as err:
        rewarder(stack, timeout_s=3.0).score(frames(0, 1), "lift the yellow cube")
    assert err.value.code in ("backend_unavailable", "backend_timeout") and "\n" not in err.value.message
