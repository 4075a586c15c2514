"""Spec validation and the registry's handling of bad and clashing plugins, in-process."""

from __future__ import annotations

import types

import attrs
import pytest

from vla import hookimpl
from vla.plugins import PluginError, UnknownComponent, load_registry
from vla.specs import HealthCheck, PolicySpec, RobotSpec, ServiceSpec, SpecError


@attrs.define
class _Cfg:
    rate: float = 30.0


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_valid_spec_builds_from_import_path():
    spec = PolicySpec(name="echo", description="echo policy", factory="collections:OrderedDict")
    assert spec.build() == {}
    assert spec.service is None


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("name", {"name": "Bad Name"}),
        ("description", {"description": "two\nlines"}),
        ("description", {"description": "  "}),
        ("factory", {"factory": "no_colon_here"}),
        ("config", {"config": dict}),
        ("services", {"services": ["not a service"]}),
    ],
)
def test_invalid_spec_names_the_field(field, kwargs):
    base = {"name": "ok", "description": "fine", "factory": "collections:OrderedDict"}
    with pytest.raises(SpecError, match=repr(field)):
        PolicySpec(**{**base, **kwargs})


def test_service_spec_checks_port_and_gpus():
    with pytest.raises(SpecError, match="'port'"):
        ServiceSpec(name="policy", image="img", port=70000)
    with pytest.raises(SpecError, match="'gpus'"):
        ServiceSpec(name="policy", image="img", gpus=-1)
    service = ServiceSpec(name="policy", image="img", port=8080, healthcheck=HealthCheck.http(8080))
    assert service.healthcheck.command[0] == "python3"
    assert "8080/healthz" in service.healthcheck.command[-1]


def test_invalid_spec_from_plugin_is_reported_with_distribution(capsys):
    def register_policies(register):
        register(PolicySpec(name="BAD", description="x", factory="a:b"))

    registry = load_registry(extra_plugins=((_plugin(register_policies=register_policies), "vla-badspec"),))
    assert [f.distribution for f in registry.failures] == ["vla-badspec"]
    assert "'name'" in registry.failures[0].error
    assert "vla-badspec" in capsys.readouterr().err


def test_wrong_spec_kind_is_an_error():
    def register_robots(register):
        register(PolicySpec(name="p", description="x", factory="a:b"))

    registry = load_registry(extra_plugins=((_plugin(register_robots=register_robots), "vla-wrongkind"),))
    assert "expected RobotSpec" in registry.failures[0].error


def test_same_name_from_two_distributions_names_both(capsys):
    def register_robots(register):
        register(RobotSpec(name="twin", description="x", factory="a:b", config=_Cfg))

    registry = load_registry(
        extra_plugins=(
            (_plugin(register_robots=register_robots), "vla-first"),
            (_plugin(register_robots=register_robots), "vla-second"),
        )
    )
    with pytest.raises(PluginError) as info:
        registry.get("robots", "twin")
    assert "vla-first" in str(info.value) and "vla-second" in str(info.value)
    assert "vla-first" in capsys.readouterr().err


def test_unknown_name_lists_what_is_installed():
    registry = load_registry()
    with pytest.raises(UnknownComponent, match="no policy named 'nope'"):
        registry.get("policies", "nope")


def test_raise_errors_reraises(monkeypatch):
    monkeypatch.setenv("VLA_RAISE_ERRORS", "1")

    def register_policies(register):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        load_registry(extra_plugins=((_plugin(register_policies=register_policies), "vla-boom"),))


def test_config_class_builds_component():
    def register_robots(register):
        register(RobotSpec(name="cfg-robot", description="x", factory="attrs:asdict", config=_Cfg))

    registry = load_registry(extra_plugins=((_plugin(register_robots=register_robots), "vla-cfg"),))
    spec = registry.spec("robots", "cfg-robot")
    assert spec.build() == {"rate": 30.0}
    assert spec.build(_Cfg(rate=15.0)) == {"rate": 15.0}
