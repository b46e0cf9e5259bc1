"""Fixtures of the exporter's tests: real redis-server processes on loopback ports, configs."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from redis_autoheal.config import Config, load_config
from tests.conftest import HANG, free_port, require_binary


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


RedisFactory = Callable[..., RedisServer]


def _wait_ready(server: RedisServer) -> None:
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


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """Start redis-servers: `factory(*extra_args, password=None, tls=False, port=None)`."""
    binary = require_binary("redis-server")
    servers: list[RedisServer] = []

    def start(
        *extra: str, password: str | None = None, tls: bool = False, port: int | None = None
    ) -> RedisServer:
        port = port or free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir(exist_ok=True)
        args = [binary, "--save", "", "--appendonly", "no", "--dir", str(workdir)]
        args += ["--bind", "127.0.0.1", "--daemonize", "no", "--loglevel", "warning"]
        files: dict[str, Path] = {}
        if tls:
            files = make_tls_files(tmp_path)
            args += ["--port", "0", "--tls-port", str(port)]
            args += ["--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"])]
            args += ["--tls-ca-cert-file", str(files["ca"])]
        else:
            args += ["--port", str(port)]
        if password is not None:
            args += ["--requirepass", password]
        args += list(extra)
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, cwd=workdir)
        server = RedisServer(port, process, password, files)
        servers.append(server)
        _wait_ready(server)
        return server

    yield start
    for s in servers:
        s.kill()


@pytest.fixture
def redis_server(redis_server_factory: RedisFactory) -> RedisServer:
    return redis_server_factory()


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


@pytest.fixture
def redis_exporter() -> Iterator[str]:
    """Debian's prometheus-redis-exporter on a free port: its base URL."""
    binary = require_binary("prometheus-redis-exporter")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-web.listen-address", f"127.0.0.1:{port}", "-redis-only-metrics"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 20
        while not answers():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("prometheus-redis-exporter did not start serving")
            time.sleep(0.05)
        yield url
    finally:
        process.kill()
        process.wait(10)


ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Write a config file with these targets (dicts as in YAML) and load it the real way."""

    def build(targets: list[dict[str, object]], **health_check: float) -> Config:
        data: dict[str, object] = {"targets": targets}
        if health_check:
            data["health_check"] = health_check
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return load_config(path)

    return build


def redis_target(
    name: str, server: RedisServer | int, **redis_options: object
) -> dict[str, object]:
    """A target dict for a server of ours (or just a port), no SSH."""
    port = server if isinstance(server, int) else server.port
    return {"name": name, "redis": {"host": "127.0.0.1", "port": port, **redis_options}}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def values_with(samples: Samples, metric: str, /, **labels: str) -> list[float]:
    """The values of `metric`'s samples whose labels include these (others may be there too)."""
    wanted = set(labels.items())
    return [v for (n, pairs), v in samples.items() if n == metric and wanted <= set(pairs)]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}
