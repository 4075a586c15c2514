"""The lab config: files, .env, environment overrides, strict errors, `vla init` and `vla config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla.config import ConfigError, load_arm, load_config, load_safety

CLEAN_ENV = {
    var: ""
    for var in (
        "POLICY_SERVER_HOST",
        "POLICY_SERVER_PORT",
        "POLICY_SERVER_URL",
        "REWARDER_HOST",
        "REWARDER_PORT",
        "REWARDER_URL",
        "ACTIONS_PER_CHUNK",
        "CHUNK_SIZE_THRESHOLD",
        "LOG_DIR",
        "VLA_API_KEY",
        "VLA_CONFIG",
    )
}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_config(environ={})
    assert loaded.path is None
    assert loaded.config.client.actions_per_chunk == 40
    assert loaded.config.client.chunk_size_threshold == 0.6
    assert loaded.config.policy_server.resolved_url() == "ws://localhost:8080"
    assert loaded.sources["client.actions_per_chunk"] == "default"


def test_file_then_dotenv_then_environment(tmp_path):
    cfg = _write(tmp_path / "vla.yaml", "policy_server:\n  host: gpu1\n  port: 9000\nclient:\n  actions_per_chunk: 30\n")
    _write(tmp_path / ".env", "POLICY_SERVER_PORT=9100\nCHUNK_SIZE_THRESHOLD=0.7\n")
    loaded = load_config(cfg, environ={"ACTIONS_PER_CHUNK": "50"})
    c = loaded.config
    assert (c.policy_server.host, c.policy_server.port) == ("gpu1", 9100)
    assert c.client.chunk_size_threshold == 0.7
    assert c.client.actions_per_chunk == 50
    assert loaded.sources["policy_server.host"] == str(cfg)
    assert loaded.sources["policy_server.port"].endswith(".env:POLICY_SERVER_PORT")
    assert loaded.sources["client.actions_per_chunk"] == "env:ACTIONS_PER_CHUNK"
    assert c.policy_server.resolved_url() == "ws://gpu1:9100"


def test_url_wins_and_api_key_reaches_both_services(tmp_path):
    loaded = load_config(
        _write(tmp_path / "vla.yaml", "{}\n"),
        environ={"POLICY_SERVER_URL": "wss://gpu:443", "VLA_API_KEY": "k"},
    )
    assert loaded.config.policy_server.resolved_url() == "wss://gpu:443"
    assert loaded.config.policy_server.api_key == loaded.config.rewarder.api_key == "k"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("client:\n  actions_per_chunks: 40\n", "client.actions_per_chunks", "unknown key"),
        ("client:\n  actions_per_chunk: forty\n", "client.actions_per_chunk", "expected an integer"),
        ("policy_server: 8080\n", "policy_server", "expected a mapping"),
        ("client:\n  merge: [1]\n", "client.merge", "expected a string"),
        ("bogus: 1\n", "bogus", "unknown key"),
    ],
)
def test_bad_file_names_file_key_and_expectation(tmp_path, text, key, expected):
    cfg = _write(tmp_path / "vla.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, environ={})
    assert info.value.source == str(cfg)
    assert info.value.key == key
    assert expected in info.value.problem


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path / "vla.yaml", "{}\n"), environ={"POLICY_SERVER_PORT": "eighty"})
    assert info.value.source == "env:POLICY_SERVER_PORT"
    assert "expected an integer" in info.value.problem


def test_cli_exits_2_on_bad_config(tmp_path, vla_cli):
    cfg = _write(tmp_path / "vla.yaml", "client:\n  chunk_size_threshold: high\n")
    result = vla_cli("--config", str(cfg), "config", "show", env=CLEAN_ENV)
    assert result.returncode == 2
    assert str(cfg) in result.stderr
    assert "client.chunk_size_threshold" in result.stderr
    assert "expected a number" in result.stderr


def test_init_writes_a_lab_that_loads(tmp_path, vla_cli):
    lab = tmp_path / "lab"
    result = vla_cli("init", str(lab), "--arms", "2", "--lab", "bench", env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr
    for rel in ("vla.yaml", ".env.example", "arms/arm01.yaml", "arms/arm02.yaml", "safety/so101.yaml"):
        assert (lab / rel).is_file(), rel
    loaded = load_config(lab / "vla.yaml", environ={})
    assert loaded.config.lab == "bench"
    assert sorted(loaded.config.arms) == ["arm01", "arm02"]
    arm, arm_path = load_arm(loaded, "arm02")
    assert arm.robot == "so101" and arm.config["id"] == "arm02"
    safety = load_safety(arm_path.parent / arm.safety)
    assert list(safety.joints) == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert safety.joints["shoulder_pan"].max == pytest.approx(1.91986)
    assert safety.joints["gripper"].min == pytest.approx(-0.174533)

    again = vla_cli("init", str(lab), env=CLEAN_ENV)
    assert again.returncode != 0 and "--force" in again.stderr


def test_config_show_reports_sources(tmp_path, vla_cli):
    vla_cli("init", str(tmp_path), env=CLEAN_ENV, check=True)
    env = {**CLEAN_ENV, "POLICY_SERVER_HOST": "gpu7", "VLA_API_KEY": "secret"}
    del env["POLICY_SERVER_HOST"]
    result = vla_cli("config", "show", "--json", cwd=tmp_path, env={**env, "POLICY_SERVER_HOST": "gpu7"}, check=True)
    payload = json.loads(result.stdout)
    rows = {r["key"]: r for r in payload["settings"]}
    assert rows["policy_server.host"] == {"key": "policy_server.host", "value": "gpu7", "source": "env:POLICY_SERVER_HOST"}
    assert rows["client.actions_per_chunk"]["source"].endswith("vla.yaml")
    assert rows["policy_server.api_key"]["value"] == "***"
    assert rows["client.connect_timeout_s"]["source"] == "default"


def test_union_of_scalars_accepts_either(tmp_path):
    import attrs

    from vla.config import structure

    @attrs.define
    class Camera:
        source: int | str = 0

    assert structure(Camera, {"source": "/dev/video2"}, "arm.yaml").source == "/dev/video2"
    assert structure(Camera, {"source": 3}, "arm.yaml").source == 3
    with pytest.raises(ConfigError, match="expected an integer or a string"):
        structure(Camera, {"source": [1]}, "arm.yaml")


def test_plugin_config_paths_resolve_against_the_arm_file(tmp_path):
    import attrs

    from vla.config import relative_to

    @attrs.define
    class WithPath:
        calibration_dir: str = "calib"

        def relative_to(self, base):
            return attrs.evolve(self, calibration_dir=str(base / self.calibration_dir))

    assert relative_to(WithPath(), tmp_path).calibration_dir == str(tmp_path / "calib")
    assert relative_to({"plain": 1}, tmp_path) == {"plain": 1}


def test_init_names_the_lab_after_its_folder_and_asks_the_robot_plugin(tmp_path, vla_cli):
    result = vla_cli("init", str(tmp_path / "mylab") + "/", env=CLEAN_ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "//" not in result.stdout
    loaded = load_config(tmp_path / "mylab" / "vla.yaml", environ={})
    assert loaded.config.lab == "mylab"
    sim = vla_cli("init", str(tmp_path / "simlab"), "--robot", "sim", "--arms", "2", env=CLEAN_ENV)
    assert sim.returncode == 0, sim.stderr
    loaded = load_config(tmp_path / "simlab" / "vla.yaml", environ={})
    arm, path = load_arm(loaded, "arm02")
    assert arm.robot == "sim" and arm.config["task"] == "pick_place" and arm.safety == "../safety/so101.yaml"
    assert (tmp_path / "simlab" / "safety" / "so101.yaml").is_file()  # the sim arm is an SO-101
    bad = vla_cli("init", str(tmp_path / "x"), "--robot", "nope", env=CLEAN_ENV)
    assert bad.returncode == 2 and "no robot named 'nope'" in bad.stderr and "so101" in bad.stderr


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("client:\n  merge: rtcc\n", "client.merge", "expected one of latest, weighted_average, rtc"),
        ("client:\n  chunk_size_threshold: 0\n", "client.chunk_size_threshold", "(0, 1]"),
        ("client:\n  chunk_size_threshold: 1.5\n", "client.chunk_size_threshold", "(0, 1]"),
        ("client:\n  actions_per_chunk: 0\n", "client.actions_per_chunk", ">= 1"),
        ("client:\n  jpeg_quality: 101\n", "client.jpeg_quality", "1-100"),
        ("policy_server:\n  port: 70000\n", "policy_server.port", "1-65535"),
        ("policy_server:\n  url: http://gpu:8080\n", "policy_server.url", "ws:// or wss://"),
    ],
)
def test_values_are_checked_where_they_are_loaded(tmp_path, vla_cli, text, key, allowed):
    cfg = _write(tmp_path / "vla.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, environ={})
    assert (info.value.source, info.value.key) == (str(cfg), key) and allowed in info.value.problem
    result = vla_cli("--config", str(cfg), "config", "show", env=CLEAN_ENV)
    assert result.returncode == 2 and f"{cfg}: {key}:" in result.stderr and allowed in result.stderr


def test_a_bad_value_from_the_environment_is_checked_too(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path / "vla.yaml", "{}\n"), environ={"CHUNK_SIZE_THRESHOLD": "2"})
    assert info.value.source == "env:CHUNK_SIZE_THRESHOLD" and "(0, 1]" in info.value.problem


def test_safety_files_are_checked_through_the_converter(tmp_path):
    bad = _write(tmp_path / "s.yaml", "joints:\n  a: {min: 1, max: 0}\nworkspace: {min: [0, 0], max: [1, 1, 1]}\n")
    with pytest.raises(ConfigError) as info:
        load_safety(bad)
    assert info.value.key == "joints.a.max" and "max >= min" in info.value.problem
    bad.write_text("workspace: {min: [0, 0], max: [1, 1, 1]}\n")
    with pytest.raises(ConfigError, match="workspace.min: expected three numbers"):
        load_safety(bad)


def test_doctor_checks_arm_files_through_the_robot_plugins_config_class(tmp_path, vla_cli):
    """`vla doctor` fails where `vla run` would: a key the driver's config class does not know,
    a safety file that does not fit the robot's joints."""
    vla_cli("init", str(tmp_path / "lab"), "--arms", "2", env=CLEAN_ENV, check=True)
    arm01 = tmp_path / "lab" / "arms" / "arm01.yaml"
    arm01.write_text(arm01.read_text().replace("index_or_path: 0", "index_or_pat: 0"))
    safety = tmp_path / "lab" / "safety" / "so101.yaml"
    (tmp_path / "lab" / "safety" / "short.yaml").write_text(safety.read_text().split("  elbow_flex:")[0])
    arm02 = tmp_path / "lab" / "arms" / "arm02.yaml"
    arm02.write_text(arm02.read_text().replace("../safety/so101.yaml", "../safety/short.yaml"))
    result = vla_cli("--config", str(tmp_path / "lab" / "vla.yaml"), "doctor", "--no-network", env=CLEAN_ENV)
    assert result.returncode == 1
    lines = {line.split(":", 1)[0].split()[-1]: line for line in result.stdout.splitlines() if " arm arm0" in line and "FAIL" in line}
    assert "config.cameras.front.index_or_pat: unknown key" in lines["arm01"], result.stdout
    assert "do not fit robot 'so101'" in lines["arm02"] and "elbow_flex" in lines["arm02"], result.stdout
