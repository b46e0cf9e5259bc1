"""Real redis-server processes of the exporter's tests: the server, its TLS files, its target."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

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


def redis_target(
    name: str, server: RedisServer | int, **redis_options: object
) -> dict[str, object]:
    """A target dict for a server of ours (or just a port), no SSH."""
    port = server if isinstance(server, int) else server.port
    return {"name": name, "redis": {"host": "127.0.0.1", "port": port, **redis_options}}
