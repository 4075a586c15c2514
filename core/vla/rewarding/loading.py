"""Building a rewarder by plugin name, with its config from the lab file and `--set` overrides."""

from __future__ import annotations

from typing import Any, Iterable


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


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def rewarder_config(name: str, config_path: str | None = None, overrides: dict | None = None) -> tuple[Any, Any]:
    """(spec, config) for rewarder ``name``: class defaults < lab file's ``plugins.NAME`` < overrides."""
    from vla.config import load_config, structure
    from vla.plugins import get_spec

    spec = get_spec("rewarders", name)
    if spec.config is None:
        if overrides:
            raise ValueError(f"rewarder {name!r} takes no settings, but --set gave {sorted(overrides)}")
        return spec, None
    loaded = load_config(config_path)
    data = _merge(dict(loaded.config.plugins.get(name, {}) or {}), overrides or {})
    source = str(loaded.path or "vla.yaml") + (" and --set" if overrides else "")
    return spec, structure(spec.config, data, source, f"plugins.{name}")


def build_rewarder(name: str, config_path: str | None = None, overrides: dict | None = None) -> Any:
    spec, config = rewarder_config(name, config_path, overrides)
    return spec.build(config)
