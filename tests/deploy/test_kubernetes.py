"""`vla up --target k8s`: Kubernetes manifests from the same service specs compose uses.

No cluster runs here (nor in CI), so nothing is applied. What is real: the installed plugins'
own specs, the `vla` console script, kubernetes-validate's bundled schemas for Kubernetes 1.30
and 1.37 (offline, strict: an unknown field fails), and kubectl's built-in kustomize, which
renders the folder exactly as `kubectl apply -k DIR` would, Secret generator included.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import yaml

from vla.config import DeployConfig, KubernetesConfig, Toleration
from vla.deploy import compose, kubernetes, manifests
from vla.deploy.errors import DeployError
from vla.deploy.resolve import LAB_CONFIG_TARGET, resolve
from vla.plugins import load_registry
from vla.specs import HealthCheck, PolicySpec, ServiceSpec

BIN = Path(sys.executable).parent
VLA = str(BIN / "vla")
VERSIONS = ("1.30.0", "1.37.0")
KEY = "k8s-test-key-6f1d0c"


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: requirements/test.txt installs it")
        pytest.skip(f"{name} is not installed (pip install -r requirements/test.txt)")
    return path


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def selection(registry, **names) -> compose.Selection:
    kinds = {"policy": "policies", "rewarder": "rewarders", "trainer": "trainers"}
    entries = {role: registry.get(kinds[role], name) for role, name in names.items()}
    return compose.Selection({r: e.spec for r, e in entries.items()},
                             {r: (e.distribution, e.version) for r, e in entries.items()})


def build(sel, deploy=None, lab_config_text="lab: test\n"):
    deploy = deploy or DeployConfig()
    plan = compose.make_plan(sel, deploy)
    services = resolve(plan, deploy, sel, lab_config=lab_config_text is not None)
    return kubernetes.manifests(services, deploy, lab_config_text=lab_config_text)


def objects(files, kind=None, name=None):
    found = [o for docs in files.values() for o in docs]
    return [o for o in found if (kind is None or o["kind"] == kind) and (name is None or o["metadata"]["name"] == name)]


def one(files, kind, name):
    [found] = objects(files, kind, name)
    return found


def container(files, name):
    return one(files, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def pod(files, name):
    return one(files, "Deployment", name)["spec"]["template"]["spec"]


def env_of(c):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def k8s_deploy(**kwargs) -> DeployConfig:
    return DeployConfig(kubernetes=KubernetesConfig(**kwargs))


# ------------------------------------------------------------------ schemas, offline


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The folder `vla up --target k8s` writes for openvla (2 replicas) and qwen-vl, from a lab
    config with a key, then rendered by kubectl's kustomize with the lab's secrets.env."""
    lab = tmp_path_factory.mktemp("lab")
    (lab / "vla.yaml").write_text(
        f"policy_server:\n  api_key: {KEY}\nplugins:\n  qwen-vl:\n    max_frames: 4\n"
        "deploy:\n  project: lab7\n  kubernetes:\n    image_registry: registry.lab:5000\n"
    )
    result = subprocess.run(
        [VLA, "up", "--target", "k8s", "--policy", "openvla", "--rewarder", "qwen-vl", "--replicas", "policy=2", "--out", "k8s"],
        cwd=lab, capture_output=True, text=True, timeout=120, env={**os.environ, "VLA_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    out = lab / "k8s"
    (out / "secrets.env").write_text(f"VLA_API_KEY={KEY}\n")  # the lab's step, never vla's
    rendered = subprocess.run([tool("kubectl"), "kustomize", str(out)], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    (lab / "rendered.yaml").write_text(rendered.stdout)
    return {"lab": lab, "out": out, "stdout": result.stdout, "stderr": result.stderr,
            "rendered": list(yaml.safe_load_all(rendered.stdout))}


@pytest.mark.parametrize("version", VERSIONS)
def test_written_folder_and_its_kustomize_rendering_validate_offline(written, version):
    files = sorted(str(p) for p in written["out"].glob("*.yaml") if p.name != "kustomization.yaml")
    files.append(str(written["lab"] / "rendered.yaml"))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", version, *files],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    kinds = {o["kind"] for o in written["rendered"]}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service",
                     "PodDisruptionBudget", "NetworkPolicy"}
    assert len(passed) == 2 * len(written["rendered"]) - 1  # each object in its file and rendered (the Secret only rendered)


@pytest.mark.parametrize("version", ("1.30", "1.37"))
def test_every_installed_plugin_with_a_service_validates(registry, version):
    checked = 0
    for kind, role in (("policies", "policy"), ("rewarders", "rewarder"), ("trainers", "trainer")):
        for name, entry in registry.components[kind].items():
            if not entry.spec.services:
                continue
            texts = manifests.render(resolve_for(registry, role, name), DeployConfig(), "lab: test\n")
            assert manifests.validate(texts, version) == [], f"{role} {name}"
            checked += 1
    assert checked >= 6  # openvla, lerobot, pi0, pi0-fast, scripted; qwen-vl, heuristic


def resolve_for(registry, role, name):
    sel = selection(registry, **{role: name})
    plan = compose.make_plan(sel, DeployConfig())
    return resolve(plan, DeployConfig(), sel, lab_config=True)


def test_validation_is_strict_and_names_the_field(registry):
    texts = manifests.render(resolve_for(registry, "policy", "scripted"), DeployConfig(), "lab: test\n")
    assert manifests.validate(texts, "1.30") == []
    typo = list(yaml.safe_load_all(texts["policy.yaml"]))
    typo[0]["spec"]["replica"] = 2  # a typo a cluster would reject
    [problem] = manifests.validate({"policy.yaml": manifests.dump(typo)}, "1.30")
    assert problem.startswith("policy.yaml: Deployment/policy: spec: ") and "'replica'" in problem
    wrong = list(yaml.safe_load_all(texts["policy.yaml"]))
    wrong[1]["spec"]["ports"][0]["port"] = "eighty"
    [problem] = manifests.validate({"policy.yaml": manifests.dump(wrong)}, "1.37")
    assert problem.startswith("policy.yaml: Service/policy: spec.ports.0.port: ")


# ------------------------------------------------------------------ GPUs


def test_gpu_services_get_gpu_limits_node_selector_and_tolerations(registry):
    files = build(selection(registry, policy="openvla", rewarder="qwen-vl"))
    for name, gpus in (("policy", 1), ("vllm", 1)):
        assert container(files, name)["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert pod(files, name)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod(files, name)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert "runtimeClassName" not in pod(files, name)
    front = pod(files, "rewarder")
    assert "nvidia.com/gpu" not in container(files, "rewarder")["resources"]["limits"]
    assert "nodeSelector" not in front and "tolerations" not in front  # a CPU service goes anywhere


def test_gpu_count_and_the_labs_gpu_nodes_come_through(registry):
    openvla = registry.get("policies", "openvla").spec
    two = attrs.evolve(openvla, services=(attrs.evolve(openvla.services[0], gpus=2),))
    sel = compose.Selection({"policy": two}, {"policy": ("vla-openvla", "0.1.0")})
    deploy = k8s_deploy(gpu_node_selector={"gpu": "h100"}, runtime_class="nvidia",
                        gpu_tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoExecute")])
    files = build(sel, deploy)
    assert container(files, "policy")["resources"]["limits"]["nvidia.com/gpu"] == 2
    spec = pod(files, "policy")
    assert spec["nodeSelector"] == {"gpu": "h100"} and spec["runtimeClassName"] == "nvidia"
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]
    assert "nodeSelector" not in pod(build(sel, k8s_deploy(gpu_node_selector={})), "policy")


def test_resources_are_requested_memory_capped_cpu_never(registry):
    files = build(selection(registry, rewarder="qwen-vl"))
    vllm = registry.get("rewarders", "qwen-vl").spec.services[1]
    resources = container(files, "vllm")["resources"]
    memory = f"{math.ceil(vllm.resources.memory_gib)}Gi"
    assert resources["requests"] == {"cpu": str(int(vllm.resources.cpu)), "memory": memory}
    assert resources["limits"] == {"memory": memory, "nvidia.com/gpu": 1}
    assert vllm.resources.memory_gib >= 16  # a 7B VLM does not load in the 2 GiB default


def test_the_cpu_profile_is_a_cpu_only_pod_with_its_own_requests(tmp_path):
    """`plugins: {qwen-vl: {profile: cpu}}` in vla.yaml: the same specs, vLLM's CPU build, no GPU asked."""
    from vla_qwen_vl.plugin import CPU_PROFILE

    (tmp_path / "vla.yaml").write_text("plugins:\n  qwen-vl:\n    profile: cpu\ndeploy:\n  project: cpulab\n")
    result = subprocess.run([VLA, "up", "--target", "k8s", "--rewarder", "qwen-vl", "--out", "k8s", "--insecure"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = {p.name: list(yaml.safe_load_all(p.read_text())) for p in (tmp_path / "k8s").glob("*.yaml")}
    vllm, spec = container(files, "vllm"), pod(files, "vllm")
    wanted = CPU_PROFILE.services["vllm"]["resources"]
    assert vllm["image"] == "vla-vllm-cpu:latest"
    assert vllm["resources"]["requests"] == {"cpu": str(int(wanted.cpu)), "memory": f"{math.ceil(wanted.memory_gib)}Gi"}
    assert vllm["resources"]["limits"] == {"memory": f"{math.ceil(wanted.memory_gib)}Gi"}  # no nvidia.com/gpu
    assert "nodeSelector" not in spec and "tolerations" not in spec and "runtimeClassName" not in spec
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert "--served-model-name" in vllm["args"] and "vla-test/tiny-qwen2-vl" in vllm["args"]
    assert "model=vla-test/tiny-qwen2-vl" in container(files, "rewarder")["args"]
    checked = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", VERSIONS[-1],
                              *sorted(str(p) for p in (tmp_path / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # without the profile the same command still asks for the GPU
    (tmp_path / "vla.yaml").write_text("deploy:\n  project: cpulab\n")
    assert subprocess.run([VLA, "up", "--target", "k8s", "--rewarder", "qwen-vl", "--out", "k8s", "--insecure"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120).returncode == 0
    files = {p.name: list(yaml.safe_load_all(p.read_text())) for p in (tmp_path / "k8s").glob("*.yaml")}
    assert container(files, "vllm")["resources"]["limits"]["nvidia.com/gpu"] == 1


# ------------------------------------------------------------------ probes from health checks


@pytest.mark.parametrize("role,name,service", [("policy", "openvla", "policy"), ("rewarder", "qwen-vl", "rewarder"),
                                               ("rewarder", "qwen-vl", "vllm"), ("policy", "scripted", "policy")])
def test_probes_are_derived_from_each_health_check(registry, role, name, service):
    files = build(selection(registry, **{role: name}))
    spec = next(s for s in compose.make_plan(selection(registry, **{role: name}), DeployConfig()).services
                if s.compose_name == service).spec
    check = spec.healthcheck
    c = container(files, service)
    period = math.ceil(check.interval_s)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": check.http_path, "port": check.http_port}
        assert c[probe]["periodSeconds"] == period and c[probe]["timeoutSeconds"] == math.ceil(check.timeout_s)
    # the start period is the startup probe's budget; after it, compose's retries
    assert c["startupProbe"]["failureThreshold"] * period >= check.start_period_s
    assert c["startupProbe"]["failureThreshold"] == math.ceil(check.start_period_s / period) + check.retries
    assert c["readinessProbe"]["failureThreshold"] == check.retries
    assert c["livenessProbe"]["failureThreshold"] == 2 * check.retries
    assert check.http_port == spec.port and c["ports"][0]["containerPort"] == spec.port


def test_a_command_health_check_becomes_exec_probes():
    check = HealthCheck(command=("python3", "/opt/check.py"), interval_s=2.5, timeout_s=0.5, retries=0, start_period_s=61)
    got = kubernetes.probes(check)
    assert got["startupProbe"] == {"exec": {"command": ["python3", "/opt/check.py"]}, "periodSeconds": 3,
                                   "timeoutSeconds": 1, "failureThreshold": 21 + 1}
    assert got["readinessProbe"]["failureThreshold"] == 1  # retries 0 still means one failure, not never
    got["readinessProbe"]["exec"]["command"].append("x")  # probes do not share their handlers
    assert got["livenessProbe"]["exec"]["command"] == ["python3", "/opt/check.py"]


def test_vllm_is_ready_on_v1_models_not_health(registry):
    """vLLM's /health stays 200 after a GPU fault (vllm#36960): the readiness comes from the
    qwen-vl plugin's own health check, which asks /v1/models."""
    files = build(selection(registry, rewarder="qwen-vl"))
    assert container(files, "vllm")["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": 8000}
    wait = pod(files, "rewarder")["initContainers"][0]
    assert "http://vllm:8000/v1/models" in wait["command"][-1]


# ------------------------------------------------------------------ one test per service kind


def test_policy_kind_deployment_service_replicas_and_disruption_budget(registry):
    deploy = DeployConfig(policy_port=9001, kubernetes=KubernetesConfig(replicas={"policy": 3}))
    files = build(selection(registry, policy="openvla"), deploy)
    d = one(files, "Deployment", "policy")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/instance": "vla", "app.kubernetes.io/name": "policy"}
    spread = d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    svc = one(files, "Service", "policy")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9001, "targetPort": "http", "protocol": "TCP"}]
    assert "sessionAffinity" not in svc["spec"]  # arms keep their state; connections are balanced, not clients
    assert one(files, "PodDisruptionBudget", "policy")["spec"]["maxUnavailable"] == 1
    c = container(files, "policy")
    assert c["args"][:3] == ["vla", "serve", "--policy"] and "command" not in c  # the image's entrypoint stays
    assert {"name": "lab-config", "mountPath": "/etc/vla", "readOnly": True} in c["volumeMounts"]
    assert env_of(c)["VLA_CONFIG"] == "/etc/vla/vla.yaml" and env_of(c)["VLA_PORT"] == "8080"
    # one replica: no budget, no spread
    single = build(selection(registry, policy="openvla"))
    assert not objects(single, "PodDisruptionBudget")
    assert "topologySpreadConstraints" not in pod(single, "policy")


def test_rewarder_kind_waits_for_its_backend_and_is_published(registry):
    files = build(selection(registry, rewarder="qwen-vl"), DeployConfig(rewarder_port=18181))
    spec = pod(files, "rewarder")
    [wait] = spec["initContainers"]
    assert wait["name"] == "wait-for-vllm" and wait["image"] == container(files, "rewarder")["image"]
    svc = one(files, "Service", "rewarder")
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 18181
    c = container(files, "rewarder")
    assert "base_url=http://vllm:8000/v1" in c["args"]  # the spec's host name is the cluster's Service name
    assert env_of(c)["VLA_API_KEY"] == {"secretKeyRef": {"name": "vla-secrets", "key": "VLA_API_KEY", "optional": False}}
    assert c["envFrom"] == [{"secretRef": {"name": "vla-secrets", "optional": True}}]
    assert one(files, "Service", "vllm")["spec"]["type"] == "ClusterIP"


def test_vllm_kind_internal_with_shared_memory_model_cache_and_its_own_arguments(registry):
    files = build(selection(registry, rewarder="qwen-vl"), k8s_deploy(cache_size="500Gi", storage_class="nfs"))
    vllm = registry.get("rewarders", "qwen-vl").spec.services[1]
    c = container(files, "vllm")
    assert c["image"] == vllm.image and c["args"] == list(vllm.command) and "command" not in c
    env = env_of(c)
    assert "VLA_API_KEY" not in env and "VLA_CONFIG" not in env and "envFrom" not in c  # upstream image: its spec only
    assert env["HF_TOKEN"]["secretKeyRef"]["optional"] is True
    assert env["HF_HOME"] == vllm.environment["HF_HOME"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]  # ipc_host: Kubernetes shares no host IPC
    volumes = {v["name"]: v for v in pod(files, "vllm")["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "vla-model-cache"
    claim = one(files, "PersistentVolumeClaim", "vla-model-cache")["spec"]
    assert claim == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "500Gi"}}, "storageClassName": "nfs"}
    netpol = one(files, "NetworkPolicy", "vllm")["spec"]
    assert netpol["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "vllm"
    assert netpol["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "vla"}}}]
    assert not objects(files, "NetworkPolicy", "rewarder")  # the public ones answer the arms


def test_no_pod_gets_service_link_variables(registry):
    """Kubernetes' service links would set REWARDER_PORT=tcp://IP:18080 in every container, which
    vla's own config reads as the rewarder's port (and VLLM_PORT, which vLLM reads as its own)."""
    from vla.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="REWARDER_PORT"):
        load_config(environ={"REWARDER_PORT": "tcp://10.0.0.7:18080"})
    files = build(selection(registry, policy="openvla", rewarder="qwen-vl"))
    assert all(d["spec"]["template"]["spec"]["enableServiceLinks"] is False for d in objects(files, "Deployment"))


# ------------------------------------------------------------------ the secret


def test_the_api_key_is_a_secret_reference_and_never_written(written):
    text = "\n".join(p.read_text() for p in written["out"].iterdir() if p.name != "secrets.env")
    assert KEY not in text and KEY not in written["stdout"] + written["stderr"]
    kustomization = yaml.safe_load((written["out"] / "kustomization.yaml").read_text())
    assert kustomization["secretGenerator"] == [{"name": "lab7-secrets", "envs": ["secrets.env"]}]
    assert (written["out"] / ".gitignore").read_text().split() == ["secrets.env"]
    assert "# VLA_API_KEY=" in (written["out"] / "secrets.env.example").read_text()
    assert "secrets.env" in written["stderr"]  # told what is left to do
    assert "needs 3 GPU(s) free: policy 2, vllm 1" in written["stderr"]  # two policy replicas and vLLM
    # the ConfigMap carries the lab config without its key
    [config_map] = [o for o in written["rendered"] if o["kind"] == "ConfigMap"]
    lab = yaml.safe_load(config_map["data"]["vla.yaml"])
    assert "api_key" not in lab["policy_server"] and lab["plugins"] == {"qwen-vl": {"max_frames": 4}}
    # kustomize made the Secret from the lab's file and pointed every reference at it
    [secret] = [o for o in written["rendered"] if o["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("lab7-secrets-") and secret["metadata"]["namespace"] == "lab7"
    assert base64.b64decode(secret["data"]["VLA_API_KEY"]).decode() == KEY
    refs = []
    for d in (o for o in written["rendered"] if o["kind"] == "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e]
            refs += [f["secretRef"]["name"] for f in c.get("envFrom", [])]
    assert refs and set(refs) == {secret["metadata"]["name"]}
    # vla's own images come from the lab's registry
    images = {c["image"] for o in written["rendered"] if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert "registry.lab:5000/vla-openvla:latest" in images and "registry.lab:5000/vla-runtime:latest" in images
    assert any(i.startswith("vllm/vllm-openai:") for i in images)  # upstream images keep theirs


def test_an_existing_secret_can_be_named_instead(registry):
    deploy = k8s_deploy(secret="lab-keys")
    texts = manifests.render(resolve_for(registry, "policy", "scripted"), deploy, "lab: test\n")
    assert "secretGenerator" not in yaml.safe_load(texts["kustomization.yaml"])
    assert "secrets.env.example" not in texts and "name: lab-keys" in texts["policy.yaml"]


def test_secret_settings_other_than_the_api_keys_are_refused(tmp_path):
    path = tmp_path / "vla.yaml"
    path.write_text("plugins:\n  qwen-vl:\n    api_key: sk-123\n")
    with pytest.raises(DeployError, match=r"plugins\.qwen-vl\.api_key would be written in plain text"):
        manifests.cluster_lab_config(path)
    path.write_text("policy_server:\n  api_key: a\nrewarder:\n  api_key: b\n")
    with pytest.raises(DeployError, match="differ"):
        manifests.cluster_lab_config(path)
    path.write_text("policy_server:\n  api_key: a\nrewarder:\n  api_key: a\nplugins:\n  openvla:\n    unnorm_key: bridge_orig\n")
    text = manifests.cluster_lab_config(path)
    assert "a\n" not in text.split("\n", 1)[1] and "unnorm_key: bridge_orig" in text


# ------------------------------------------------------------------ same specs, both targets


def test_changing_a_spec_changes_both_the_compose_file_and_the_manifests(registry):
    base = registry.get("rewarders", "qwen-vl").spec
    rewarder, vllm = base.services
    changed_vllm = attrs.evolve(
        vllm, image="vllm/vllm-openai:v9.9.9", command=vllm.command + ("--enforce-eager",),
        environment={**vllm.environment, "VLLM_LOGGING_LEVEL": "DEBUG"},
        healthcheck=attrs.evolve(vllm.healthcheck, start_period_s=1800.0),
    )
    changed = attrs.evolve(base, services=(attrs.evolve(
        rewarder, port=18555, command=tuple("18555" if c == "18080" else c for c in rewarder.command),
        healthcheck=HealthCheck.http(18555, "/healthz", start_period_s=rewarder.healthcheck.start_period_s)), changed_vllm))

    def both(spec):
        sel = compose.Selection({"rewarder": spec}, {"rewarder": ("vla-qwen-vl", "0.1.0")})
        deploy = DeployConfig(rewarder_port=18555 if spec is changed else 18080)
        plan = compose.make_plan(sel, deploy)
        return compose.compose_dict(plan, deploy, sel, environ={}), build(sel, deploy)

    (compose_before, k8s_before), (compose_after, k8s_after) = both(base), both(changed)
    assert compose_before != compose_after and k8s_before != k8s_after
    cv, kv = compose_after["services"]["vllm"], container(k8s_after, "vllm")
    assert cv["image"] == kv["image"] == "vllm/vllm-openai:v9.9.9"
    assert cv["command"][-1] == kv["args"][-1] == "--enforce-eager"
    assert cv["environment"]["VLLM_LOGGING_LEVEL"] == env_of(kv)["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert cv["healthcheck"]["start_period"] == "1800s"
    assert kv["startupProbe"]["failureThreshold"] == math.ceil(1800 / 15) + vllm.healthcheck.retries
    assert compose_after["services"]["rewarder"]["ports"][0]["target"] == 18555
    assert container(k8s_after, "rewarder")["ports"][0]["containerPort"] == 18555
    assert container(k8s_after, "rewarder")["readinessProbe"]["httpGet"]["port"] == 18555
    assert "127.0.0.1:18555/healthz" in compose_after["services"]["rewarder"]["healthcheck"]["test"][-1]
    assert one(k8s_after, "Service", "rewarder")["spec"]["ports"][0]["port"] == 18555


def test_compose_and_kubernetes_agree_on_every_resolved_decision(registry):
    """What resolve.py decides (environment, secrets, volumes, dependencies) appears in both."""
    sel = selection(registry, policy="lerobot", rewarder="qwen-vl")
    deploy = DeployConfig()
    plan = compose.make_plan(sel, deploy)
    doc = compose.compose_dict(plan, deploy, sel, lab_config_path="/lab/vla.yaml",
                               environ={"VLA_API_KEY": "x", "HF_TOKEN": "y"})
    files = build(sel, deploy)
    for r in resolve(plan, deploy, sel, lab_config=True):
        c, entry = container(files, r.name), doc["services"][r.name]
        k8s_env, compose_env = env_of(c), entry.get("environment", {})
        by_reference = {k for k, v in compose_env.items() if v.startswith("${")}
        assert {k: v for k, v in k8s_env.items() if isinstance(v, str)} == {
            k: v for k, v in compose_env.items() if k not in by_reference}
        assert {k for k, v in k8s_env.items() if not isinstance(v, str)} == by_reference
        k8s_mounts = [LAB_CONFIG_TARGET if m["name"] == "lab-config" else m["mountPath"]
                      for m in c.get("volumeMounts", []) if m["name"] != "dshm"]
        assert k8s_mounts == [v["target"] if isinstance(v, dict) else v.split(":", 1)[1] for v in entry.get("volumes", [])]
        waits = [w["name"].removeprefix("wait-for-") for w in pod(files, r.name).get("initContainers", [])]
        assert waits == [d for d in entry.get("depends_on", {}) if d != compose.CACHE_INIT]
        # the cache's one owner: compose's init service and user, Kubernetes' fsGroup and runAsUser
        uses_cache = compose.CACHE_INIT in entry.get("depends_on", {})
        assert (pod(files, r.name).get("securityContext") == {"fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch"}) is uses_cache
        security = c["securityContext"]
        assert entry.get("user") == (f"{security['runAsUser']}:{security['runAsGroup']}" if "runAsUser" in security else None)


# ------------------------------------------------------------------ the command


def run_up(*args, cwd, env=None):
    return subprocess.run([VLA, "up", "--target", "k8s", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_compose_only_options_and_bad_settings_are_refused_naming_them(tmp_path):
    result = run_up("--policy", "scripted", "--gpus", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--gpus is for compose" in result.stderr
    result = run_up("--policy", "scripted", "--replicas", "policy=many", cwd=tmp_path)
    assert result.returncode == 2 and "SERVICE=N" in result.stderr
    result = run_up("--policy", "scripted", "--replicas", "vllm=2", cwd=tmp_path)
    assert result.returncode == 2 and "replicas.vllm: no such service" in result.stderr
    (tmp_path / "vla.yaml").write_text("deploy:\n  project: Lab_7\n")
    result = run_up("--policy", "scripted", cwd=tmp_path)
    assert result.returncode == 2 and "deploy.project" in result.stderr and "namespace" in result.stderr
    (tmp_path / "vla.yaml").write_text("deploy:\n  kubernetes:\n    service_type: Ingress\n")
    result = run_up("--policy", "scripted", cwd=tmp_path)
    assert result.returncode == 2 and "deploy.kubernetes.service_type" in result.stderr
    result = subprocess.run([VLA, "up", "--policy", "scripted", "--out", "x", "--dry-run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--target k8s" in result.stderr
    assert not (tmp_path / ".vla" / "k8s").exists()


def test_dry_run_prints_and_writes_nothing(tmp_path):
    result = run_up("--policy", "scripted", "--rewarder", "heuristic", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "# ---- policy.yaml" in result.stdout and "# ---- kustomization.yaml" in result.stdout
    assert "valid for Kubernetes 1.30" in result.stderr
    assert not (tmp_path / ".vla").exists()


def test_rewriting_removes_what_is_gone_and_keeps_the_labs_files(tmp_path):
    assert run_up("--policy", "scripted", "--rewarder", "heuristic", cwd=tmp_path).returncode == 0
    out = tmp_path / ".vla" / "k8s"
    (out / "secrets.env").write_text("VLA_API_KEY=abc\n")
    (out / "notes.txt").write_text("mine")
    result = run_up("--policy", "scripted", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (out / "rewarder.yaml").exists() and (out / "policy.yaml").exists()
    assert (out / "secrets.env").read_text() == "VLA_API_KEY=abc\n" and (out / "notes.txt").exists()
    assert "write" not in result.stderr.split("next:")[1].splitlines()[1]  # secrets.env is there: not asked again
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "kustomization.yaml").write_text("resources: [a.yaml]\n")
    result = run_up("--policy", "scripted", "--out", str(foreign), cwd=tmp_path)
    assert result.returncode == 1 and "was not written by vla" in result.stderr


def test_dollar_parentheses_in_specs_survive_kubernetes_expansion():
    spec = PolicySpec(name="echo", description="d", factory="collections:OrderedDict", services=(ServiceSpec(
        name="policy", image="vla-runtime:latest", build_context="images/runtime", command=("sh", "-c", "echo $(date) $HOME"),
        port=8080, environment={"PROMPT": "$(whoami)"}),))
    files = build(compose.Selection({"policy": spec}), lab_config_text=None)
    c = container(files, "policy")
    assert c["args"][-1] == "echo $$(date) $HOME" and env_of(c)["PROMPT"] == "$$(whoami)"
    assert "startupProbe" not in c  # no health check, no probes


# ------------------------------------------------------------------ what issue 13's GPU host adds


def test_set_settings_reach_both_targets_and_host_paths_stay_on_compose(registry, tmp_path):
    sel = selection(registry, policy="lerobot", rewarder="qwen-vl")
    deploy = DeployConfig()
    plan = compose.make_plan(sel, deploy)
    overrides = {"policy": [("path", "/models/act")], "rewarder": [("threshold", "0.7")]}
    doc = compose.compose_dict(plan, deploy, sel, environ={}, overrides=overrides)
    services = resolve(plan, deploy, sel, lab_config=False, overrides=overrides)
    files = kubernetes.manifests(services, deploy)
    for name, setting in (("policy", "path=/models/act"), ("rewarder", "threshold=0.7")):
        assert doc["services"][name]["command"][-2:] == container(files, name)["args"][-2:] == ["--set", setting]
    checkpoint = tmp_path / "pretrained_model"
    checkpoint.mkdir()
    result = run_up("--policy", "lerobot", "--set", f"path={checkpoint}", cwd=tmp_path)
    assert result.returncode == 2 and f"--set names {checkpoint}, a path on this host" in result.stderr


def test_the_api_key_is_optional_only_with_insecure(tmp_path):
    result = run_up("--policy", "scripted", "--insecure", "--out", "k8s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    policy = list(yaml.safe_load_all((tmp_path / "k8s" / "policy.yaml").read_text()))[0]
    env = env_of(policy["spec"]["template"]["spec"]["containers"][0])
    assert env["VLA_API_KEY"]["secretKeyRef"]["optional"] is True
    assert "write" not in result.stderr.split("next:")[1].splitlines()[1]  # no key asked for


def test_upstream_images_on_the_cache_run_as_its_owner_and_are_pinned(registry):
    files = build(selection(registry, rewarder="qwen-vl"))
    vllm = container(files, "vllm")
    assert vllm["securityContext"] == {"allowPrivilegeEscalation": False, "runAsUser": 1000, "runAsGroup": 1000}
    assert env_of(vllm)["HOME"] == "/tmp/vla-home"  # vLLM's own HOME, /root, is not 1000's
    assert compose.image_pinned(vllm["image"]) and vllm["imagePullPolicy"] == "IfNotPresent"
    assert "runAsUser" not in container(files, "rewarder")["securityContext"]  # vla's images are 1000 already
    assert "securityContext" not in pod(files, "rewarder")  # it mounts no cache
