"""The lab configuration: `vla.yaml` loaded into attrs classes, with environment overrides.

Precedence, lowest first: class defaults, the YAML file, a `.env` file beside it (or in the
working directory), the process environment. Every value remembers where it came from, so
`vla config show` can say why a setting has the value it has.

One cattrs converter (``structure``) turns plain data into attrs classes for every file vla
reads: the lab config, arm files, safety files, plugin configs and rule files. It is strict:
an unknown key, a wrong type, or a value a class's validator refuses is a ``ConfigError``
naming the file, the dotted key and what is allowed, and the CLI turns it into exit code 2.
Values are checked where they are loaded, so `vla config show`, `vla doctor` and every
command fail the same way on the same file.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

CONFIG_FILENAME = "vla.yaml"
# A key of every `plugins.<name>` section that vla reads itself: the service profile `vla up` runs.
PROFILE_KEY = "profile"


class ConfigError(ValueError):
    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


# ------------------------------------------------------------------- validators
# Each raises ValueError with what is allowed; the converter adds the file and the key.


def _positive(_inst, attribute, value):
    if value is not None and not value > 0:
        raise ValueError(f"expected a number > 0, got {value!r}")


def _at_least_one(_inst, attribute, value):
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")


def _share(_inst, attribute, value):
    if not 0 < value <= 1:
        raise ValueError(f"expected a number in (0, 1] (a share of a chunk), got {value!r}")


def _port(_inst, attribute, value):
    if not 0 < value < 65536:
        raise ValueError(f"expected a TCP port 1-65535, got {value!r}")


def _jpeg_quality(_inst, attribute, value):
    if value is not None and not 1 <= value <= 100:
        raise ValueError(f"expected null (raw frames) or a JPEG quality 1-100, got {value!r}")


def _merge_mode(_inst, attribute, value):
    from vla.client.queue import MERGE_MODES

    if value not in MERGE_MODES:
        raise ValueError(f"expected one of {', '.join(MERGE_MODES)}, got {value!r}")


def _url(*schemes: str):
    def check(_inst, attribute, value):
        if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")

    return check


def _xyz(_inst, attribute, value):
    if len(value) != 3:
        raise ValueError(f"expected three numbers [x, y, z] in metres, got {value!r}")


# ---------------------------------------------------------------------------- schema


@attrs.define
class PolicyServerConfig:
    host: str = "localhost"
    port: int = attrs.field(default=8080, validator=_port)
    url: str | None = attrs.field(default=None, validator=_url("ws", "wss"))  # wins over host and port
    api_key: str | None = None
    ca_file: str | None = None  # PEM CA for wss:// (default: the system's CA store); relative to vla.yaml

    def resolved_url(self) -> str:
        return self.url or f"ws://{self.host}:{self.port}"


@attrs.define
class RewarderServerConfig:
    host: str = "localhost"
    port: int = attrs.field(default=18080, validator=_port)
    url: str | None = attrs.field(default=None, validator=_url("http", "https"))
    api_key: str | None = None
    ca_file: str | None = None  # PEM CA for https:// (default: the system's CA store); relative to vla.yaml

    def resolved_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


@attrs.define
class ClientConfig:
    """How `vla run` consumes action chunks. Defaults follow the seed plan's starting points."""

    actions_per_chunk: int = attrs.field(default=40, validator=_at_least_one)
    chunk_size_threshold: float = attrs.field(default=0.6, validator=_share)
    merge: str = attrs.field(default="rtc", validator=_merge_mode)  # latest | weighted_average | rtc
    control_hz: float | None = attrs.field(default=None, validator=_positive)  # None: the robot's own rate
    jpeg_quality: int | None = attrs.field(default=None, validator=_jpeg_quality)  # None: raw frames
    connect_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    reconnect_max_backoff_s: float = attrs.field(default=2.0, validator=_positive)


@attrs.define
class Toleration:
    """A Kubernetes toleration for the taint GPU nodes carry (checked by `vla up --target k8s`)."""

    key: str = "nvidia.com/gpu"
    operator: str = "Exists"  # Exists | Equal
    value: str | None = None  # with Equal
    effect: str | None = "NoSchedule"  # NoSchedule | PreferNoSchedule | NoExecute | null: any


