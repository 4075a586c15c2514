"""What a plugin registers: small attrs specs that describe a component without importing it.

A spec names its factory as an import path ("package.module:attribute") so that listing
plugins never imports torch; the factory is resolved only when the component is built.
Anything that runs on the GPU host also carries one or more ``ServiceSpec`` entries, which
`vla up` turns into compose services. Service specs hold no compose-only ideas, so the same
spec can become a Kubernetes object later (see design.md, "Beyond one host").
"""

from __future__ import annotations

import importlib
import re
from typing import Any, ClassVar

import attrs

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
IMPORT_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class SpecError(ValueError):
    """A spec field holds a value that cannot work. The message names the field."""


def _name(_inst, attribute, value):
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise SpecError(
            f"field {attribute.name!r}: expected a lowercase name matching {NAME_RE.pattern}, got {value!r}"
        )


def _one_line(_inst, attribute, value):
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise SpecError(f"field {attribute.name!r}: expected a non-empty one-line string, got {value!r}")


def _import_path(_inst, attribute, value):
    if not isinstance(value, str) or not IMPORT_PATH_RE.match(value):
        raise SpecError(
            f"field {attribute.name!r}: expected an import path 'package.module:attribute', got {value!r}"
        )


def _config_class(_inst, attribute, value):
    if value is not None and not (isinstance(value, type) and attrs.has(value)):
        raise SpecError(f"field {attribute.name!r}: expected an attrs class or None, got {value!r}")


def _port(_inst, attribute, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536):
        raise SpecError(f"field {attribute.name!r}: expected a TCP port 1-65535 or None, got {value!r}")


def _non_negative_int(_inst, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpecError(f"field {attribute.name!r}: expected a whole number >= 0, got {value!r}")


def _str_tuple(_inst, attribute, value):
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"field {attribute.name!r}: expected a list of strings, got {value!r}")


def _str_dict(_inst, attribute, value):
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SpecError(f"field {attribute.name!r}: expected a mapping of strings to strings, got {value!r}")


def _positive_number(_inst, attribute, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"field {attribute.name!r}: expected a number > 0, got {value!r}")


def _optional_url_path(_inst, attribute, value):
    if value is not None and (not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value)):
        raise SpecError(f"field {attribute.name!r}: expected a URL path starting with '/', got {value!r}")


def _tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _dict(value):
    return dict(value) if isinstance(value, dict) else value


def resolve_import_path(path: str) -> Any:
    """Import ``package.module:attribute`` and return the attribute."""
    module_name, _, attr_path = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


@attrs.frozen
class HealthCheck:
    """A health check run inside the container. Images may lack curl, so it is a command."""

    command: tuple[str, ...] = attrs.field(converter=_tuple, validator=_str_tuple)
    interval_s: float = attrs.field(default=10.0, validator=_positive_number)
    timeout_s: float = attrs.field(default=5.0, validator=_positive_number)
    retries: int = attrs.field(default=3, validator=_non_negative_int)
    # Model loading can take minutes; a short start period marks a loading server unhealthy.
    start_period_s: float = attrs.field(default=120.0, validator=_positive_number)
    # Set by ``http()``: the port and path the command asks, so that a Kubernetes probe can be
    # an httpGet built from the same spec.
    http_port: int | None = attrs.field(default=None, validator=_port)
    http_path: str | None = attrs.field(default=None, validator=_optional_url_path)

    @classmethod
    def http(cls, port: int, path: str = "/healthz", **kwargs) -> HealthCheck:
        """A check that passes when ``GET http://127.0.0.1:PORT/PATH`` answers 200, using only Python."""
        code = (
            "import sys,urllib.request;"
            f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=4).status==200 else 1)"
        )
        return cls(command=("python3", "-c", code), http_port=port, http_path=path, **kwargs)

    @property
    def wait_s(self) -> float:
        """How long a service may take to become healthy: its start period, then its retries."""
        return self.start_period_s + (self.retries + 1) * (self.interval_s + self.timeout_s)


@attrs.frozen
class Resources:
    """What one copy of a service needs from a machine besides GPUs, at its peak (model loading
    included). Kubernetes requests both and caps memory at ``memory_gib``; compose, on the one
    host it owns, uses neither."""

    cpu: float = attrs.field(default=1.0, validator=_positive_number)  # cores
    memory_gib: float = attrs.field(default=2.0, validator=_positive_number)


