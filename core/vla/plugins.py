"""Finding plugins, calling their registration hooks, and the registry of what they registered.

Plugins are distributions that declare a module under the entry-point group ``vla``.
A plugin that fails to import or to register is reported on stderr and skipped, so a
broken install never takes down ``vla --help`` or ``vla plugins uninstall``.

Environment:
- ``VLA_LOAD_PLUGINS``: comma-separated distribution names to load; set but empty loads none.
- ``VLA_RAISE_ERRORS=1``: re-raise plugin failures instead of reporting them (for debugging).
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

import attrs
import pluggy

from vla import __version__, hookspecs
from vla.specs import KINDS, SINGULAR, SPEC_TYPES, ComponentSpec, SpecError

ENTRY_POINT_GROUP = "vla"
CORE_DISTRIBUTION = "vla"
BUILTIN_MODULES = ("vla.builtins",)


class PluginError(Exception):
    """A plugin's spec or registration is wrong; the message names the distribution."""


class UnknownComponent(LookupError):
    """A name that no loaded plugin registered."""


@attrs.frozen
class Registered:
    spec: ComponentSpec
    distribution: str
    version: str


@attrs.frozen
class PluginFailure:
    distribution: str
    error: str


@attrs.frozen
class PluginInfo:
    distribution: str
    version: str
    module: str


def raise_errors() -> bool:
    return os.environ.get("VLA_RAISE_ERRORS", "") not in ("", "0", "false", "False")


def allowed_distributions() -> set[str] | None:
    value = os.environ.get("VLA_LOAD_PLUGINS")
    if value is None:
        return None
    return {_normalise(name) for name in value.split(",") if name.strip()}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@attrs.define
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    plugin_manager: pluggy.PluginManager
    plugins: list[PluginInfo] = attrs.field(factory=list)
    components: dict[str, dict[str, Registered]] = attrs.field(factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginFailure] = attrs.field(factory=list)
    conflicts: dict[tuple[str, str], list[str]] = attrs.field(factory=dict)

    def get(self, kind: str, name: str) -> Registered:
        if (kind, name) in self.conflicts:
            dists = " and ".join(self.conflicts[(kind, name)])
            raise PluginError(f"{SINGULAR[kind]} {name!r} is registered by both {dists}; uninstall one of them")
        try:
            return self.components[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.components[kind])) or "none"
            raise UnknownComponent(
                f"no {SINGULAR[kind]} named {name!r} (installed {kind}: {known}; see `vla plugins list`)"
            ) from None

    def spec(self, kind: str, name: str) -> ComponentSpec:
        return self.get(kind, name).spec

    def report(self, distribution: str, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failures.append(PluginFailure(distribution, message))
        print(f"vla: plugin {distribution} skipped: {message}", file=sys.stderr)


def _make_register(registry: Registry, kind: str, distribution: str, version: str):
    spec_type = SPEC_TYPES[kind]

    def register(spec):
        if not isinstance(spec, spec_type):
            raise PluginError(
                f"{distribution}: register_{kind} was given {type(spec).__name__}, expected {spec_type.__name__}"
            )
        existing = registry.components[kind].get(spec.name)
        if existing is not None and existing.distribution != distribution:
            registry.conflicts.setdefault((kind, spec.name), [existing.distribution]).append(distribution)
            raise PluginError(
                f"{SINGULAR[kind]} {spec.name!r} is registered by both {existing.distribution} and {distribution}"
            )
        registry.components[kind][spec.name] = Registered(spec, distribution, version)

    return register


def _entry_points():
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _register_module(pm, registry, module_name, distribution, version):
    import importlib

    module = importlib.import_module(module_name)
    pm.register(module, name=distribution)
    registry.plugins.append(PluginInfo(distribution, version, module_name))


def load_registry(extra_plugins: tuple[tuple[object, str], ...] = ()) -> Registry:
    """Import the plugins and collect what they register. ``extra_plugins`` are (object, name)
    pairs registered directly, for tests."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry(plugin_manager=pm)
    strict = raise_errors()

    for module_name in BUILTIN_MODULES:
        _register_module(pm, registry, module_name, CORE_DISTRIBUTION, __version__)

    allowed = allowed_distributions()
    seen: set[str] = set()
    for ep in _entry_points():
        distribution = ep.dist.name if ep.dist is not None else ep.name
        version = ep.dist.version if ep.dist is not None else "?"
        key = _normalise(distribution)
        if (allowed is not None and key not in allowed) or (key, ep.value) in seen:
            continue
        seen.add((key, ep.value))
        try:
            _register_module(pm, registry, ep.value, distribution, version)
        except Exception as exc:
            if strict:
                raise
            registry.report(distribution, exc)

    for plugin, name in extra_plugins:
        pm.register(plugin, name=name)
        registry.plugins.append(PluginInfo(name, "test", getattr(plugin, "__name__", repr(plugin))))

    versions = {p.distribution: p.version for p in registry.plugins}
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            distribution = impl.plugin_name
            register = _make_register(registry, kind, distribution, versions.get(distribution, "?"))
            try:
                impl.function(register=register)
            except (PluginError, SpecError) as exc:
                if strict:
                    raise
                registry.report(distribution, PluginError(f"{distribution}: {exc}"))
            except Exception as exc:
                if strict:
                    raise
                registry.report(distribution, exc)
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry of the current process, loaded once."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def reset_registry() -> None:
    global _registry
    _registry = None


def get_spec(kind: str, name: str) -> ComponentSpec:
    return get_registry().spec(kind, name)
