"""API key at the handshake (Api-Key and Bearer), and TLS from a certificate and key file."""

from __future__ import annotations

import ssl
import subprocess

import numpy as np
import pytest
import websockets

from vla.protocol.client import PolicyClient
from vla.protocol.codec import decode
from vla.protocol.errors import PolicyError
from vla.serving.server import PolicyServer
from vla.service.net import server_ssl_context as make_ssl_context
from vla.testing.policies import expected_chunk

KEY = "s3cret-key"


def test_no_key_and_wrong_key_are_refused_at_the_handshake(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0, api_key=KEY) as server:
            await server.wait_settled(5)
            for key in (None, "wrong", KEY + "x", ""):
                with pytest.raises(PolicyError) as info:
                    await PolicyClient.connect(server.url, api_key=key)
                assert info.value.code == "unauthorized" and "401" in info.value.message
            for header in ({"Authorization": "Basic " + KEY}, {"Authorization": "Bearer wrong"}):
                with pytest.raises(websockets.InvalidStatus) as status:
                    await websockets.connect(server.url, additional_headers=header)
                assert status.value.response.status_code == 401
            # health stays open for probes that carry no key
            status, _, _ = await __import__("asyncio").to_thread(helpers.http_get, helpers.http_url(server, "/healthz"))
            assert status == 200
            assert server.metrics.value("errors_total", arm="unnamed", code="unauthorized") == 6

    run_async(scenario())


def test_right_key_works_with_api_key_and_bearer_headers(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0, api_key=KEY) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url, api_key=KEY)  # sends Api-Key, as openpi does
            reply = await client.infer(helpers.observation([0.2] * 6))
            np.testing.assert_allclose(reply["actions"], expected_chunk([0.2] * 6, horizon=10), atol=1e-6)
            await client.close()
            async with websockets.connect(server.url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
                metadata = decode(await ws.recv())
                assert metadata["protocol"] == "vla/1"

    run_async(scenario())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def test_tls_with_certificate_and_key(helpers, run_async, certificate):
    cert, key = certificate

    async def scenario():
        server_ssl = make_ssl_context(cert, key)
        async with PolicyServer(helpers.small_policy(), port=0, ssl=server_ssl, api_key=KEY) as server:
            await server.wait_settled(5)
            assert server.url.startswith("wss://")
            client_ssl = ssl.create_default_context(cafile=cert)
            client = await PolicyClient.connect(server.url, api_key=KEY, ssl=client_ssl)
            reply = await client.infer(helpers.observation([0.1] * 6))
            np.testing.assert_allclose(reply["actions"], expected_chunk([0.1] * 6, horizon=10), atol=1e-6)
            await client.close()
            # a client that does not trust the certificate cannot connect
            with pytest.raises(ConnectionError):
                await PolicyClient.connect(server.url, api_key=KEY, ssl=ssl.create_default_context())

    run_async(scenario())
