"""Fixtures of the exporter's tests: real redis-server processes on loopback ports, configs."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from redis_autoheal.config import Config, load_config
from tests.exporter.redis_servers import RedisServer, wait_ready
from tests.support import free_port, require_binary
from tests.tls import make_tls_files

RedisFactory = Callable[..., RedisServer]


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
        wait_ready(server)
        return server

    yield start
    for s in servers:
        s.kill()


@pytest.fixture
def redis_server(redis_server_factory: RedisFactory) -> RedisServer:
    return redis_server_factory()


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
