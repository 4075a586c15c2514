"""`vla run` over wss:// against a policy server whose certificate a test CA signed.

Everything is real: openssl makes the CA and the server certificate, the server speaks TLS on
a loopback port, and `vla run` verifies it either with the CA file named in vla.yaml
(`policy_server.ca_file`) or through the system's CA store (OpenSSL's SSL_CERT_FILE, which is
how a lab's CA bundle is installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla.builtins import TimedPolicyConfig
from vla.client.ticklog import read_log
from vla.service.metrics import ARM_HEADER
from vla.service.net import server_ssl_context
from vla.testing.policies import TimedPolicy

VLA = str(Path(sys.executable).parent / "vla")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory):
    """A CA, and a certificate for 127.0.0.1 that it signed: (ca.pem, cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("ca")
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "key.pem", "server.csr", "cert.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vla test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(cert))
    return str(ca), str(cert), str(key)


def make_lab(root: Path, extra: str = "") -> Path:
    (root / "arms").mkdir(parents=True)
    (root / "vla.yaml").write_text(
        "log_dir: logs\nclient:\n  connect_timeout_s: 2\n  merge: rtc\narms:\n  arm07: arms/arm07.yaml\n" + extra
    )
    (root / "arms" / "arm07.yaml").write_text("robot: kinematic\nconfig:\n  control_hz: 20\n")
    return root


def vla_run(lab: Path, url: str, env: dict | None = None):
    base = {k: v for k, v in os.environ.items() if k not in ("VLA_API_KEY", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    return subprocess.run(
        [VLA, "run", "--arm", "arm07", "--task", "wave", "--policy-url", url, "--duration", "1.5"],
        capture_output=True, text=True, cwd=lab, timeout=90, env={**base, **(env or {})},
    )


def chunks_in(lab: Path) -> list[dict]:
    log = next((lab / "logs").glob("run_*.jsonl"))
    return [r for r in read_log(log) if r["type"] == "chunk"]


def test_vla_run_over_wss_with_the_ca_file_in_the_lab_config(policy_server, tmp_path, test_ca):
    ca, cert, key = test_ca
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, step=0.001)), ssl=server_ssl_context(cert, key))
    url = f"wss://127.0.0.1:{server.server.port}"

    lab = make_lab(tmp_path / "with-ca", f"policy_server:\n  ca_file: {ca}\n")
    result = vla_run(lab, url)
    assert result.returncode == 0, result.stderr
    assert len(chunks_in(lab)) >= 2  # chunks came back over TLS and drove the arm
    # the client named itself with its arm id: the server counts its requests under arm07
    assert server.server.metrics.value("requests_total", arm="arm07", route="ws", code="ok") >= 2
    assert ARM_HEADER == "X-Vla-Arm"

    # without the CA the certificate is not trusted, and the run says so and fails
    lab = make_lab(tmp_path / "without-ca")
    result = vla_run(lab, url)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate verify failed" in result.stderr


def test_vla_run_over_wss_with_the_system_ca_store(policy_server, tmp_path, test_ca):
    ca, cert, key = test_ca
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, step=0.001)), ssl=server_ssl_context(cert, key))
    lab = make_lab(tmp_path)
    # the lab's CA installed as the system store (OpenSSL reads SSL_CERT_FILE for its default paths)
    result = vla_run(lab, f"wss://127.0.0.1:{server.server.port}", env={"SSL_CERT_FILE": ca})
    assert result.returncode == 0, result.stderr
    assert len(chunks_in(lab)) >= 2
