"""Real redis-server processes of the exporter's tests: the server, its TLS files, its target."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import HANG


@dataclass
class RedisServer:
    """A redis-server of our own on 127.0.0.1; stopped and removed after the test."""

    port: int
    process: subprocess.Popen[bytes]
    password: str | None = None
    tls: dict[str, Path] = field(default_factory=dict)

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain (synchronous) client to act on the server from a test."""
        options: dict[str, object] = {"port": self.port, "password": self.password}
        if self.tls:
            options |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls["ca"]),
                "ssl_certfile": str(self.tls["cert"]),
                "ssl_keyfile": str(self.tls["key"]),
            }
        return redis.Redis(**(options | kwargs))  # type: ignore[arg-type]

    def stop_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(10)


def wait_ready(server: RedisServer) -> None:
    deadline = time.monotonic() + HANG
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.process.returncode}")
        try:
            with server.client(socket_timeout=1) as c:
                c.ping()
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        except redis.AuthenticationError:
            return  # answering: the test set a password it will use itself
        else:
            return


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A CA and a certificate for 127.0.0.1/localhost signed by it (server and client)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"tls-{name}.pem" for name in ("ca", "cert", "key", "ca-key")}
    if paths["cert"].exists():
        return paths
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis-autoheal test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths["ca"].write_bytes(ca.public_bytes(pem))
    paths["cert"].write_bytes(cert.public_bytes(pem))
    for name, k in (("key", key), ("ca-key", ca_key)):
        paths[name].write_bytes(
            k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        paths[name].chmod(0o600)
    return paths


def redis_target(
    name: str, server: RedisServer | int, **redis_options: object
) -> dict[str, object]:
    """A target dict for a server of ours (or just a port), no SSH."""
    port = server if isinstance(server, int) else server.port
    return {"name": name, "redis": {"host": "127.0.0.1", "port": port, **redis_options}}
