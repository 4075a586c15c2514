"""Service profiles: `plugins: {<name>: {profile: NAME}}` in vla.yaml makes the same service specs
run another way (the qwen-vl `cpu` profile: vLLM's CPU build and a test model, no GPU).

In-process, without a Docker engine: the installed qwen-vl plugin's own specs, the real lab
config loader and `vla up --dry-run` through click (the compose file is printed, nothing
starts). tests/deploy/test_vllm_cpu_docker.py runs the profile for real.
"""

from __future__ import annotations

import attrs
import pytest
import yaml
from click.testing import CliRunner

from vla.config import ConfigError, LabConfig, LoadedConfig
from vla.deploy import engine
from vla.plugins import load_registry
from vla.specs import HealthCheck, RewarderSpec, ServiceProfile, ServiceSpec, SpecError


@pytest.fixture(scope="module")
def qwen():
    return load_registry().get("rewarders", "qwen-vl").spec


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.delenv("VLA_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine, "compose_available", lambda: False)  # the docker test validates for real
    return tmp_path


def dry_run(lab, plugins: dict | None):
    from vla.cli import cli

    (lab / "vla.yaml").write_text(yaml.safe_dump({"deploy": {"project": "proflab"}, **({"plugins": plugins} if plugins else {})}))
    result = CliRunner().invoke(cli, ["up", "--rewarder", "qwen-vl", "--dry-run", "--bind", "127.0.0.1"],
                                catch_exceptions=False)
    return result, (yaml.safe_load(result.stdout) if result.exit_code == 0 else None)


def test_cpu_profile_swaps_vllm_for_the_cpu_build_and_keeps_the_rest(lab):
    _, gpu = dry_run(lab, None)
    result, cpu = dry_run(lab, {"qwen-vl": {"profile": "cpu"}})
    assert result.exit_code == 0, result.output
    g, c = gpu["services"]["vllm"], cpu["services"]["vllm"]
    # the default stays the GPU spec
    assert g["image"].startswith("vllm/vllm-openai:") and "devices" in str(g["deploy"])
    assert c["image"] == "vla-vllm-cpu:latest" and "deploy" not in c  # no GPU reservation
    assert c["command"][:2] == ["--make-test-model", "qwen2-vl"] and "--dtype" in c["command"]
    served = c["command"][c["command"].index("--served-model-name") + 1]
    assert served.startswith("vla-test/")
    # what the issue keeps: health on /v1/models with a start period, the same volume, the waiting rewarder
    for entry in (g, c):
        assert "/v1/models" in entry["healthcheck"]["test"][-1]
        assert float(entry["healthcheck"]["start_period"].rstrip("s")) >= 300
        assert any(str(v).startswith("model-cache:/cache/huggingface") for v in entry["volumes"])
    assert cpu["services"]["rewarder"]["depends_on"]["vllm"] == {"condition": "service_healthy"}
    assert cpu["volumes"] == gpu["volumes"]
    # the rewarder asks for the model the CPU server serves
    assert f"model={served}" in cpu["services"]["rewarder"]["command"]
    assert cpu["services"]["rewarder"]["image"] == gpu["services"]["rewarder"]["image"]


def test_an_unknown_profile_fails_naming_the_key_and_the_profiles(lab):
    result, _ = dry_run(lab, {"qwen-vl": {"profile": "tpu"}})
    assert result.exit_code == 2
    assert "plugins.qwen-vl.profile" in result.output and "'tpu'" in result.output and "cpu" in result.output
    assert not (lab / ".vla").exists()


def test_the_profile_key_is_vlas_and_the_plugin_config_never_sees_it(qwen):
    loaded = LoadedConfig(LabConfig(plugins={"qwen-vl": {"profile": "cpu", "max_frames": 2}}), None, {})
    assert loaded.plugin_profile(qwen) == "cpu"
    assert loaded.plugin_config(qwen).max_frames == 2  # the rewarder in the container loads the same file
    from vla.service.settings import plugin_settings

    assert plugin_settings(qwen, loaded, {"threshold": 0.7}).threshold == 0.7
    with pytest.raises(ConfigError, match=r"plugins\.qwen-vl\.profile.*cpu.*got 3"):
        LoadedConfig(LabConfig(plugins={"qwen-vl": {"profile": 3}}), None, {}).plugin_config(qwen)


def test_profiles_are_checked_when_the_plugin_registers():
    base = ServiceSpec(name="vllm", image="vllm/vllm-openai:v0.32.0", port=8000, gpus=1,
                       healthcheck=HealthCheck.http(8000, "/v1/models"))

    def spec(*profiles):
        return RewarderSpec(name="vlm", description="d", factory="collections:OrderedDict", services=(base,),
                            profiles=profiles)

    with pytest.raises(SpecError, match=r"\['gpu_count'\] are not ServiceSpec fields"):
        ServiceProfile(name="cpu", description="d", services={"vllm": {"gpu_count": 0}})
    with pytest.raises(SpecError, match=r"changes service\(s\) \['llm'\]"):
        spec(ServiceProfile(name="cpu", description="d", services={"llm": {"gpus": 0}}))
    with pytest.raises(SpecError, match="expected a whole number"):  # the changed spec is validated again
        spec(ServiceProfile(name="cpu", description="d", services={"vllm": {"gpus": -1}}))
    with pytest.raises(SpecError, match="profile names repeat"):
        p = ServiceProfile(name="cpu", description="d", services={"vllm": {"gpus": 0}})
        spec(p, p)
    component = spec(ServiceProfile(name="cpu", description="d", services={"vllm": {"gpus": 0}}))
    assert component.with_profile(None) is component and component.with_profile("cpu").services[0].gpus == 0
    assert component.services[0].gpus == 1  # the registered spec is unchanged
    with pytest.raises(SpecError, match=r"no service profile 'gpu' \(profiles: cpu\)"):
        component.with_profile("gpu")


def test_the_cpu_profile_builds_its_image_from_this_repository(qwen):
    from vla.deploy import images

    entry = load_registry().get("rewarders", "qwen-vl")
    cpu = attrs.evolve(entry, spec=qwen.with_profile("cpu"))
    builds = {b.image: b for b in images.builds_for([cpu])}
    assert builds["vla-vllm-cpu:latest"].dockerfile == images.source_root() / "images/vllm-cpu/Dockerfile"
    assert "vla-vllm-cpu:latest" not in {b.image for b in images.builds_for([entry])}  # GPU: pulled upstream