@attrs.frozen
class ServiceSpec:
    """One long-running service on the GPU host (a policy server, a rewarder, a VLM backend)."""

    name: str = attrs.field(validator=_name)
    image: str = attrs.field(validator=_one_line)
    command: tuple[str, ...] = attrs.field(default=(), converter=_tuple, validator=_str_tuple)
    # Folder with the Dockerfile, relative to the repository or absolute; None for upstream images.
    build_context: str | None = None
    port: int | None = attrs.field(default=None, validator=_port)
    gpus: int = attrs.field(default=0, validator=_non_negative_int)
    healthcheck: HealthCheck | None = None
    # named volume -> mount path inside the container
    volumes: dict[str, str] = attrs.field(factory=dict, converter=_dict, validator=_str_dict)
    environment: dict[str, str] = attrs.field(factory=dict, converter=_dict, validator=_str_dict)
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_tuple, validator=_str_tuple)
    # Shared memory with the host, which vLLM's and torch's worker processes need.
    ipc_host: bool = False
    # Whether the service is reachable from the arms (policy, rewarder) or internal (vLLM).
    public: bool = True
    resources: Resources = attrs.field(factory=Resources, validator=attrs.validators.instance_of(Resources))
    # The share of one GPU's memory the service takes (vLLM's --gpu-memory-utilization, JAX's
    # XLA_PYTHON_CLIENT_MEM_FRACTION); None when it allocates as it goes. `vla up` warns when
    # services that share a GPU add up to more than all of it.
    gpu_memory_fraction: float | None = attrs.field(default=None)

    @gpu_memory_fraction.validator
    def _check_fraction(self, attribute, value):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1):
            raise SpecError(f"field {attribute.name!r}: expected a share of one GPU in (0, 1] or None, got {value!r}")


SERVICE_FIELDS = frozenset(a.name for a in attrs.fields(ServiceSpec)) - {"name"}


def _service_changes(_inst, attribute, value):
    if not isinstance(value, dict) or not value:
        raise SpecError(f"field {attribute.name!r}: expected a mapping of service name -> changed fields, got {value!r}")
    for service, changes in value.items():
        if not isinstance(service, str) or not isinstance(changes, dict) or not changes:
            raise SpecError(f"field {attribute.name!r}: service {service!r}: expected a mapping of field -> value")
        unknown = sorted(set(changes) - SERVICE_FIELDS)
        if unknown:
            raise SpecError(f"field {attribute.name!r}: service {service!r}: {unknown} are not ServiceSpec fields "
                            f"(known: {', '.join(sorted(SERVICE_FIELDS))})")


@attrs.frozen
class ServiceProfile:
    """Another way to run a component's services, chosen per lab with ``plugins.<name>.profile``
    in vla.yaml (e.g. ``cpu``: vLLM's CPU build and a test model, on a host without a GPU).

    ``services`` maps a service's spec name to the ServiceSpec fields that differ; the rest of
    the spec, and the other services, stay as they are. Applying a profile builds new specs, so
    every field is checked again, and every deployment target (compose, Kubernetes) sees only
    the changed specs."""

    name: str = attrs.field(validator=_name)
    description: str = attrs.field(validator=_one_line)
    services: dict[str, dict[str, Any]] = attrs.field(converter=_dict, validator=_service_changes)

    def apply(self, services: tuple[ServiceSpec, ...]) -> tuple[ServiceSpec, ...]:
        names = {s.name for s in services}
        missing = sorted(set(self.services) - names)
        if missing:
            raise SpecError(f"profile {self.name!r} changes service(s) {missing}, which the component does not have "
                            f"({', '.join(sorted(names))})")
        return tuple(attrs.evolve(s, **self.services[s.name]) if s.name in self.services else s for s in services)


@attrs.frozen
class ComponentSpec:
    """Fields every registered component shares."""

    kind: ClassVar[str] = "component"

    name: str = attrs.field(validator=_name)
    description: str = attrs.field(validator=_one_line)
    factory: str = attrs.field(validator=_import_path)
    config: type | None = attrs.field(default=None, validator=_config_class)
    services: tuple[ServiceSpec, ...] = attrs.field(default=(), converter=_tuple)
    # Other ways to run the services (see ServiceProfile); without a profile the services run as above.
    profiles: tuple[ServiceProfile, ...] = attrs.field(default=(), converter=_tuple)

    @profiles.validator
    def _check_profiles(self, attribute, value):
        if not isinstance(value, tuple) or not all(isinstance(p, ServiceProfile) for p in value):
            raise SpecError(f"field {attribute.name!r}: expected a list of ServiceProfile, got {value!r}")
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise SpecError(f"field {attribute.name!r}: profile names repeat: {names}")
        for profile in value:
            profile.apply(self.services)  # every change must make a valid spec

    def with_profile(self, name: str | None):
        """This component with the named profile's services (itself for None); SpecError for an unknown name."""
        if name is None:
            return self
        for profile in self.profiles:
            if profile.name == name:
                return attrs.evolve(self, services=profile.apply(self.services))
        known = ", ".join(p.name for p in self.profiles) or "none"
        raise SpecError(f"{self.name!r} has no service profile {name!r} (profiles: {known})")

    @services.validator
    def _check_services(self, attribute, value):
        if not isinstance(value, tuple) or not all(isinstance(s, ServiceSpec) for s in value):
            raise SpecError(f"field {attribute.name!r}: expected a list of ServiceSpec, got {value!r}")
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise SpecError(f"field {attribute.name!r}: service names repeat: {names}")

    @property
    def service(self) -> ServiceSpec | None:
        """The service the clients talk to; any others are its backends."""
        return self.services[0] if self.services else None

    def load_factory(self):
        return resolve_import_path(self.factory)

    def default_config(self):
        return self.config() if self.config is not None else None

    def build(self, config=None, **kwargs):
        """Import the factory and call it with the config (its defaults when None)."""
        if config is None:
            config = self.default_config()
        factory = self.load_factory()
        return factory(config, **kwargs) if self.config is not None else factory(**kwargs)