@attrs.define
class KubernetesConfig:
    """How `vla up --target k8s` writes manifests (`deploy.kubernetes` in vla.yaml)."""

    namespace: str | None = None  # None: deploy.project
    # How the arms reach the public services: LoadBalancer | NodePort | ClusterIP
    service_type: str = "LoadBalancer"
    replicas: dict[str, int] = attrs.field(factory=dict)  # service (policy, rewarder, ...) -> pods
    # The NVIDIA GPU operator labels its nodes nvidia.com/gpu.present=true; {} schedules anywhere.
    gpu_node_selector: dict[str, str] = attrs.field(factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: list[Toleration] = attrs.field(factory=lambda: [Toleration()])
    runtime_class: str | None = None  # e.g. "nvidia", where the GPU runtime is not the default
    storage_class: str | None = None  # None: the cluster's default
    # Pods on different nodes share the model cache, so by default it needs a shared filesystem.
    access_mode: str = "ReadWriteMany"  # ReadWriteMany | ReadWriteOnce | ReadWriteOncePod
    cache_size: str = "200Gi"  # the model cache's claim (deploy.model_cache_volume)
    volume_size: str = "50Gi"  # each other volume's claim (checkpoints, assets)
    image_registry: str | None = None  # where the cluster pulls vla's own images (they are built locally)
    secret: str | None = None  # an existing Secret to use; None: kustomize makes one from secrets.env
    version: str = "1.30"  # the Kubernetes version the manifests are checked against


@attrs.define
class DeployConfig:
    """What `vla up` starts on the GPU host when no flags are given."""

    project: str = "vla"
    policy: str | None = None
    rewarder: str | None = None
    trainer: str | None = None
    model_cache_volume: str = "vla-model-cache"
    policy_port: int = attrs.field(default=8080, validator=_port)
    rewarder_port: int = attrs.field(default=18080, validator=_port)
    gpus: str = "all"  # "all" or comma-separated device ids
    bind_address: str = "0.0.0.0"  # host address the service ports are published on
    kubernetes: KubernetesConfig = attrs.field(factory=KubernetesConfig)  # `vla up --target k8s`


@attrs.define
class PreflightConfig:
    """What `vla run`'s pre-flight (vla.matching) compares the deployment with: the dataset the
    served policy was trained on and its checkpoint. Relative paths are read from vla.yaml's folder."""

    dataset: str | None = None
    checkpoint: str | None = None


def _rate(_inst, attribute, value):
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.define
class DashboardConfig:
    """`vla dashboard` and `vla fleet run --dashboard`: where it listens, how often it refreshes,
    which services it watches besides the policy server (``NAME=URL``)."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8090, validator=_port)
    refresh_s: float = attrs.field(default=1.0, validator=_positive)
    rewarder: bool = False  # also watch the rewarder of ``rewarder:``
    services: list[str] = attrs.field(factory=list)


@attrs.define
class GatesConfig:
    """The lab plan's gates (`vla gates`); the defaults are the plan's own figures."""

    min_control_hz: float = attrs.field(default=15.0, validator=_positive)  # G1
    max_underflows_per_min: float = attrs.field(default=1.0, validator=_positive)  # G1, strictly below
    startup_s: float = attrs.field(default=5.0, validator=_positive)  # G1: a run's first seconds are start-up
    min_minutes: float = attrs.field(default=1.0, validator=_positive)  # G1: real time each arm must have run
    first_task_rate: float = attrs.field(default=0.7, validator=_rate)  # G2
    first_task_trials: int = attrs.field(default=20, validator=_at_least_one)  # G2
    tasks_rate: float = attrs.field(default=0.8, validator=_rate)  # G3
    tasks_needed: int = attrs.field(default=3, validator=_at_least_one)  # G3
    tasks_trials: int = attrs.field(default=20, validator=_at_least_one)  # G3
    agreement: float = attrs.field(default=0.9, validator=_rate)  # G3: rewarder-human agreement
    agreement_clips: int = attrs.field(default=50, validator=_at_least_one)  # G3
    max_latency_ms: float = attrs.field(default=120.0, validator=_positive)  # latency KPI, median


@attrs.define
class LabConfig:
    lab: str = "lab"
    log_dir: str = "logs"
    policy_server: PolicyServerConfig = attrs.field(factory=PolicyServerConfig)
    rewarder: RewarderServerConfig = attrs.field(factory=RewarderServerConfig)
    client: ClientConfig = attrs.field(factory=ClientConfig)
    deploy: DeployConfig = attrs.field(factory=DeployConfig)
    preflight: PreflightConfig = attrs.field(factory=PreflightConfig)
    dashboard: DashboardConfig = attrs.field(factory=DashboardConfig)
    gates: GatesConfig = attrs.field(factory=GatesConfig)
    # arm id -> per-arm config file (relative to vla.yaml)
    arms: dict[str, str] = attrs.field(factory=dict)
    # plugin name -> that plugin's config, checked against its config class when it is used
    plugins: dict[str, dict] = attrs.field(factory=dict)


@attrs.define
class ArmConfig:
    """One arm's file: which robot plugin drives it, that plugin's settings, and its safety file."""

    robot: str
    config: dict = attrs.field(factory=dict)  # checked against the robot plugin's config class
    safety: str | None = None  # relative to this file; None: the robot description's defaults


def _limit_order(inst, attribute, value):
    if value < inst.min:
        raise ValueError(f"expected max >= min ({inst.min}), got {value!r}")


@attrs.define
class JointLimit:
    min: float  # radians
    max: float = attrs.field(validator=_limit_order)  # radians
    max_step: float = attrs.field(default=0.2, validator=_positive)  # largest change in one tick, radians


@attrs.define
class GripperLimit:
    joint: str
    min: float  # radians
    max: float = attrs.field(validator=_limit_order)


@attrs.define
class WorkspaceBox:
    """Where the tool point may go, in metres in the robot's base frame (checked by forward kinematics)."""

    min: list[float] = attrs.field(validator=_xyz)
    max: list[float] = attrs.field(validator=_xyz)

    def __attrs_post_init__(self):
        if any(lo > hi for lo, hi in zip(self.min, self.max)):
            raise ValueError(f"expected min <= max on every axis, got min {self.min} and max {self.max}")


@attrs.define
class SafetyConfig:
    """A safety limits file (`vla init` writes one from the robot's description). Joints are in
    command order; a file without ``gripper`` or ``workspace`` skips that check."""

    joints: dict[str, JointLimit] = attrs.field(factory=dict)
    gripper: GripperLimit | None = None
    workspace: WorkspaceBox | None = None


def load_safety(path: str | os.PathLike) -> SafetyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "no such safety limits file")
    return structure(SafetyConfig, read_yaml(path), str(path))


