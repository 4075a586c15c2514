"""Building a rewarder by plugin name, with its config from the lab file and `--set` overrides."""

from __future__ import annotations

from typing import Any

from vla.service.settings import parse_overrides, plugin_settings

__all__ = ["build_rewarder", "parse_overrides", "rewarder_config"]


def rewarder_config(name: str, config_path: str | None = None, overrides: dict | None = None) -> tuple[Any, Any]:
    """(spec, config) for rewarder ``name``: class defaults < lab file's ``plugins.NAME`` < overrides."""
    from vla.config import load_config
    from vla.plugins import get_spec

    spec = get_spec("rewarders", name)
    return spec, plugin_settings(spec, load_config(config_path), overrides)


def build_rewarder(name: str, config_path: str | None = None, overrides: dict | None = None) -> Any:
    spec, config = rewarder_config(name, config_path, overrides)
    return spec.build(config)
