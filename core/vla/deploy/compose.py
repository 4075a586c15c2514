"""Turning the chosen plugins' service specs and the lab's `deploy:` section into a compose file.

Naming: the service a component's clients talk to (its first ``ServiceSpec``) becomes the
compose service named after its role (``policy``, ``rewarder``, ``trainer``), so `vla logs
policy` works whatever the plugin is called; the spec's own name stays reachable as a network
alias. A component's other services (backends such as vLLM) keep their spec names, prefixed
with the role only if two components use the same name.

What each service gets (environment, secrets, volumes, the lab config, the user it runs as,
dependencies, labels, its `--set` settings) is decided once in resolve.py, for compose and
Kubernetes alike; this module writes it in compose's words. The lab's model cache is the named
volume ``deploy.model_cache_volume``; every other volume is private to the project (compose
prefixes it with the project name). The cache has one owner, uid/gid 1000: a one-shot
``model-cache-init`` service gives the volume to it before anything mounts it. Secrets
(``VLA_API_KEY``, ``HF_TOKEN``) are passed from the shell that runs `vla up`, never written.

Images: compose never pulls (``pull_policy: never`` on every service); `vla up` builds the
missing vla images and pulls the missing upstream ones itself, first. Upstream images must be
pinned by version: a tag other than ``latest``, or a digest.

This module builds plain dicts and knows nothing about docker itself, so it is unit-tested
without an engine.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from vla.config import DeployConfig
from vla.deploy.errors import DeployError
from vla.deploy.resolve import CACHE_OWNER, LAB_CONFIG_TARGET, LABEL_PREFIX, MODEL_CACHE, MODEL_CACHE_KEYS, resolve
from vla.specs import ComponentSpec, HealthCheck, ServiceSpec

ROLES = ("policy", "rewarder", "trainer")
ROLE_KINDS = {"policy": "policies", "rewarder": "rewarders", "trainer": "trainers"}  # registry kinds
CACHE_INIT = "model-cache-init"
CACHE_INIT_MOUNT = "/cache"
# Host files that `--set KEY=PATH` names are mounted read-only under here in the container.
HOST_MOUNT_ROOT = "/mnt/vla"


def image_pinned(image: str) -> bool:
    """Whether an image reference names a fixed version: a digest, or a tag other than latest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


@attrs.frozen
class Selection:
    """The components a deployment runs, by role, with the distribution that registered each."""

    components: dict[str, ComponentSpec]
    distributions: dict[str, tuple[str, str]] = attrs.field(factory=dict)  # role -> (dist, version)

    def __attrs_post_init__(self):
        unknown = set(self.components) - set(ROLES)
        if unknown:
            raise DeployError(f"unknown role(s) {sorted(unknown)}; expected {ROLES}")


@attrs.frozen
class PlannedService:
    """One compose service and where it came from."""

    compose_name: str
    role: str
    component: ComponentSpec
    spec: ServiceSpec
    main: bool  # the service the component's clients talk to


@attrs.frozen
class Plan:
    """What `vla up` will start: compose services in start order plus published host ports."""

    project: str
    services: list[PlannedService]
    host_ports: dict[str, int]  # compose service -> host port

    @property
    def gpu_services(self) -> list[PlannedService]:
        return [s for s in self.services if s.spec.gpus > 0]

    def service(self, compose_name: str) -> PlannedService:
        for s in self.services:
            if s.compose_name == compose_name:
                return s
        raise KeyError(compose_name)


def make_plan(selection: Selection, deploy: DeployConfig) -> Plan:
    """Name every service, resolve dependencies and host ports; raise DeployError on conflicts."""
    if not selection.components:
        raise DeployError("nothing to deploy: name a policy (--policy), a rewarder (--rewarder) or a trainer")
    planned: list[PlannedService] = []
    taken: dict[str, str] = {}  # compose name -> role that took it
    for role in ROLES:
        component = selection.components.get(role)
        if component is None:
            continue
        for spec in component.services:
            if spec.build_context is None and not image_pinned(spec.image):
                raise DeployError(
                    f"service {spec.name!r} of {role} {component.name!r} runs image {spec.image!r}, which is not "
                    f"pinned: name a version (e.g. vllm/vllm-openai:v0.32.0) or a digest in its ServiceSpec"
                )
        if not component.services:
            raise DeployError(
                f"{role} {component.name!r} declares no service (its spec has no ServiceSpec), "
                f"so it cannot run on the GPU host; run it in-process instead"
            )
        for index, spec in enumerate(component.services):
            name = role if index == 0 else spec.name
            if index > 0 and (name in taken or name in ROLES):
                name = f"{role}-{spec.name}"
            if name in taken:
                raise DeployError(f"service name {name!r} of {role} {component.name!r} is already used by the {taken[name]}")
            taken[name] = role
            planned.append(PlannedService(name, role, component, spec, main=index == 0))

    role_ports = {"policy": deploy.policy_port, "rewarder": deploy.rewarder_port}
    host_ports: dict[str, int] = {}
    for s in planned:
        if s.spec.port is None or not s.spec.public:
            continue
        port = role_ports.get(s.role) if s.main else None
        host_ports[s.compose_name] = port if port is not None else s.spec.port
    seen: dict[int, str] = {}
    for name, port in host_ports.items():
        if port in seen:
            raise DeployError(f"host port {port} is wanted by both {seen[port]!r} and {name!r}; set deploy.policy_port / deploy.rewarder_port")
        seen[port] = name
    return Plan(project=deploy.project, services=planned, host_ports=host_ports)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _escape(value: str) -> str:
    # compose interpolates ${...}; a spec's literal dollar signs must survive
    return value.replace("$", "$$")


