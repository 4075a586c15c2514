"""Turning the chosen plugins' service specs and the lab's `deploy:` section into a compose file.

Naming: the service a component's clients talk to (its first ``ServiceSpec``) becomes the
compose service named after its role (``policy``, ``rewarder``, ``trainer``), so `vla logs
policy` works whatever the plugin is called; the spec's own name stays reachable as a network
alias. A component's other services (backends such as vLLM) keep their spec names, prefixed
with the role only if two components use the same name.

Volumes: a spec volume named ``model-cache`` or ``vla-model-cache`` is the lab's shared model
cache, the named volume ``deploy.model_cache_volume``; every other volume is private to the
project (compose prefixes it with the project name). The cache has one owner, uid/gid 1000 (the
``vla`` user of every vla image): a one-shot ``model-cache-init`` service gives the volume to
it before anything mounts it, and upstream images that mount it (vLLM) run as 1000:1000 too,
so no image leaves root-owned files another cannot write.

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
from vla.specs import ComponentSpec, HealthCheck, ServiceSpec

ROLES = ("policy", "rewarder", "trainer")
ROLE_KINDS = {"policy": "policies", "rewarder": "rewarders", "trainer": "trainers"}  # registry kinds
MODEL_CACHE = "model-cache"
# Spec volume names that mean the lab's model cache (the second is DeployConfig's default name).
MODEL_CACHE_KEYS = (MODEL_CACHE, "vla-model-cache")
LABEL_PREFIX = "ai.vla"
# Environment passed through from the shell that runs `vla up`, never written into the file.
PASSTHROUGH_ENV = ("VLA_API_KEY", "HF_TOKEN")
# Where vla's containers find the lab config (its `plugins:` section configures the plugins).
LAB_CONFIG_TARGET = "/etc/vla/vla.yaml"
CACHE_OWNER = "1000:1000"  # the vla user of every vla image
CACHE_INIT = "model-cache-init"
CACHE_INIT_MOUNT = "/cache"
# An upstream image run as 1000 may have a HOME it cannot write (vLLM's is /root).
UPSTREAM_HOME = "/tmp/vla-home"
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

    ``overrides`` (role -> [(key, value)]) become ``--set KEY=VALUE`` arguments of the role's
    main service, which must run `vla serve` or `vla serve-rewarder`; ``host_mounts`` (role ->
    [(host path, container path)]) are bind-mounted into it read-only (see ``host_path_overrides``).
    """
    environ = os.environ if environ is None else environ
    gpus = deploy.gpus if gpus is None else gpus
    by_spec_name = {(s.role, s.spec.name): s.compose_name for s in plan.services}
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    gpu_offset = 0
    for s in plan.services:
        spec = s.spec
        dist, version = selection.distributions.get(s.role, ("?", "?"))
        entry: dict[str, Any] = {"image": spec.image}
        command = list(spec.command)
        role_sets = (overrides or {}).get(s.role, []) if s.main else []
        if role_sets:
            if command[:2] not in (["vla", "serve"], ["vla", "serve-rewarder"]):
                raise DeployError(
                    f"{s.role} {s.component.name!r} runs {' '.join(command[:3]) or 'its image'}, not `vla serve`: "
                    f"its settings cannot be given with --set"
                )
            for key, value in role_sets:
                command += ["--set", f"{key}={value}"]
        if command:
            entry["command"] = [_escape(c) for c in command]
        # vla's images are built here and upstream ones fetched by `vla up` before compose runs
        entry["pull_policy"] = "never"
        # vla's own images (built here) get the port for their health check and the lab config;
        # upstream images (vLLM) get only what their spec says.
        ours = spec.build_context is not None
        env = {k: _escape(v) for k, v in spec.environment.items()}
        if ours and spec.port is not None:
            env.setdefault("VLA_PORT", str(spec.port))
        for var in PASSTHROUGH_ENV:
            if environ.get(var) and var not in env and (ours or var == "HF_TOKEN"):
                env[var] = "${" + var + "}"  # resolved by compose at `up`, not stored here
        if ours and lab_config_path:
            env.setdefault("VLA_CONFIG", LAB_CONFIG_TARGET)
        uses_cache = any(v in MODEL_CACHE_KEYS or v == deploy.model_cache_volume for v in spec.volumes)
        if uses_cache and not ours and "HOME" not in env:
            env["HOME"] = UPSTREAM_HOME
        if env:
            entry["environment"] = env
        if s.compose_name in plan.host_ports:
            entry["ports"] = [
                {"target": spec.port, "published": str(plan.host_ports[s.compose_name]), "host_ip": bind, "protocol": "tcp"}
            ]
        mounts: list[Any] = []
        for vol_name, target in spec.volumes.items():
            if vol_name in MODEL_CACHE_KEYS or vol_name == deploy.model_cache_volume:
                volumes[MODEL_CACHE] = {"name": deploy.model_cache_volume}
                mounts.append(f"{MODEL_CACHE}:{target}")
            else:
                volumes[vol_name] = {}
                mounts.append(f"{vol_name}:{target}")
        if uses_cache and not ours:
            entry["user"] = CACHE_OWNER
        if ours and lab_config_path:
            mounts.append({"type": "bind", "source": lab_config_path, "target": LAB_CONFIG_TARGET, "read_only": True})
        for source, target in (host_mounts or {}).get(s.role, []) if s.main else []:
            mounts.append({"type": "bind", "source": source, "target": target, "read_only": True})
        if mounts:
            entry["volumes"] = mounts
        if spec.healthcheck is not None:
            entry["healthcheck"] = healthcheck_entry(spec.healthcheck)
        deps: dict[str, Any] = {}
        if uses_cache:
            deps[CACHE_INIT] = {"condition": "service_completed_successfully"}
        if spec.depends_on:
            for dep in spec.depends_on:
                target = by_spec_name.get((s.role, dep))  # a component depends on its own services
                if target is None:
                    raise DeployError(
                        f"service {spec.name!r} of {s.role} {s.component.name!r} depends on {dep!r}, "
                        f"which is not among its services ({', '.join(x.name for x in s.component.services)})"
                    )
                has_check = plan.service(target).spec.healthcheck is not None
                deps[target] = {"condition": "service_healthy" if has_check else "service_started"}
        if deps:
            entry["depends_on"] = deps
        entry["restart"] = "unless-stopped"
        if spec.ipc_host:
            entry["ipc"] = "host"
        if spec.gpus > 0:
            entry["deploy"] = {"resources": {"reservations": {"devices": gpu_devices(spec.gpus, gpus, gpu_offset)}}}
            gpu_offset += spec.gpus
        entry["labels"] = {
            f"{LABEL_PREFIX}.role": s.role,
            f"{LABEL_PREFIX}.component": s.component.name,
            f"{LABEL_PREFIX}.service": spec.name,
            f"{LABEL_PREFIX}.plugin.name": dist,
            f"{LABEL_PREFIX}.plugin.version": version,
        }
        if s.main and spec.name != s.compose_name:
            entry["networks"] = {"default": {"aliases": [spec.name]}}
        services[s.compose_name] = entry
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