# Environment variables labs already use, mapped to config keys.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "POLICY_SERVER_HOST": ("policy_server.host",),
    "POLICY_SERVER_PORT": ("policy_server.port",),
    "POLICY_SERVER_URL": ("policy_server.url",),
    "REWARDER_HOST": ("rewarder.host",),
    "REWARDER_PORT": ("rewarder.port",),
    "REWARDER_URL": ("rewarder.url",),
    "ACTIONS_PER_CHUNK": ("client.actions_per_chunk",),
    "CHUNK_SIZE_THRESHOLD": ("client.chunk_size_threshold",),
    "LOG_DIR": ("log_dir",),
    "VLA_API_KEY": ("policy_server.api_key", "rewarder.api_key"),
}
# The arm a script means when it gives no --arm (the lab's scripts export it per arm host).
ARM_ENV = "ARM_ID"


# -------------------------------------------------------------------- the converter


class _Problem(Exception):
    """A value the converter refuses. ``key`` is relative to where it was raised ("" for the value)."""

    def __init__(self, problem: str, key: str = ""):
        self.problem, self.key = problem, key
        super().__init__(problem)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is not None:
        return {list: "a list", dict: "a mapping", tuple: "a list"}.get(origin, str(tp))
    if isinstance(tp, type) and attrs.has(tp):
        return "a mapping"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a mapping", list: "a list"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _shape_fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` is a container of the kind ``tp`` wants (so ``tp``'s error is the one to show)."""
    origin = typing.get_origin(tp)
    if (isinstance(tp, type) and attrs.has(tp)) or tp is dict or origin is dict:
        return isinstance(value, Mapping)
    if tp in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    return False


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _scalar_hook(tp: type, from_text: bool):
    """Strict scalars: YAML's types as they are (no "8080" for a port, no true for a number).
    Text from the environment is parsed."""

    def structure(value, _tp):
        if tp is bool:
            if isinstance(value, bool):
                return value
            if from_text and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
                return value.lower() in _TRUE
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if from_text and isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    pass
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if from_text and isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        elif tp is str:
            if isinstance(value, str):
                return value
        raise _Problem(f"expected {_type_name(tp)}, got {value!r}")

    return structure


