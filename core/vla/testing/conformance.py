"""The conformance check a plugin author runs from pytest::

    from vla.testing import check_plugin

    def test_conformance():
        check_plugin("vla-myplugin")

It loads the plugin the way `vla` does and checks that every spec it registers is valid,
that each factory imports and is callable, and that each config class builds from its
defaults and survives a round trip through the YAML-shaped form the lab config uses.
"""

from __future__ import annotations

import attrs

from vla.config import ConfigError, structure, unstructure
from vla.specs import SINGULAR, ComponentSpec, SpecError


class ConformanceError(AssertionError):
    pass


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def check_spec(spec: ComponentSpec) -> list[str]:
    """Problems with one spec, as sentences naming the spec and field; empty when it conforms."""
    label = f"{SINGULAR[spec.kind]} {spec.name!r}"
    problems = []
    try:
        attrs.validate(spec)
    except (SpecError, TypeError, ValueError) as exc:
        problems.append(f"{label}: {exc}")
    try:
        factory = spec.load_factory()
        if not callable(factory):
            problems.append(f"{label}: factory {spec.factory!r} is not callable")
    except Exception as exc:  # any import failure is the plugin author's to see
        problems.append(f"{label}: factory {spec.factory!r} does not import: {type(exc).__name__}: {exc}")
    if spec.config is not None:
        try:
            config = spec.config()
        except Exception as exc:
            problems.append(f"{label}: config class {spec.config.__name__} has no working defaults: {exc}")
        else:
            try:
                again = structure(spec.config, unstructure(config), f"{label} config")
                if again != config:
                    problems.append(f"{label}: config {spec.config.__name__} changes in a YAML round trip")
            except ConfigError as exc:
                problems.append(f"{label}: config {spec.config.__name__} cannot be read back from YAML: {exc}")
            except RuntimeError as exc:
                problems.append(f"{label}: config {spec.config.__name__}: {exc}")
    for service in spec.services:
        if service.port is not None and service.healthcheck is None:
            problems.append(f"{label}: service {service.name!r} has a port but no health check")
        unknown = set(service.depends_on) - {s.name for s in spec.services}
        if unknown:
            problems.append(f"{label}: service {service.name!r} depends on unknown services {sorted(unknown)}")
    return problems


def check_plugin(distribution: str) -> dict[str, list[str]]:
    """Check every component ``distribution`` registers; returns {kind: [names]} when all conform."""
    from vla.plugins import KINDS, load_registry

    registry = load_registry()
    wanted = _normalise(distribution)
    failures = [f for f in registry.failures if _normalise(f.distribution) == wanted]
    if failures:
        raise ConformanceError("; ".join(f"{f.distribution}: {f.error}" for f in failures))
    if not any(_normalise(p.distribution) == wanted for p in registry.plugins):
        raise ConformanceError(f"{distribution} is not installed or has no entry point in the group 'vla'")
    found: dict[str, list[str]] = {}
    problems: list[str] = []
    for kind in KINDS:
        for name, reg in registry.components[kind].items():
            if _normalise(reg.distribution) == wanted:
                found.setdefault(kind, []).append(name)
                problems.extend(check_spec(reg.spec))
    commands = [
        impl
        for impl in registry.plugin_manager.hook.register_commands.get_hookimpls()
        if _normalise(impl.plugin_name) == wanted
    ]
    if not found and not commands:
        problems.append(f"{distribution} registers nothing")
    if problems:
        raise ConformanceError(f"{distribution}: " + "; ".join(problems))
    return found