def _optional_import_path(inst, attribute, value):
    if value is not None:
        _import_path(inst, attribute, value)


@attrs.frozen
class RobotSpec(ComponentSpec):
    kind: ClassVar[str] = "robots"

    # The arm's joints, limits, gripper and kinematics: a ``vla.description.RobotDescription``
    # named by import path, imported only when something asks (see load_description).
    robot_description: str | None = attrs.field(default=None, validator=_optional_import_path)
    # ``(arm_id: str) -> str``: the YAML of an arm file's ``config:`` mapping, with comments,
    # for `vla init --robot NAME`. Without it `vla init` writes the config class's defaults.
    starter_config: str | None = attrs.field(default=None, validator=_optional_import_path)

    def load_description(self):
        from vla.description import NoDescription, RobotDescription

        if self.robot_description is None:
            raise NoDescription(f"robot {self.name!r} declares no robot description (RobotSpec.robot_description)")
        description = resolve_import_path(self.robot_description)
        if not isinstance(description, RobotDescription):
            raise SpecError(
                f"robot {self.name!r}: robot_description {self.robot_description!r} is a "
                f"{type(description).__name__}, not a vla.description.RobotDescription"
            )
        return description

    def starter_arm_config(self, arm_id: str) -> str:
        """The ``config:`` mapping of a new arm file for this robot, as YAML text."""
        if self.starter_config is not None:
            return str(resolve_import_path(self.starter_config)(arm_id))
        if self.config is None:
            return "{}\n"
        import yaml

        from vla.config import unstructure

        return yaml.safe_dump(unstructure(self.config()), sort_keys=False)


@attrs.frozen
class PolicySpec(ComponentSpec):
    kind: ClassVar[str] = "policies"

    # For servers that do not speak vla's keys (openpi's serve_policy.py): a class built with
    # the plugin's config, with request(observation) -> message and actions(reply) -> (H, A).
    # `vla run --adapter NAME` applies it on the arm's side.
    client_adapter: str | None = attrs.field(default=None, validator=_optional_import_path)
    # Reads this plugin's checkpoints for `vla doctor --checkpoint`: an import path to
    # (path, lab_plugin_config) -> vla.matching.checkpoint.CheckpointInfo, or None when the
    # folder is not one of this plugin's.
    checkpoint_info: str | None = attrs.field(default=None, validator=_optional_import_path)

    def build_client_adapter(self, config=None):
        if self.client_adapter is None:
            raise SpecError(f"policy {self.name!r} declares no client adapter")
        adapter_class = resolve_import_path(self.client_adapter)
        return adapter_class(config if config is not None else self.default_config())


@attrs.frozen
class RewarderSpec(ComponentSpec):
    kind: ClassVar[str] = "rewarders"


TRAINER_MODES = ("offline", "online")


@attrs.frozen
class TrainerSpec(ComponentSpec):
    kind: ClassVar[str] = "trainers"

    # offline: `vla train`, a dataset in and a checkpoint out (vla.training.trainer.Trainer).
    # online: `vla learn`, candidates out and rewarder scores in (vla.learning.contract.OnlineTrainer).
    mode: str = attrs.field(default="offline")

    @mode.validator
    def _check_mode(self, attribute, value):
        if value not in TRAINER_MODES:
            raise SpecError(f"field {attribute.name!r}: expected one of {', '.join(TRAINER_MODES)}, got {value!r}")


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    cls.kind: cls for cls in (RobotSpec, PolicySpec, RewarderSpec, TrainerSpec)
}
KINDS = tuple(SPEC_TYPES)
SINGULAR = {"robots": "robot", "policies": "policy", "rewarders": "rewarder", "trainers": "trainer"}
