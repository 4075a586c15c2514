"""vla-openpi: the key map, the client side against a server speaking openpi's protocol, and the
compose definition `vla up --policy pi0-fast` writes.

openpi itself (JAX, the pi0 weights, a GPU) cannot run here, so ``OpenPIProtocolServer``
below stands in for ``scripts/serve_policy.py``: it speaks openpi's exact protocol, as
``openpi.serving.websocket_policy_server`` does (a websocket; openpi-client's own
``msgpack_numpy`` for every frame; the policy's metadata map first; one observation per
request answered with ``actions`` and ``server_timing.infer_ms``; on an exception the
traceback as a text frame, then close with 1011; ``GET /healthz`` answers 200), and its
policy checks the LIBERO example's keys the way openpi's ``LiberoInputs`` reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import threading
import time
import traceback

import numpy as np
import pytest
import yaml

msgpack_numpy = pytest.importorskip("openpi_client.msgpack_numpy")

from vla.testing import check_plugin  # noqa: E402
from vla_openpi.adapter import KeyMapError, from_openpi, to_openpi  # noqa: E402
from vla_openpi.config import KeyMap, OpenPIConfig, Pi0FastConfig, StateSlice  # noqa: E402
from vla_openpi.remote import OpenPIRemoteBackend  # noqa: E402

LIBERO_KEYS = {"observation/image", "observation/wrist_image", "observation/state", "prompt"}


class LiberoLikePolicy:
    """Reads the keys openpi's LIBERO policy reads; answers 10 actions of width 7 (pi0-FAST LIBERO)."""

    def __init__(self):
        self.seen: list[dict] = []

    def infer(self, obs: dict) -> dict:
        self.seen.append(obs)
        image, wrist, state = obs["observation/image"], obs["observation/wrist_image"], obs["observation/state"]
        assert image.dtype == np.uint8 and image.ndim == 3 and wrist.dtype == np.uint8
        base = float(np.asarray(state, np.float64).sum()) + len(obs["prompt"])
        actions = base + np.arange(70, dtype=np.float64).reshape(10, 7) / 100.0
        return {"actions": actions, "policy_timing": {"infer_ms": 1.0}}