def _make_converter(from_text: bool):
    import cattrs
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory, mapping_structure_factory
    from cattrs.errors import ClassValidationError
    from cattrs.gen import make_dict_structure_fn, make_hetero_tuple_structure_fn

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for tp in (bool, int, float, str):
        conv.register_structure_hook(tp, _scalar_hook(tp, from_text))

    def union(value, tp):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (from_text and value == "")):
            return None
        fitting = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return conv.structure(value, arg)
            except Exception as exc:  # noqa: BLE001 - the next member may fit
                if _shape_fits(value, arg):  # a mapping for a class, say: its own error says more
                    fitting.append(exc)
        if len(fitting) == 1:
            raise fitting[0]
        raise _Problem(f"expected {_type_name(tp)}, got {value!r}")

    conv.register_structure_hook_func(_is_union, union)

    def plain(kind: type):
        def structure(value, _tp):
            if not isinstance(value, kind):
                raise _Problem(f"expected {_type_name(kind)}, got {value!r}")
            return value

        return structure

    conv.register_structure_hook(dict, plain(dict))
    conv.register_structure_hook(list, plain(list))

    def mapping_factory(tp):
        inner = mapping_structure_factory(tp, conv)
        key_type = (typing.get_args(tp) or (Any,))[0]

        def structure(value, _tp):
            if not isinstance(value, Mapping):
                raise _Problem(f"expected a mapping, got {value!r}")
            if key_type is str:  # YAML reads `01:` or `2:` as numbers; keys are names here
                value = {str(k): v for k, v in value.items()}
            return inner(value, tp)

        return structure

    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is dict, mapping_factory)

    def sequence_factory(tp):
        args = typing.get_args(tp)
        if typing.get_origin(tp) is list:
            inner, length = list_structure_factory(tp, conv), None
        elif len(args) == 2 and args[1] is Ellipsis:
            inner, length = homogenous_tuple_structure_factory(tp, conv), None
        else:
            inner, length = make_hetero_tuple_structure_fn(tp, conv), len(args)

        def structure(value, _tp):
            if not isinstance(value, (list, tuple)):
                raise _Problem(f"expected a list, got {value!r}")
            if length is not None and len(value) != length:
                raise _Problem(f"expected a list of {length} items, got {value!r}")
            return inner(value, tp)

        return structure

    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) in (list, tuple), sequence_factory)

    def attrs_factory(cls):
        inner = make_dict_structure_fn(cls, conv)
        aliases: dict[str, str] = getattr(cls, "config_aliases", {}) or {}
        fields = attrs.fields(cls)

        def structure(value, _cls):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise _Problem(f"expected a mapping, got {value!r}")
            if aliases:
                value = dict(value)
                for old, new in aliases.items():
                    if old in value:
                        if new in value:
                            raise _Problem(f"give {new} or {old} (the same setting), not both", old)
                        value[new] = value.pop(old)
            try:
                return inner(value, cls)
            except ClassValidationError as exc:
                with_notes, without = exc.group_exceptions()
                refused = [e for e in without if not isinstance(e, cattrs.ForbiddenExtraKeysError)]
                if with_notes or not refused:
                    raise
                # the class's own validators refused the values: find which field
                raise _validator_problem(conv, fields, value, refused[0]) from None

        return structure

    conv.register_structure_hook_factory(lambda tp: isinstance(tp, type) and attrs.has(tp), attrs_factory)
    return conv


