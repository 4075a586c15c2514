"""Compose assembly from service specs and the lab's deploy section, and `vla up`'s early
failures, in-process without a Docker engine.

The GPU plugins here are test plugins registered for one test (their services mirror the
shape of the real openvla / qwen-vl specs: GPU count, ipc host, vLLM backend with a long
start period); nothing is started.
"""

from __future__ import annotations

import types

import attrs
import pytest
import yaml
from click.testing import CliRunner

from vla import hookimpl
from vla.config import DeployConfig
from vla.deploy import compose
from vla.deploy.errors import DeployError
from vla.specs import HealthCheck, PolicySpec, RewarderSpec, ServiceSpec


@attrs.define
class VlmConfig:
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    threshold: float = 0.5


def _vllm_service() -> ServiceSpec:
    return ServiceSpec(
        name="vllm",
        image="vllm/vllm-openai:v0.11.0",
        command=("--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--served-model-name", "qwen-vl",
                 "--max-model-len", "8192", "--limit-mm-per-prompt", '{"image": 8}',
                 "--gpu-memory-utilization", "0.45"),
        port=8000,
        gpus=1,
        healthcheck=HealthCheck.http(8000, "/health", start_period_s=900.0),
        volumes={"model-cache": "/root/.cache/huggingface"},
        environment={"HF_HOME": "/root/.cache/huggingface", "PRICE": "$5"},
        ipc_host=True,
        public=False,
        gpu_memory_fraction=0.45,
    )


def gpu_policy() -> PolicySpec:
    return PolicySpec(
        name="bigvla",
        description="test GPU policy",
        factory="collections:OrderedDict",
        services=(
            ServiceSpec(
                name="policy", image="vla-bigvla:latest", build_context="images/runtime",
                command=("vla", "serve", "--policy", "bigvla", "--port", "8080"), port=8080, gpus=1,
                healthcheck=HealthCheck.http(8080, start_period_s=600.0),
                volumes={"vla-model-cache": "/cache/huggingface"}, ipc_host=True,
            ),
        ),
    )


def vlm_rewarder() -> RewarderSpec:
    return RewarderSpec(
        name="vlm",
        description="test VLM rewarder",
        factory="collections:OrderedDict",
        config=VlmConfig,
        services=(
            ServiceSpec(
                name="rewarder", image="vla-runtime:latest", build_context="images/runtime",
                command=("vla", "serve-rewarder", "--rewarder", "vlm", "--port", "18080"), port=18080,
                healthcheck=HealthCheck.http(18080, start_period_s=60.0),
                environment={"VLLM_URL": "http://vllm:8000/v1"}, depends_on=("vllm",),
            ),
            _vllm_service(),
        ),
    )


def cpu_policy() -> PolicySpec:
    return PolicySpec(
        name="tiny",
        description="test CPU policy",
        factory="collections:OrderedDict",
        services=(ServiceSpec(name="server", image="vla-runtime:latest", build_context="images/runtime",
                              command=("vla", "serve", "--policy", "tiny"), port=8080,
                              healthcheck=HealthCheck.http(8080, start_period_s=30.0)),),
    )


def selection(**components) -> compose.Selection:
    return compose.Selection(components, {role: (f"vla-{spec.name}", "1.2.3") for role, spec in components.items()})


def assemble(sel, deploy=None, **kwargs):
    deploy = deploy or DeployConfig()
    plan = compose.make_plan(sel, deploy)
    return plan, compose.compose_dict(plan, deploy, sel, environ={}, **kwargs)


def test_services_are_named_by_role_and_keep_their_spec_names_as_aliases():
    plan, doc = assemble(selection(policy=cpu_policy(), rewarder=vlm_rewarder()))
    assert list(doc["services"]) == ["model-cache-init", "policy", "rewarder", "vllm"]
    assert doc["services"]["policy"]["networks"] == {"default": {"aliases": ["server"]}}
    assert "networks" not in doc["services"]["rewarder"]  # its spec name is already "rewarder"
    assert doc["name"] == "vla"