@contextlib.contextmanager
def openpi_protocol_server(policy, metadata=None):
    import websockets.asyncio.server as ws_server
    from websockets.frames import CloseCode

    loop = asyncio.new_event_loop()
    box: dict = {}
    ready = threading.Event()

    async def handler(connection):
        packer = msgpack_numpy.Packer()
        await connection.send(packer.pack(metadata or {}))
        while True:
            try:
                obs = msgpack_numpy.unpackb(await connection.recv())
                started = time.monotonic()
                action = policy.infer(obs)
                action["server_timing"] = {"infer_ms": (time.monotonic() - started) * 1000}
                await connection.send(packer.pack(action))
            except Exception as exc:  # noqa: BLE001 - mirrors openpi's server
                import websockets

                if isinstance(exc, websockets.ConnectionClosed):
                    return
                await connection.send(traceback.format_exc())
                await connection.close(code=CloseCode.INTERNAL_ERROR, reason="Internal server error. Traceback included in previous frame.")
                return

    def health(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async def main():
        async with ws_server.serve(handler, "127.0.0.1", 0, compression=None, max_size=None, process_request=health) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            box["stop"] = asyncio.Event()
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"ws://127.0.0.1:{box['port']}"
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def vla_observation(seed=0, h=48, w=64):
    rng = np.random.default_rng(seed)
    return {
        "observation.state": rng.uniform(-1, 1, 6).astype(np.float32),
        "observation.images.front": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "task": "lift the yellow cube",
    }


def expected_actions(obs, width=6, pad_to=None):
    state = np.asarray(obs["observation.state"], np.float32)
    base = float(state.astype(np.float64).sum()) + len(obs["task"])
    return (base + np.arange(70).reshape(10, 7) / 100.0)[:, :width].astype(np.float32)


def test_plugin_conformance():
    assert check_plugin("vla-openpi") == {"policies": ["pi0", "pi0-fast"]}


def test_key_map_libero_and_droid():
    obs = vla_observation()
    request = to_openpi(obs, KeyMap())
    assert set(request) == LIBERO_KEYS
    assert request["observation/image"] is obs["observation.images.front"] or np.array_equal(request["observation/image"], obs["observation.images.front"])
    padded = to_openpi(obs, KeyMap(state_pad_to=8))["observation/state"]
    assert padded.shape == (8,) and np.all(padded[6:] == 0)
    droid = KeyMap(
        images={"front": "observation/exterior_image_1_left", "wrist": "observation/wrist_image_left"},
        state=[StateSlice("observation/joint_position", 0, 5), StateSlice("observation/gripper_position", 5, 6)],
    )
    request = to_openpi(obs, droid)
    assert request["observation/joint_position"].shape == (5,) and request["observation/gripper_position"].shape == (1,)
    with pytest.raises(KeyMapError, match="observation.images.wrist"):
        to_openpi({k: v for k, v in obs.items() if k != "observation.images.wrist"}, KeyMap())
    with pytest.raises(KeyMapError, match="state_pad_to"):
        to_openpi(obs, KeyMap(state_pad_to=4))
    assert from_openpi({"actions": np.ones((10, 7))}, KeyMap()).shape == (10, 6)
    with pytest.raises(KeyMapError, match="fewer than action_dim"):
        from_openpi({"actions": np.ones((10, 4))}, KeyMap())
    with pytest.raises(KeyMapError, match="no 'actions'"):
        from_openpi({"error": "x"}, KeyMap())


def test_remote_backend_against_an_openpi_protocol_server():
    policy = LiberoLikePolicy()
    with openpi_protocol_server(policy, metadata={"robot": "libero"}) as url:
        backend = OpenPIRemoteBackend(Pi0FastConfig(server_url=url), name="openpi/pi0-fast")
        backend.warmup()
        assert backend.server_metadata == {"robot": "libero"}
        info = backend.info()
        assert (info.horizon, info.action_dim, info.state_dim) == (10, 6, 6)
        observations = [vla_observation(seed=i) for i in range(3)]
        chunks = backend.infer(observations)
        for obs, chunk in zip(observations, chunks):
            assert chunk.dtype == np.float32
            np.testing.assert_allclose(chunk, expected_actions(obs), rtol=1e-6)
        # what reached openpi is exactly its example's keys, images still HxWx3 uint8
        assert [set(o) for o in policy.seen] == [LIBERO_KEYS] * 3
        assert policy.seen[0]["prompt"] == "lift the yellow cube"
        # openpi's error path: a traceback text frame, then the server closes; the backend says so
        # and reconnects for the next request
        broken = OpenPIRemoteBackend(OpenPIConfig(server_url=url, keys=KeyMap(images={"front": "observation/image"})))
        with pytest.raises(RuntimeError, match="KeyError: 'observation/wrist_image'"):
            broken.infer([vla_observation()])
        np.testing.assert_allclose(backend.infer([observations[0]])[0], expected_actions(observations[0]), rtol=1e-6)
        backend.close()


def test_vla_serve_fronting_openpi_gives_arms_the_vla_protocol():
    """`vla serve --policy pi0-fast` in front of openpi's server: a vla client gets vla metadata and chunks."""
    from vla.protocol.client import PolicyClient
    from vla.serving.server import PolicyServer

    policy = LiberoLikePolicy()
    with openpi_protocol_server(policy) as openpi_url:
        backend = OpenPIRemoteBackend(Pi0FastConfig(server_url=openpi_url, cameras={"front": [48, 64, 3], "wrist": [48, 64, 3]}), name="openpi/pi0-fast")

        async def main():
            server = PolicyServer(backend, host="127.0.0.1", port=0)
            await server.start()
            try:
                await server.wait_settled(30)
                client = await PolicyClient.connect(f"ws://127.0.0.1:{server.port}")
                obs = vla_observation(seed=5)
                reply = await client.infer(obs)
                await client.close()
                return client.metadata, obs, reply
            finally:
                await server.stop()

        metadata, obs, reply = asyncio.run(main())
    assert metadata["protocol"] == "vla/1" and metadata["policy"] == "openpi/pi0-fast"
    assert metadata["horizon"] == 10 and metadata["cameras"] == {"front": [48, 64, 3], "wrist": [48, 64, 3]}
    np.testing.assert_allclose(reply["actions"], expected_actions(obs), rtol=1e-6)


def test_vla_client_talks_to_openpi_directly_through_the_key_map():
    """What `vla run` does against openpi's own server: openpi metadata, key-mapped requests."""
    from vla.protocol.client import PolicyClient

    policy = LiberoLikePolicy()
    with openpi_protocol_server(policy) as url:

        async def main():
            client = await PolicyClient.connect(url)
            obs = vla_observation(seed=9)
            reply = await client.infer(to_openpi(obs, KeyMap()))
            await client.close()
            return client, obs, reply

        client, obs, reply = asyncio.run(main())
    assert not client.is_vla_server
    np.testing.assert_allclose(from_openpi(reply, KeyMap()), expected_actions(obs), rtol=1e-6)
    assert reply["server_timing"]["infer_ms"] >= 0


def test_vla_up_dry_run_compose_definition(tmp_path, vla_cli):
    """`vla up --policy pi0-fast --dry-run`: the compose service that runs openpi's server.

    The file is validated here with the standalone Compose v2 binary under a time limit (vla up's
    own `docker compose config` check is switched off with VLA_DOCKER, so a hung docker CLI
    plugin cannot hold the test).
    """
    import shutil
    import subprocess
    from pathlib import Path

    result = vla_cli("up", "--policy", "pi0-fast", "--dry-run", cwd=tmp_path, timeout=180, env={"VLA_DOCKER": "/nonexistent"})
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(result.stdout)
    (service,) = compose["services"].values()
    assert service["image"] == "vla-openpi:latest"
    command = service["command"]
    assert "scripts/serve_policy.py" in command and "policy:checkpoint" in command
    assert "--policy.config=pi0_fast_libero" in command
    assert "--policy.dir=gs://openpi-assets/checkpoints/pi0_fast_libero" in command
    (port,) = service["ports"]
    assert int(port["target"]) == 8000 and int(port["published"]) == 8080
    gpu = service["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "http://127.0.0.1:8000/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["OPENPI_DATA_HOME"] == "/openpi_assets"
    assert "vla-openpi-assets" in compose["volumes"]
    compose_bin = shutil.which("docker-compose") or str(Path.home() / ".docker" / "cli-plugins" / "docker-compose")
    if Path(compose_bin).is_file():
        (tmp_path / "c.yaml").write_text(result.stdout)
        check = subprocess.run([compose_bin, "-p", "vla", "-f", str(tmp_path / "c.yaml"), "config", "--quiet"],
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stderr


def test_pi0_service_spec():
    from vla.plugins import get_spec

    spec = get_spec("policies", "pi0")
    service = spec.service
    assert service.image == "vla-openpi:latest" and service.port == 8000 and service.gpus == 1
    assert "--policy.config=pi0_libero" in service.command and service.build_context == "images/openpi"
    assert spec.default_config().horizon == 50 and get_spec("policies", "pi0-fast").default_config().horizon == 10