def healthcheck_entry(check: HealthCheck) -> dict[str, Any]:
    return {
        "test": ["CMD", *check.command],
        "interval": _duration(check.interval_s),
        "timeout": _duration(check.timeout_s),
        "retries": check.retries,
        "start_period": _duration(check.start_period_s),
    }


def gpu_devices(count: int, gpus: str, offset: int) -> list[dict[str, Any]]:
    """The device reservation for a service needing ``count`` GPUs.

    ``gpus`` is "all" (any of the host's GPUs: reserve ``count``) or comma-separated device
    ids, which are handed out to the GPU services in order (wrapping round, so services may
    share a device, as vLLM's --gpu-memory-utilization allows).
    """
    spec = gpus.strip()
    if spec in ("", "all"):
        return [{"driver": "nvidia", "count": count, "capabilities": ["gpu"]}]
    ids = [i.strip() for i in spec.split(",") if i.strip()]
    if not ids:
        raise DeployError(f"--gpus {gpus!r}: expected 'all' or comma-separated device ids like '0,1'")
    chosen = [ids[(offset + k) % len(ids)] for k in range(count)]
    return [{"driver": "nvidia", "device_ids": sorted(set(chosen), key=chosen.index), "capabilities": ["gpu"]}]


def compose_dict(
    plan: Plan,
    deploy: DeployConfig,
    selection: Selection,
    *,
    gpus: str | None = None,
    bind: str = "0.0.0.0",
    lab_config_path: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, list[tuple[str, str]]] | None = None,
    host_mounts: dict[str, list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """The compose project as a dict, ready for ``yaml.safe_dump``.

    ``overrides`` and ``host_mounts``: the roles' ``--set`` settings and the host paths among
    them (see ``resolve`` and ``host_path_overrides``); the paths are bind-mounted read-only.
    """
    environ = os.environ if environ is None else environ
    gpus = deploy.gpus if gpus is None else gpus
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    gpu_offset = 0
    for r in resolve(plan, deploy, selection, lab_config=bool(lab_config_path), overrides=overrides, host_mounts=host_mounts):
        spec = r.spec
        entry: dict[str, Any] = {"image": spec.image}
        if r.command:
            entry["command"] = [_escape(c) for c in r.command]
        # vla's images are built here and upstream ones fetched by `vla up` before compose runs
        entry["pull_policy"] = "never"
        env = {k: _escape(v) for k, v in r.environment.items()}
        for var in r.secrets:
            if environ.get(var):
                env[var] = "${" + var + "}"  # resolved by compose at `up`, not stored here
        if env:
            entry["environment"] = env
        if r.published_port is not None:
            entry["ports"] = [
                {"target": spec.port, "published": str(r.published_port), "host_ip": bind, "protocol": "tcp"}
            ]
        mounts: list[Any] = []
        for m in r.mounts:
            volumes[m.key] = {"name": deploy.model_cache_volume} if m.cache else {}
            mounts.append(f"{m.key}:{m.target}")
        if r.user is not None:
            entry["user"] = r.user
        if r.lab_config:
            mounts.append({"type": "bind", "source": lab_config_path, "target": LAB_CONFIG_TARGET, "read_only": True})
        for source, target in r.host_mounts:
            mounts.append({"type": "bind", "source": source, "target": target, "read_only": True})
        if mounts:
            entry["volumes"] = mounts
        if spec.healthcheck is not None:
            entry["healthcheck"] = healthcheck_entry(spec.healthcheck)
        deps: dict[str, Any] = {}
        if any(m.cache for m in r.mounts):
            deps[CACHE_INIT] = {"condition": "service_completed_successfully"}
        for d in r.depends_on:
            deps[d.service] = {"condition": "service_healthy" if d.healthcheck is not None else "service_started"}
        if deps:
            entry["depends_on"] = deps
        entry["restart"] = "unless-stopped"
        if spec.ipc_host:
            entry["ipc"] = "host"
        if spec.gpus > 0:
            entry["deploy"] = {"resources": {"reservations": {"devices": gpu_devices(spec.gpus, gpus, gpu_offset)}}}
            gpu_offset += spec.gpus
        entry["labels"] = dict(r.labels)
        if r.main and spec.name != r.name:
            entry["networks"] = {"default": {"aliases": [spec.name]}}
        services[r.name] = entry
    if MODEL_CACHE in volumes:
        services = {CACHE_INIT: cache_init_entry(plan, deploy), **services}
    doc: dict[str, Any] = {"name": plan.project, "services": services}
    if volumes:
        doc["volumes"] = volumes
    return doc


def cache_init_entry(plan: Plan, deploy: DeployConfig) -> dict[str, Any]:
    """The one-shot service that gives the model cache volume to uid 1000 before anything mounts it.

    It runs one of the project's own images as root (any image here has sh, chown and find):
    the volume's top folder is given to 1000, and anything below it that an earlier, root-run
    deployment left behind is handed over too."""
    cache_users = [s for s in plan.services if any(v in MODEL_CACHE_KEYS or v == deploy.model_cache_volume for v in s.spec.volumes)]
    ours = [s for s in cache_users if s.spec.build_context is not None]
    image = (ours or cache_users)[0].spec.image
    script = (
        f"chown {CACHE_OWNER} {CACHE_INIT_MOUNT} && "
        f"find {CACHE_INIT_MOUNT} -mindepth 1 -maxdepth 3 ! -user 1000 -exec chown -R {CACHE_OWNER} {{}} +"
    )
    return {
        "image": image,
        "pull_policy": "never",
        "user": "0:0",
        "entrypoint": ["sh", "-c"],
        "command": [_escape(script)],
        "volumes": [f"{MODEL_CACHE}:{CACHE_INIT_MOUNT}"],
        "restart": "no",
        "labels": {f"{LABEL_PREFIX}.role": "init", f"{LABEL_PREFIX}.service": CACHE_INIT},
    }


def gpu_sharing_warnings(plan: Plan, gpus: str) -> list[str]:
    """Warnings for GPUs whose services ask for more than all of their memory together.

    With ``gpus: all`` Docker hands each service the first GPUs it asks for, so the services
    share GPU 0 (and 1, ...); with device ids they share a device when the ids wrap round."""
    spec = gpus.strip()
    ids = None if spec in ("", "all") else [i.strip() for i in spec.split(",") if i.strip()]
    use: dict[str, list[tuple[str, float | None]]] = {}
    offset = 0
    for s in plan.gpu_services:
        if ids:
            devices = {ids[(offset + k) % len(ids)] for k in range(s.spec.gpus)}
        else:
            devices = {str(k) for k in range(s.spec.gpus)}
        offset += s.spec.gpus
        for device in devices:
            use.setdefault(device, []).append((s.compose_name, s.spec.gpu_memory_fraction))
    warnings = []
    fix = "give each its own GPU (deploy.gpus / --gpus '0,1') or lower the shares"
    for device, users in sorted(use.items()):
        if len(users) < 2:
            continue
        known = [(name, f) for name, f in users if f is not None]
        unknown = [name for name, f in users if f is None]
        total = sum(f for _, f in known)
        parts = ", ".join(f"{name} {f:.2f}" for name, f in known)
        if total > 1.0:
            warnings.append(f"GPU {device} is shared by {', '.join(n for n, _ in users)}, whose memory shares add up "
                            f"to {total:.2f} of it ({parts}); {fix}")
        elif unknown and total >= 0.5:
            # a server that allocates as it goes (torch) gets what the preallocating ones leave
            warnings.append(f"GPU {device} is shared by {', '.join(n for n, _ in users)}: {parts} leave(s) "
                            f"{1 - total:.2f} of its memory to {', '.join(unknown)}, which declare(s) no share; {fix}")
    return warnings


def host_path_overrides(pairs: list[tuple[str, str]], base) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``--set KEY=VALUE`` pairs for a service, with values that are host paths made container paths.

    A value naming an existing file or folder on this host (absolute, or relative to ``base``)
    is mounted read-only at ``/mnt/vla/<key>`` (a file keeps its name inside that folder) and
    the setting becomes that path: this is how a trained checkpoint reaches the GPU host's
    container, e.g. ``vla up --policy lerobot --set path=outputs/act/pretrained_model``.
    `vla up` prints each mount it makes. Returns (settings, mounts)."""
    from pathlib import Path

    settings, mounts = [], []
    for key, value in pairs:
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = Path(base) / candidate
        if value and candidate.exists():
            source = candidate.resolve()
            folder = f"{HOST_MOUNT_ROOT}/{key.replace('.', '_')}"
            if source.is_dir():
                mounts.append((str(source), folder))
                settings.append((key, folder))
            else:
                target = f"{folder}/{source.name}"
                mounts.append((str(source), target))
                settings.append((key, target))
        else:
            settings.append((key, value))
    return settings, mounts


def service_urls(plan: Plan, host: str) -> dict[str, str]:
    """How clients reach each published service (WebSocket for the policy, HTTP otherwise)."""
    urls = {}
    for s in plan.services:
        port = plan.host_ports.get(s.compose_name)
        if port is None:
            continue
        scheme = "ws" if s.role == "policy" and s.main else "http"
        urls[s.compose_name] = f"{scheme}://{host}:{port}"
    return urls