def test_gpu_services_get_reservations_ipc_and_long_start_periods():
    _, doc = assemble(selection(policy=gpu_policy(), rewarder=vlm_rewarder()))
    policy, vllm, front = doc["services"]["policy"], doc["services"]["vllm"], doc["services"]["rewarder"]
    device = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert policy["deploy"]["resources"]["reservations"]["devices"] == [device]
    assert vllm["deploy"]["resources"]["reservations"]["devices"] == [device]
    assert "deploy" not in front
    assert policy["ipc"] == "host" and vllm["ipc"] == "host" and "ipc" not in front
    assert vllm["healthcheck"]["start_period"] == "900s"
    assert vllm["healthcheck"]["test"][0] == "CMD" and "/health" in vllm["healthcheck"]["test"][-1]
    assert policy["healthcheck"]["start_period"] == "600s"
    assert all(s["restart"] == "unless-stopped" for n, s in doc["services"].items() if n != "model-cache-init")
    assert doc["services"]["model-cache-init"]["restart"] == "no"


def test_backend_dependency_waits_for_health_and_internal_services_are_not_published():
    _, doc = assemble(selection(rewarder=vlm_rewarder()))
    front, vllm = doc["services"]["rewarder"], doc["services"]["vllm"]
    assert front["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert vllm["depends_on"] == {"model-cache-init": {"condition": "service_completed_successfully"}}
    assert "ports" not in vllm
    assert front["ports"] == [{"target": 18080, "published": "18080", "host_ip": "0.0.0.0", "protocol": "tcp"}]


def test_ports_come_from_the_deploy_section_and_bind_address():
    deploy = DeployConfig(policy_port=9001, rewarder_port=9002)
    plan, doc = assemble(selection(policy=cpu_policy(), rewarder=vlm_rewarder()), deploy, bind="127.0.0.1")
    assert doc["services"]["policy"]["ports"][0] == {"target": 8080, "published": "9001", "host_ip": "127.0.0.1", "protocol": "tcp"}
    assert doc["services"]["rewarder"]["ports"][0]["published"] == "9002"
    assert compose.service_urls(plan, "gpu-host") == {"policy": "ws://gpu-host:9001", "rewarder": "http://gpu-host:9002"}


def test_model_cache_is_one_named_volume_shared_by_services():
    deploy = DeployConfig(model_cache_volume="lab-weights")
    _, doc = assemble(selection(policy=gpu_policy(), rewarder=vlm_rewarder()), deploy)
    assert doc["volumes"] == {"model-cache": {"name": "lab-weights"}}
    assert "model-cache:/cache/huggingface" in doc["services"]["policy"]["volumes"]
    assert "model-cache:/root/.cache/huggingface" in doc["services"]["vllm"]["volumes"]


def test_the_model_cache_has_one_owner():
    """uid 1000 owns the cache: an init service hands it over before any service mounts it, and
    an upstream image that mounts it runs as 1000 with a HOME it can write; vla's images already are 1000."""
    _, doc = assemble(selection(policy=gpu_policy(), rewarder=vlm_rewarder()))
    init = doc["services"]["model-cache-init"]
    assert init["user"] == "0:0" and init["volumes"] == ["model-cache:/cache"] and init["image"] == "vla-bigvla:latest"
    assert "chown 1000:1000 /cache" in init["command"][0]
    vllm, policy = doc["services"]["vllm"], doc["services"]["policy"]
    assert vllm["user"] == "1000:1000" and vllm["environment"]["HOME"] == "/tmp/vla-home"
    assert "user" not in policy  # its image runs as vla (1000) already
    for name in ("vllm", "policy"):
        assert doc["services"][name]["depends_on"]["model-cache-init"] == {"condition": "service_completed_successfully"}
    _, doc = assemble(selection(policy=cpu_policy()))
    assert "model-cache-init" not in doc["services"]  # nothing mounts the cache, nothing to hand over


def test_images_are_pinned_and_compose_never_pulls():
    _, doc = assemble(selection(policy=gpu_policy(), rewarder=vlm_rewarder()))
    assert {s["pull_policy"] for s in doc["services"].values()} == {"never"}
    for image in ("vllm/vllm-openai:latest", "vllm/vllm-openai", "registry:5000/vllm"):
        rewarder = vlm_rewarder()
        services = (rewarder.services[0], attrs.evolve(rewarder.services[1], image=image))
        with pytest.raises(DeployError, match="not pinned"):
            assemble(selection(rewarder=attrs.evolve(rewarder, services=services)))
    assert compose.image_pinned("vllm/vllm-openai:v0.32.0") and compose.image_pinned("registry:5000/vllm:1.2")
    assert compose.image_pinned("vllm/vllm-openai@sha256:" + "0" * 64)


def test_installed_upstream_images_are_pinned():
    from vla.plugins import load_registry

    upstream = [s.image for kind in load_registry().components.values() for e in kind.values()
                for s in e.spec.services if s.build_context is None]
    assert upstream, "expected at least vLLM"
    assert all(compose.image_pinned(i) for i in upstream), upstream


def test_gpus_shared_beyond_their_memory_are_warned_about():
    policy = gpu_policy()
    greedy = attrs.evolve(policy, services=(attrs.evolve(policy.services[0], gpu_memory_fraction=0.5),))
    sel = selection(policy=greedy, rewarder=vlm_rewarder())  # vllm takes 0.45 in the test spec
    plan, _ = assemble(sel)
    assert compose.gpu_sharing_warnings(plan, "all") == []
    # a torch server (no declared share) beside a vLLM that takes most of the GPU
    plan, _ = assemble(selection(policy=gpu_policy(), rewarder=attrs.evolve(vlm_rewarder(), services=(
        vlm_rewarder().services[0], attrs.evolve(vlm_rewarder().services[1], gpu_memory_fraction=0.85)))))
    [warning] = compose.gpu_sharing_warnings(plan, "all")
    assert "leave(s) 0.15 of its memory to policy" in warning
    heavier = attrs.evolve(policy, services=(attrs.evolve(policy.services[0], gpu_memory_fraction=0.9),))
    plan, _ = assemble(selection(policy=heavier, rewarder=vlm_rewarder()))
    [warning] = compose.gpu_sharing_warnings(plan, "all")
    assert "GPU 0" in warning and "policy" in warning and "vllm" in warning and "1.35" in warning
    assert compose.gpu_sharing_warnings(plan, "0,1") == []  # each its own GPU
    assert len(compose.gpu_sharing_warnings(plan, "3")) == 1


def test_host_paths_in_settings_are_mounted_read_only_and_passed_with_set(tmp_path):
    checkpoint = tmp_path / "outputs" / "act" / "pretrained_model"
    checkpoint.mkdir(parents=True)
    weights = tmp_path / "weights.json"
    weights.write_text("{}")
    (tmp_path / "held.json").write_text("{}")
    settings, mounts = compose.host_path_overrides(
        [("path", "outputs/act/pretrained_model"), ("device", "cuda"), ("extra.file", str(weights)), ("p", "held.json")],
        tmp_path)
    assert settings == [("path", "/mnt/vla/path"), ("device", "cuda"), ("extra.file", "/mnt/vla/extra_file/weights.json"),
                        ("p", "/mnt/vla/p/held.json")]
    assert mounts == [(str(checkpoint), "/mnt/vla/path"), (str(weights), "/mnt/vla/extra_file/weights.json"),
                      (str(tmp_path / "held.json"), "/mnt/vla/p/held.json")]
    settings = settings[:3]
    mounts = mounts[:2]
    sel = selection(policy=gpu_policy())
    plan = compose.make_plan(sel, DeployConfig())
    doc = compose.compose_dict(plan, DeployConfig(), sel, environ={}, overrides={"policy": settings},
                               host_mounts={"policy": mounts})
    policy = doc["services"]["policy"]
    assert policy["command"][-6:] == ["--set", "path=/mnt/vla/path", "--set", "device=cuda",
                                      "--set", "extra.file=/mnt/vla/extra_file/weights.json"]
    assert {"type": "bind", "source": str(checkpoint), "target": "/mnt/vla/path", "read_only": True} in policy["volumes"]
    foreign = attrs.evolve(gpu_policy(), services=(attrs.evolve(gpu_policy().services[0], command=("uv", "run", "serve.py")),))
    sel = selection(policy=foreign)
    with pytest.raises(DeployError, match="not `vla serve`"):
        compose.compose_dict(compose.make_plan(sel, DeployConfig()), DeployConfig(), sel, environ={},
                             overrides={"policy": [("device", "cuda")]})


def test_dollar_signs_in_spec_values_survive_compose_interpolation():
    _, doc = assemble(selection(rewarder=vlm_rewarder()))
    assert doc["services"]["vllm"]["environment"]["PRICE"] == "$$5"


def test_api_key_is_passed_by_reference_never_written():
    sel = selection(policy=cpu_policy())
    plan = compose.make_plan(sel, DeployConfig())
    doc = compose.compose_dict(plan, DeployConfig(), sel, environ={"VLA_API_KEY": "s3cret"})
    assert doc["services"]["policy"]["environment"]["VLA_API_KEY"] == "${VLA_API_KEY}"
    assert "s3cret" not in yaml.safe_dump(doc)


def test_explicit_gpu_ids_are_handed_out_in_order():
    _, doc = assemble(selection(policy=gpu_policy(), rewarder=vlm_rewarder()), gpus="0,1")
    devices = lambda s: doc["services"][s]["deploy"]["resources"]["reservations"]["devices"][0]  # noqa: E731
    assert devices("policy")["device_ids"] == ["0"]
    assert devices("vllm")["device_ids"] == ["1"]
    assert "count" not in devices("policy")


def test_plugin_labels_name_the_distribution_and_role():
    _, doc = assemble(selection(policy=cpu_policy()))
    labels = doc["services"]["policy"]["labels"]
    assert labels["ai.vla.role"] == "policy" and labels["ai.vla.component"] == "tiny"
    assert labels["ai.vla.plugin.name"] == "vla-tiny" and labels["ai.vla.plugin.version"] == "1.2.3"


def test_unknown_dependency_is_named():
    bad = attrs.evolve(cpu_policy(), services=(attrs.evolve(cpu_policy().services[0], depends_on=("db",)),))
    with pytest.raises(DeployError, match="depends on 'db'"):
        assemble(selection(policy=bad))


def test_component_without_service_cannot_be_deployed():
    bare = PolicySpec(name="inproc", description="no service", factory="collections:OrderedDict")
    with pytest.raises(DeployError, match="'inproc' declares no service"):
        assemble(selection(policy=bare))


def test_same_host_port_twice_is_refused():
    with pytest.raises(DeployError, match="host port 7000"):
        assemble(selection(policy=cpu_policy(), rewarder=vlm_rewarder()), DeployConfig(policy_port=7000, rewarder_port=7000))


# ------------------------------------------------------------------ the CLI, in-process


def _test_plugin(**hooks):
    module = types.ModuleType("deploy_test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


@pytest.fixture
def gpu_plugins(monkeypatch, tmp_path):
    """A registry holding only the test GPU plugins; the working directory is an empty lab."""
    from vla import plugins

    def register_policies(register):
        register(gpu_policy())
        register(cpu_policy())

    def register_rewarders(register):
        register(vlm_rewarder())

    monkeypatch.setenv("VLA_LOAD_PLUGINS", "")
    monkeypatch.delenv("VLA_CONFIG", raising=False)
    registry = plugins.load_registry(
        extra_plugins=((_test_plugin(register_policies=register_policies, register_rewarders=register_rewarders), "vla-deploy-test"),)
    )
    monkeypatch.setattr(plugins, "_registry", registry)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args):
    from vla.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_dry_run_prints_the_file_and_writes_it(gpu_plugins, monkeypatch):
    from vla.deploy import engine

    monkeypatch.setattr(engine, "compose_available", lambda: False)  # the docker test checks validation
    result = invoke("up", "--policy", "bigvla", "--rewarder", "vlm", "--dry-run")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert set(doc["services"]) == {"model-cache-init", "policy", "rewarder", "vllm"}
    assert yaml.safe_load((gpu_plugins / ".vla" / "compose.dry-run.yaml").read_text()) == doc
    assert not (gpu_plugins / ".vla" / "compose.yaml").exists()  # a running project's file stays


def test_unknown_plugin_fails_naming_it_before_anything_is_written(gpu_plugins):
    result = invoke("up", "--policy", "no-such-policy", "--rewarder", "vlm")
    assert result.exit_code == 2
    assert "no-such-policy" in result.output and "bigvla" in result.output  # names it and what exists
    assert not (gpu_plugins / ".vla").exists()


def test_bad_lab_config_fails_naming_the_key(gpu_plugins):
    (gpu_plugins / "vla.yaml").write_text("deploy:\n  policy_prot: 8080\n")
    result = invoke("up", "--policy", "bigvla")
    assert result.exit_code == 2
    assert "deploy.policy_prot" in result.output and "vla.yaml" in result.output
    assert not (gpu_plugins / ".vla").exists()


def test_bad_plugin_config_fails_naming_the_key(gpu_plugins):
    (gpu_plugins / "vla.yaml").write_text("plugins:\n  vlm:\n    threshold: high\n")
    result = invoke("up", "--rewarder", "vlm")
    assert result.exit_code == 2
    assert "plugins.vlm.threshold" in result.output
    assert not (gpu_plugins / ".vla").exists()


def test_deploy_section_chooses_plugins_when_no_flags(gpu_plugins, monkeypatch):
    from vla.deploy import engine

    monkeypatch.setattr(engine, "compose_available", lambda: False)
    (gpu_plugins / "vla.yaml").write_text("deploy:\n  project: lab7\n  policy: tiny\n  policy_port: 9100\n")
    result = invoke("up", "--dry-run")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["name"] == "lab7" and list(doc["services"]) == ["policy"]
    assert doc["services"]["policy"]["ports"][0]["published"] == "9100"
    # the lab config reaches the containers read-only, for the plugins' settings
    mount = doc["services"]["policy"]["volumes"][-1]
    assert mount["target"] == "/etc/vla/vla.yaml" and mount["read_only"] is True


def test_nothing_to_start_is_an_error(gpu_plugins):
    result = invoke("up")
    assert result.exit_code == 2 and "--policy" in result.output


def test_gpu_services_without_nvidia_runtime_fail_early(gpu_plugins, monkeypatch):
    """The engine check itself, against a client answering like an engine without nvidia."""
    from vla.deploy import engine

    class NoGpuEngine:
        def info(self):
            return {"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}

    with pytest.raises(DeployError, match="no 'nvidia' runtime") as info:
        engine.require_nvidia(NoGpuEngine(), ["policy", "vllm"])
    assert "policy, vllm" in str(info.value) and "runc" in str(info.value)
    engine.require_nvidia(type("GpuEngine", (), {"info": lambda self: {"Runtimes": {"nvidia": {}}}})(), ["policy"])


def test_upstream_images_get_only_their_spec_environment():
    sel = selection(rewarder=vlm_rewarder())
    plan = compose.make_plan(sel, DeployConfig())
    doc = compose.compose_dict(plan, DeployConfig(), sel, lab_config_path="/lab/vla.yaml",
                               environ={"VLA_API_KEY": "k", "HF_TOKEN": "t"})
    vllm, front = doc["services"]["vllm"], doc["services"]["rewarder"]
    assert set(vllm["environment"]) == {"HF_HOME", "PRICE", "HF_TOKEN", "HOME"}  # HOME: it runs as uid 1000
    assert all(isinstance(v, str) for v in vllm["volumes"])  # no lab config mount
    assert front["environment"]["VLA_CONFIG"] == "/etc/vla/vla.yaml"
    assert front["environment"]["VLA_API_KEY"] == "${VLA_API_KEY}"


def test_build_command_passes_base_image_secret_labels_and_plugin_list(tmp_path):
    from pathlib import Path

    from vla.deploy import images

    root = Path(__file__).resolve().parents[2]
    build = images.runtime_build(["vla-heuristic"], root)
    assert build.context == root and build.dockerfile == root / "images/runtime/Dockerfile"
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cmd = images.build_command(build, "docker", base_image="vla-base:bookworm", ca_bundle=ca)
    pairs = list(zip(cmd, cmd[1:]))
    assert ("--build-arg", "BASE_IMAGE=vla-base:bookworm") in pairs
    assert ("--build-arg", "PLUGINS=plugins/rewarders/heuristic") in pairs
    assert ("--secret", f"id=ca,src={ca}") in pairs
    assert ("--label", "ai.vla.protocol=vla/1") in pairs and ("--label", "ai.vla.plugin.name=vla-runtime") in pairs
    assert ("-t", "vla-runtime:latest") in pairs and ("-t", "vla-runtime:0.1.0") in pairs
    assert cmd[-1] == str(root)
    # a plugin's in-repository dependencies come with it (vla-sim's robot description is not on PyPI)
    sim = images.runtime_build(["vla-sim"], root)
    assert sim.build_args["PLUGINS"] == "plugins/robots/sim plugins/robots/so101-description"
    with pytest.raises(DeployError, match="vla-nonexistent"):
        images.runtime_build(["vla-nonexistent"], root)


def test_every_dockerfile_takes_a_base_image_and_runs_as_non_root():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dockerfiles = sorted((root / "images").glob("*/Dockerfile"))
    assert {d.parent.name for d in dockerfiles} >= {"runtime", "openvla", "openpi", "lerobot"}
    for dockerfile in dockerfiles:
        lines = [line.strip() for line in dockerfile.read_text().splitlines()]
        assert lines[[i for i, l in enumerate(lines) if l.startswith("FROM")][0]] == "FROM ${BASE_IMAGE}", dockerfile
        assert any(l.startswith("ARG BASE_IMAGE=") for l in lines), dockerfile
        assert "USER vla" in lines, dockerfile
        assert any(l.startswith("HEALTHCHECK") for l in lines), dockerfile
        assert any("ai.vla.protocol" in l for l in lines), dockerfile
        assert "--mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt" in dockerfile.read_text(), dockerfile


def test_installed_plugins_services_are_deployable_and_listen_beyond_the_container():
    """Every service an installed plugin declares assembles into compose, and each `vla serve`
    / `vla serve-rewarder` in vla's images listens on all interfaces (their default,
    127.0.0.1, is unreachable through a published port)."""
    from vla.plugins import load_registry

    registry = load_registry()
    checked, unreachable = 0, []
    for kind, role in (("policies", "policy"), ("rewarders", "rewarder"), ("trainers", "trainer")):
        for name, entry in registry.components[kind].items():
            if not entry.spec.services:
                continue
            sel = compose.Selection({role: entry.spec}, {role: (entry.distribution, entry.version)})
            plan = compose.make_plan(sel, DeployConfig())
            compose.compose_dict(plan, DeployConfig(), sel, environ={})
            for service in entry.spec.services:
                command = list(service.command)
                if command[:2] in (["vla", "serve"], ["vla", "serve-rewarder"]):
                    if "--host" not in command or command[command.index("--host") + 1] != "0.0.0.0":
                        unreachable.append(f"{entry.distribution} {role} {name!r}: {' '.join(command)}")
                checked += 1
    assert checked > 0
    assert unreachable == [], "services without --host 0.0.0.0"


def test_a_hung_docker_probe_is_killed_with_its_grandchildren():
    """`docker compose` runs its plugin as a grandchild holding the output pipes; a timeout must
    end the whole group instead of waiting on those pipes forever."""
    import subprocess
    import time

    from vla.deploy.engine import run_bounded

    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded(["sh", "-c", "sleep 30 & wait"], timeout=1.0)
    assert time.monotonic() - started < 10
    assert run_bounded(["sh", "-c", "echo ok"], timeout=5.0).stdout.strip() == "ok"


def test_publishing_beyond_localhost_needs_an_api_key_or_insecure(gpu_plugins, monkeypatch):
    from vla.deploy import engine

    monkeypatch.setattr(engine, "compose_available", lambda: False)
    monkeypatch.delenv("VLA_API_KEY", raising=False)
    monkeypatch.delenv("VLA_BIND_ADDRESS", raising=False)

    def started(*args, **kwargs):
        raise AssertionError("nothing may start")

    monkeypatch.setattr(engine, "validate_compose", started)
    result = invoke("up", "--policy", "tiny")
    assert result.exit_code == 2
    assert "refusing to publish policy (port 8080, no policy_server.api_key) on 0.0.0.0" in result.output
    assert "--insecure" in result.output
    # a dry run says what `vla up` would refuse, and starts nothing
    result = invoke("up", "--policy", "tiny", "--dry-run")
    assert result.exit_code == 0 and "would refuse" in result.stderr
    # localhost, --insecure or a key each let it go on (as far as validating the file)
    for args, env in ((["--bind", "127.0.0.1"], {}), (["--insecure"], {}), ([], {"VLA_API_KEY": "k"})):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(AssertionError, match="nothing may start"):
            invoke("up", "--policy", "tiny", *args)
    (gpu_plugins / "vla.yaml").write_text("policy_server:\n  api_key: from-the-file\n")
    monkeypatch.delenv("VLA_API_KEY")
    with pytest.raises(AssertionError, match="nothing may start"):
        invoke("up", "--policy", "tiny")


def test_the_wait_timeout_covers_the_longest_start_period(gpu_plugins, monkeypatch):
    from vla.deploy import cli as deploy_cli

    plan = compose.make_plan(selection(policy=gpu_policy(), rewarder=vlm_rewarder()), DeployConfig())
    seconds, why = deploy_cli._wait_timeout(plan)
    vllm_check = plan.service("vllm").spec.healthcheck
    assert seconds >= 900 and seconds == int(vllm_check.wait_s) + 60 and "vllm" in why
    assert vllm_check.wait_s == 900 + (3 + 1) * (10 + 5)


def test_set_values_are_checked_against_the_plugin_config_before_anything_starts(gpu_plugins):
    result = invoke("up", "--rewarder", "vlm", "--rewarder-set", "threshold=high", "--dry-run")
    assert result.exit_code == 2 and "plugins.vlm.threshold" in result.output
    result = invoke("up", "--policy", "tiny", "--rewarder-set", "threshold=0.7", "--dry-run")
    assert result.exit_code == 2 and "no rewarder is deployed" in result.output