def _validator_problem(conv, fields, value: Mapping, error: Exception) -> _Problem:
    """Which field's validator refused ``value``: each validator is run again on its own, with
    the other fields' values at hand (some compare fields), so the error can name the key."""
    import types

    values: dict[str, Any] = {}
    for field in fields:
        try:
            if field.name in value:
                values[field.name] = conv.structure(value[field.name], field.type)
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                values[field.name] = field.default.factory()
            elif field.default is not attrs.NOTHING:
                values[field.name] = field.default
        except Exception:  # noqa: BLE001 - structuring succeeded before; leave this one out
            pass
    inst = types.SimpleNamespace(**values)
    for field in fields:
        if field.validator is None or field.name not in value or field.name not in values:
            continue
        try:
            field.validator(inst, field, values[field.name])
        except Exception as exc:  # noqa: BLE001 - any refusal names this field
            return _Problem(_strip_name(str(exc), field.name), field.name)
    return _Problem(str(error))


def _strip_name(message: str, name: str) -> str:
    for prefix in (f"{name}: ", f"{name} "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _error_path(exc: BaseException) -> tuple[list[str], str]:
    """(key parts, problem) of the first failure inside a cattrs error; ([], ...) at the top."""
    from cattrs.errors import BaseValidationError, ForbiddenExtraKeysError, IterableValidationError

    parts: list[str] = []
    while True:
        if isinstance(exc, BaseValidationError):
            with_notes, without = exc.group_exceptions()
            if with_notes:
                sub, note = with_notes[0]
                if hasattr(note, "name"):
                    parts.append(str(note.name))
                else:
                    cl = getattr(exc, "cl", None)
                    mapping = cl is dict or typing.get_origin(cl) is dict or isinstance(note.index, str)
                    parts.append(str(note.index) if mapping else f"[{note.index}]")
                exc = sub
                continue
            if without:
                exc = without[0]
                continue
            return parts, str(exc)
        if isinstance(exc, ForbiddenExtraKeysError):
            extra = sorted(map(str, exc.extra_fields))
            known = ", ".join(f.name for f in attrs.fields(exc.cl)) if attrs.has(exc.cl) else ""
            return parts + [extra[0]], f"unknown key (expected one of: {known})"
        if isinstance(exc, _Problem):
            return parts + ([exc.key] if exc.key else []), exc.problem
        if isinstance(exc, KeyError) and parts:
            return parts, "required key missing"
        if isinstance(exc, IterableValidationError):
            return parts, str(exc)
        return parts, str(exc) if str(exc) else type(exc).__name__


def _join(prefix: str, parts: list[str]) -> str:
    key = prefix
    for part in parts:
        key = key + part if part.startswith("[") or not key else f"{key}.{part}"
    return key


_converters: dict[bool, Any] = {}


def converter(from_text: bool = False):
    """The converter (built once; cattrs is imported on first use). ``from_text`` parses strings
    from the environment into numbers and booleans."""
    if from_text not in _converters:
        _converters[from_text] = _make_converter(from_text)
    return _converters[from_text]


def structure(cls: type, data: Any, source: str, prefix: str = "", from_text: bool = False) -> Any:
    """An instance of ``cls`` (an attrs class, or any type the converter knows) from plain data.

    Unknown keys, wrong types and values the class's validators refuse raise ``ConfigError``
    naming ``source`` and the dotted key under ``prefix``. A class may accept another name for
    a key with ``config_aliases: ClassVar[dict[str, str]] = {"old": "new"}`` (LeRobot's names
    beside vla's, say); validators raise ``ValueError`` saying what is allowed."""
    try:
        return converter(from_text).structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every refusal becomes a ConfigError
        if isinstance(exc, ConfigError):
            raise
        parts, problem = _error_path(exc)
        raise ConfigError(source, _join(prefix, parts) or "(top level)", problem) from None


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for YAML or JSON."""
    return attrs.asdict(obj, recurse=True) if attrs.has(type(obj)) else obj


# --------------------------------------------------------------------- loading


@attrs.define
class LoadedConfig:
    config: LabConfig
    path: Path | None  # the vla.yaml used, if any
    sources: dict[str, str]  # dotted key -> "default" | file path | "env:NAME" | ".env:NAME"

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def plugin_config(self, spec) -> Any:
        """The plugin's config from the `plugins:` section, checked against its config class."""
        if spec.config is None:
            self.plugin_profile(spec)
            return None
        data = self.plugin_section(spec)
        return structure(spec.config, data, str(self.path or "vla.yaml"), f"plugins.{spec.name}")

    def plugin_profile(self, spec) -> str | None:
        """``plugins.<name>.profile``: which of the plugin's service profiles `vla up` runs (None: the
        services as the spec gives them). A name the plugin does not declare is a ConfigError."""
        value = (self.config.plugins.get(spec.name) or {}).get(PROFILE_KEY)
        if value is None:
            return None
        known = [p.name for p in getattr(spec, "profiles", ())]
        if not isinstance(value, str) or value not in known:
            raise ConfigError(str(self.path or "vla.yaml"), f"plugins.{spec.name}.{PROFILE_KEY}",
                              f"expected one of the plugin's service profiles ({', '.join(known) or 'it has none'}), "
                              f"got {value!r}")
        return value

    def plugin_section(self, spec) -> dict:
        """The plugin's `plugins:` section without the keys vla itself reads (``profile``)."""
        self.plugin_profile(spec)
        return {k: v for k, v in (self.config.plugins.get(spec.name) or {}).items() if k != PROFILE_KEY}


def find_config_path(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(str(path), "(file)", "no such file")
        return path
    env = os.environ.get("VLA_CONFIG")
    if env:
        return find_config_path(env)
    local = Path.cwd() / CONFIG_FILENAME
    return local if local.is_file() else None


def read_yaml(path: str | os.PathLike) -> Any:
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "(file)", f"not valid YAML: {exc}") from None


def read_dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _leaf_keys(obj: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in attrs.fields(type(obj)):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if attrs.has(type(value)):
            keys.extend(_leaf_keys(value, key + "."))
        else:
            keys.append(key)
    return keys


def load_config(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> LoadedConfig:
    environ = dict(os.environ) if environ is None else environ
    config_path = find_config_path(path)
    data: dict = {}
    sources: dict[str, str] = {}
    if config_path is not None:
        data = read_yaml(config_path)
        if not isinstance(data, dict):
            raise ConfigError(str(config_path), "(top level)", "expected a mapping of settings")
        # check the file on its own first, so its errors name the file
        structure(LabConfig, data, str(config_path))
        _record_sources(data, str(config_path), sources)

    dotenv_dir = config_path.parent if config_path else Path.cwd()
    dotenv_path = dotenv_dir / ".env"
    layers = []
    if dotenv_path.is_file():
        layers.append((read_dotenv(dotenv_path), f"{dotenv_path}:"))
    layers.append((environ, "env:"))
    for values, label in layers:
        for var, keys in ENV_OVERRIDES.items():
            if values.get(var, "") != "":  # an empty variable counts as unset
                for key in keys:
                    env_only = structure(LabConfig, _nested(key, values[var]), f"{label}{var}", from_text=True)
                    _set_dotted(data, key, _get_dotted(env_only, key))
                    sources[key] = f"{label}{var}"
    config = structure(LabConfig, data, str(config_path or "vla.yaml"))
    for key in _leaf_keys(config):
        sources.setdefault(key, "default")
    return LoadedConfig(config=config, path=config_path, sources=sources)


def _nested(dotted: str, value: Any) -> dict:
    out: dict = {}
    _set_dotted(out, dotted, value)
    return out


def _get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _record_sources(data: dict, source: str, sources: dict[str, str], prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("arms", "plugins"):
            _record_sources(value, source, sources, dotted + ".")
        else:
            sources[dotted] = source


def relative_to(config: Any, base: Path) -> Any:
    """Let a plugin config resolve its relative paths against the file it was read from.

    Plugin config classes that hold paths define ``relative_to(base) -> config``."""
    method = getattr(config, "relative_to", None)
    return method(base) if callable(method) else config


def load_arm(loaded: LoadedConfig, arm_id: str) -> tuple[ArmConfig, Path]:
    """The per-arm file for ``arm_id`` named in vla.yaml's `arms:` section."""
    arms = loaded.config.arms
    if arm_id not in arms:
        raise ConfigError(str(loaded.path or "vla.yaml"), f"arms.{arm_id}", f"no such arm (known: {', '.join(arms) or 'none'})")
    path = (loaded.base_dir / arms[arm_id]).resolve()
    if not path.is_file():
        raise ConfigError(str(loaded.path or "vla.yaml"), f"arms.{arm_id}", f"file {path} does not exist")
    return structure(ArmConfig, read_yaml(path), str(path)), path
