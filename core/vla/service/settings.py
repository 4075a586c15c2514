"""Where a server's settings come from: its flags, else the lab config (vla.yaml, .env,
environment), else the server's own default, and which one each value came from.

    endpoint = server_endpoint(ctx, loaded, "rewarder", default_port=18080)
    endpoint.host.value, endpoint.host.source   # "0.0.0.0", "/lab/vla.yaml"

Plugin settings for `vla serve` and `vla serve-rewarder` are the lab config's
``plugins.<name>`` section with ``--set KEY=VALUE`` overrides on top.
"""

from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import urlsplit

import attrs

DEFAULT_HOST = "127.0.0.1"


@attrs.frozen
class Setting:
    value: Any
    source: str  # "--port", "env:VLA_REWARDER_HOST", a config file, "<file>/.env:VAR", "env:VAR" or "default"


@attrs.frozen
class Endpoint:
    host: Setting
    port: Setting
    api_key: Setting

    def describe(self) -> str:
        """One line saying where each value came from (the key itself is never shown)."""
        key = "required" if self.api_key.value else "none"
        return (f"host from {self.host.source}, port from {self.port.source}, "
                f"api key {key} (from {self.api_key.source})")


def _flag(ctx, param: str) -> str | None:
    """How a click option got its value: its flag or its environment variable, else None."""
    from click.core import ParameterSource

    source = ctx.get_parameter_source(param)
    if source == ParameterSource.COMMANDLINE:
        return "--" + param.replace("_", "-")
    if source == ParameterSource.ENVIRONMENT:
        option = next((p for p in ctx.command.params if p.name == param), None)
        envvar = getattr(option, "envvar", None)
        return f"env:{envvar if isinstance(envvar, str) else param.upper()}"
    return None


def server_endpoint(ctx, loaded, section: str, *, default_port: int, default_host: str = DEFAULT_HOST) -> Endpoint:
    """Host, port and API key for the server whose lab-config section is ``section``
    (``policy_server`` or ``rewarder``), from the command's ``host``/``port``/``api_key`` options."""
    config = getattr(loaded.config, section)
    sources = loaded.sources
    params = ctx.params

    def pick(field: str, default: Any) -> Setting:
        flag = _flag(ctx, field)
        if flag is not None:
            return Setting(params[field], flag)
        source = sources.get(f"{section}.{field}", "default")
        if source != "default":
            return Setting(getattr(config, field), source)
        return Setting(default, "default")

    port = pick("port", default_port)
    if port.source == "default" and sources.get(f"{section}.url", "default") != "default" and config.url:
        parsed = urlsplit(config.url)
        if parsed.port:  # the clients' URL names the port they will use
            port = Setting(parsed.port, f"{sources[f'{section}.url']} ({section}.url)")
    return Endpoint(host=pick("host", default_host), port=port, api_key=pick("api_key", None))


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings -> a nested dict; values are read as YAML scalars ("0.7" -> 0.7)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def plugin_settings(spec, loaded, overrides: dict | None = None) -> Any:
    """The plugin's config: class defaults < the lab config's ``plugins.<name>`` < ``--set``."""
    from vla.config import structure

    if spec.config is None:
        if overrides:
            raise ValueError(f"{spec.name!r} takes no settings, but --set gave {sorted(overrides)}")
        return None
    data = merge(loaded.plugin_section(spec), overrides or {})
    source = str(loaded.path or "vla.yaml") + (" and --set" if overrides else "")
    return structure(spec.config, data, source, f"plugins.{spec.name}")
