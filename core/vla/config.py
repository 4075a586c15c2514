"""The lab configuration: `vla.yaml` loaded into attrs classes, with environment overrides.

Precedence, lowest first: class defaults, the YAML file, a `.env` file beside it (or in the
working directory), the process environment. Every value remembers where it came from, so
`vla config show` can say why a setting has the value it has.

A wrong key or type is a ``ConfigError`` naming the file, the key and what was expected;
the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import attrs

CONFIG_FILENAME = "vla.yaml"


class ConfigError(ValueError):
    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


# ---------------------------------------------------------------------------- schema


@attrs.define
class PolicyServerConfig:
    host: str = "localhost"
    port: int = 8080
    url: str | None = None  # wins over host and port when set
    api_key: str | None = None

    def resolved_url(self) -> str:
        return self.url or f"ws://{self.host}:{self.port}"


@attrs.define
class RewarderServerConfig:
    host: str = "localhost"
    port: int = 18080
    url: str | None = None
    api_key: str | None = None

    def resolved_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


@attrs.define
class ClientConfig:
    """How `vla run` consumes action chunks. Defaults follow the seed plan's starting points."""

    actions_per_chunk: int = 40
    chunk_size_threshold: float = 0.6
    merge: str = "rtc"  # latest | weighted_average | rtc
    control_hz: float | None = None  # None: the robot's own rate
    jpeg_quality: int | None = None  # None: raw frames; 1-100: JPEG per camera
    connect_timeout_s: float = 5.0
    reconnect_max_backoff_s: float = 2.0


@attrs.define
class DeployConfig:
    """What `vla up` starts on the GPU host when no flags are given."""

    project: str = "vla"
    policy: str | None = None
    rewarder: str | None = None
    trainer: str | None = None
    model_cache_volume: str = "vla-model-cache"
    policy_port: int = 8080
    rewarder_port: int = 18080
    gpus: str = "all"  # "all" or comma-separated device ids
    bind_address: str = "0.0.0.0"  # host address the service ports are published on


@attrs.define
class PreflightConfig:
    """What `vla run`'s pre-flight (vla.matching) compares the deployment with: the dataset the
    served policy was trained on and its checkpoint. Relative paths are read from vla.yaml's folder."""

    dataset: str | None = None
    checkpoint: str | None = None


@attrs.define
class LabConfig:
    lab: str = "lab"
    log_dir: str = "logs"
    policy_server: PolicyServerConfig = attrs.field(factory=PolicyServerConfig)
    rewarder: RewarderServerConfig = attrs.field(factory=RewarderServerConfig)
    client: ClientConfig = attrs.field(factory=ClientConfig)
    deploy: DeployConfig = attrs.field(factory=DeployConfig)
    preflight: PreflightConfig = attrs.field(factory=PreflightConfig)
    # arm id -> per-arm config file (relative to vla.yaml)
    arms: dict[str, str] = attrs.field(factory=dict)
    # plugin name -> that plugin's config, checked against its config class when it is used
    plugins: dict[str, dict] = attrs.field(factory=dict)


@attrs.define
class ArmConfig:
    """One arm's file: which robot plugin drives it, that plugin's settings, and its safety file."""

    robot: str = "so101"
    config: dict = attrs.field(factory=dict)
    safety: str | None = None  # relative to this file


@attrs.define
class JointLimit:
    min: float  # radians
    max: float  # radians
    max_step: float = 0.2  # largest change commanded in one control tick, radians


@attrs.define
class GripperLimit:
    joint: str = "gripper"
    min: float = -0.174533
    max: float = 1.74533


@attrs.define
class WorkspaceBox:
    """Where the tool point may go, in metres in the robot's base frame (checked by forward kinematics)."""

    min: list[float] = attrs.field(factory=lambda: [-0.15, -0.45, 0.0])
    max: list[float] = attrs.field(factory=lambda: [0.50, 0.45, 0.45])


@attrs.define
class SafetyConfig:
    """A safety limits file (`vla init` writes one for the SO-101). Joints are in command order."""

    joints: dict[str, JointLimit] = attrs.field(factory=dict)
    gripper: GripperLimit | None = attrs.field(factory=GripperLimit)
    workspace: WorkspaceBox | None = attrs.field(factory=WorkspaceBox)


# SO-101 joint limits (rad) from TheRobotStudio's so101_new_calib.urdf; zero is mid-range.
SO101_JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-2.79253, 2.79253),
    "gripper": (-0.174533, 1.74533),
}


def so101_safety() -> SafetyConfig:
    return SafetyConfig(joints={n: JointLimit(lo, hi) for n, (lo, hi) in SO101_JOINT_LIMITS.items()})


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


# ----------------------------------------------------------------- strict structuring


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return {list: "a list", dict: "a mapping", tuple: "a list"}.get(origin, str(tp))
    if attrs.has(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, tp.__name__)


def _coerce_scalar(tp: type, value: Any, from_text: bool) -> Any:
    """Convert ``value`` to ``tp`` or raise TypeError. Text from the environment may be parsed."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
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
    elif tp is type(None):
        if value is None or (from_text and value == ""):
            return None
    elif tp is Any:
        return value
    raise TypeError


def structure(cls: type, data: Any, source: str, prefix: str = "", from_text: bool = False) -> Any:
    """Build an instance of the attrs class ``cls`` from plain data, refusing unknown keys."""
    return _structure_value(cls, data, source, prefix, from_text)


def _structure_value(tp: Any, value: Any, source: str, key: str, from_text: bool) -> Any:
    if isinstance(tp, str):
        raise RuntimeError(f"unresolved annotation {tp!r}")
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(source, key or "(top level)", f"expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in attrs.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            where = f"{key}.{unknown[0]}" if key else str(unknown[0])
            raise ConfigError(source, where, f"unknown key (expected one of: {', '.join(fields)})")
        kwargs = {
            name: _structure_value(hints[name], v, source, f"{key}.{name}" if key else name, from_text)
            for name, v in value.items()
        }
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        errors = []
        for arg in candidates:
            try:
                return _structure_value(arg, value, source, key, from_text)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]  # keeps the deeper key of a nested mistake
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _structure_value(vt, v, source, f"{key}.{k}", from_text) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list, got {value!r}")
        args = typing.get_args(tp)
        et = args[0] if args else Any
        items = [_structure_value(et, v, source, f"{key}[{i}]", from_text) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp in (dict, list):
        if not isinstance(value, tp):
            raise ConfigError(source, key, f"expected {_type_name(tp)}, got {value!r}")
        return value
    try:
        return _coerce_scalar(tp, value, from_text)
    except TypeError:
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {value!r}") from None


def unstructure(obj: Any) -> Any:
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
            return None
        data = self.config.plugins.get(spec.name, {})
        return structure(spec.config, data, str(self.path or "vla.yaml"), f"plugins.{spec.name}")


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


def read_yaml(path: Path) -> Any:
    import yaml

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
