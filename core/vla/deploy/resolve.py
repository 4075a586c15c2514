"""The one step between the plugins' service specs and any deployment target.

`compose.make_plan` names the services and their host ports; ``resolve`` then decides, once
and for every target, what each service gets: its environment, which secrets it may see,
its volumes (the lab's shared model cache or a volume of its own), the lab config, the
services it waits for and its labels. The compose file (compose.py) and the Kubernetes
manifests (kubernetes.py) only put these decisions into their own words, so a spec that
changes changes both, and neither target looks at a plugin by name.

Rules decided here:
- vla's own images (a spec with a build context) get ``VLA_PORT``, the lab config at
  ``LAB_CONFIG_TARGET`` (``VLA_CONFIG``) and the API key; upstream images (vLLM) get only
  what their spec says, plus the hub token.
- The model cache has one owner, uid/gid 1000 (the ``vla`` user of every vla image): an
  upstream image that mounts it runs as ``CACHE_OWNER`` too, with a ``HOME`` it can write.
- ``--set KEY=VALUE`` settings of a role become arguments of its main service, which must run
  `vla serve` or `vla serve-rewarder`; host paths among them are mounts from this host.
- Secrets are named, never valued: a target passes them by reference (compose from the
  shell's environment, Kubernetes from a Secret).
- A spec volume named ``model-cache`` or ``vla-model-cache`` is the lab's model cache
  (``deploy.model_cache_volume``); every other volume belongs to the deployment.
- A component's services depend only on each other, by spec name.
"""

from __future__ import annotations

import attrs

from vla.config import DeployConfig
from vla.deploy.errors import DeployError
from vla.specs import HealthCheck, ServiceSpec

MODEL_CACHE = "model-cache"
# Spec volume names that mean the lab's model cache (the second is DeployConfig's default name).
MODEL_CACHE_KEYS = (MODEL_CACHE, "vla-model-cache")
LABEL_PREFIX = "ai.vla"
API_KEY_ENV = "VLA_API_KEY"
HF_TOKEN_ENV = "HF_TOKEN"
# Where vla's containers find the lab config (its `plugins:` section configures the plugins).
LAB_CONFIG_TARGET = "/etc/vla/vla.yaml"
CACHE_OWNER = "1000:1000"  # the vla user of every vla image
# An upstream image run as 1000 may have a HOME it cannot write (vLLM's is /root).
UPSTREAM_HOME = "/tmp/vla-home"
SERVE_COMMANDS = (["vla", "serve"], ["vla", "serve-rewarder"])


@attrs.frozen
class Mount:
    key: str  # MODEL_CACHE for the lab's cache, else the spec's volume name
    target: str  # path inside the container
    cache: bool  # the lab's shared model cache, named deploy.model_cache_volume


@attrs.frozen
class Dependency:
    service: str  # the deployment's name of the service waited for
    healthcheck: HealthCheck | None  # None: waiting means started, not healthy


@attrs.frozen
class ResolvedService:
    """One service as every target writes it. ``spec`` keeps what needs no decision (image,
    command, port, GPUs, health check, shared memory, resources)."""

    name: str
    role: str
    main: bool  # the service the component's clients talk to
    component: str
    spec: ServiceSpec
    ours: bool  # built from this repository's images (never pulled from a registry)
    command: tuple[str, ...]  # the spec's, with the role's --set settings
    user: str | None  # "uid:gid" to run as, where the image's own user would not do
    environment: dict[str, str]  # literal values, before a target escapes them
    secrets: tuple[str, ...]  # variables it may get from the lab's secrets, by reference only
    mounts: tuple[Mount, ...]
    lab_config: bool  # the lab config is mounted at LAB_CONFIG_TARGET
    host_mounts: tuple[tuple[str, str], ...]  # (path on this host, path inside), read-only
    published_port: int | None  # where the arms reach it; None: internal
    depends_on: tuple[Dependency, ...]
    labels: dict[str, str]


def resolve(
    plan,
    deploy: DeployConfig,
    selection,
    *,
    lab_config: bool,
    overrides: dict[str, list[tuple[str, str]]] | None = None,
    host_mounts: dict[str, list[tuple[str, str]]] | None = None,
) -> list[ResolvedService]:
    """Every planned service, resolved, in the plan's order. ``lab_config``: the lab has a
    vla.yaml to hand to vla's containers. ``overrides`` (role -> [(key, value)]) are the role's
    ``--set`` settings; ``host_mounts`` (role -> [(host path, container path)]) the host paths
    among them (see ``compose.host_path_overrides``)."""
    by_spec_name = {(s.role, s.spec.name): s for s in plan.services}
    out = []
    for s in plan.services:
        spec = s.spec
        ours = spec.build_context is not None
        command = list(spec.command)
        role_sets = (overrides or {}).get(s.role, []) if s.main else []
        if role_sets:
            if command[:2] not in SERVE_COMMANDS:
                raise DeployError(
                    f"{s.role} {s.component.name!r} runs {' '.join(command[:3]) or 'its image'}, not `vla serve`: "
                    f"its settings cannot be given with --set"
                )
            for key, value in role_sets:
                command += ["--set", f"{key}={value}"]
        env = dict(spec.environment)
        if ours and spec.port is not None:
            env.setdefault("VLA_PORT", str(spec.port))
        if ours and lab_config:
            env.setdefault("VLA_CONFIG", LAB_CONFIG_TARGET)
        mounts = tuple(
            Mount(MODEL_CACHE, target, True)
            if name in MODEL_CACHE_KEYS or name == deploy.model_cache_volume
            else Mount(name, target, False)
            for name, target in spec.volumes.items()
        )
        uses_cache = any(m.cache for m in mounts)
        if uses_cache and not ours:
            env.setdefault("HOME", UPSTREAM_HOME)
        secrets = tuple(v for v in ((API_KEY_ENV,) if ours else ()) + (HF_TOKEN_ENV,) if v not in env)
        deps = []
        for dep in spec.depends_on:
            target = by_spec_name.get((s.role, dep))  # a component depends on its own services
            if target is None:
                raise DeployError(
                    f"service {spec.name!r} of {s.role} {s.component.name!r} depends on {dep!r}, "
                    f"which is not among its services ({', '.join(x.name for x in s.component.services)})"
                )
            deps.append(Dependency(target.compose_name, target.spec.healthcheck))
        dist, version = selection.distributions.get(s.role, ("?", "?"))
        out.append(ResolvedService(
            name=s.compose_name,
            role=s.role,
            main=s.main,
            component=s.component.name,
            spec=spec,
            ours=ours,
            command=tuple(command),
            user=CACHE_OWNER if uses_cache and not ours else None,
            environment=env,
            secrets=secrets,
            mounts=mounts,
            lab_config=ours and lab_config,
            host_mounts=tuple((host_mounts or {}).get(s.role, [])) if s.main else (),
            published_port=plan.host_ports.get(s.compose_name),
            depends_on=tuple(deps),
            labels={
                f"{LABEL_PREFIX}.role": s.role,
                f"{LABEL_PREFIX}.component": s.component.name,
                f"{LABEL_PREFIX}.service": spec.name,
                f"{LABEL_PREFIX}.plugin.name": dist,
                f"{LABEL_PREFIX}.plugin.version": version,
            },
        ))
    return out
