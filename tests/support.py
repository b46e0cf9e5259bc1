"""Helpers every test directory uses: binaries and root required, a free port, the hang guard.

What is missing skips with the reason, or fails under CI (testhost.pytest_plugin's policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from redis_autoheal.config import SshEndpoint
from testhost.pytest_plugin import missing, require_root, under_ci

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from testhost.host import TestHost

__all__ = [
    "HANG",
    "REPO",
    "free_port",
    "hang_guard",
    "install_steps",
    "missing",
    "require_binary",
    "require_root",
    "service_argv",
    "ssh_endpoint",
    "under_ci",
]

REPO = Path(__file__).resolve().parents[1]
# Seconds after which a test's wait counts as a hang. Only a guard: nothing here measures
# speed (bench/ does); a test that needs a wrong behaviour to be slow makes it much slower.
HANG = 60.0


def require_binary(name: str) -> str:
    """Return the path of a binary from Debian's packages; skip (or fail under CI) if absent."""
    path = shutil.which(name)
    if path is None:
        missing(f"needs {name}: run scripts/setup.sh to install it")
        raise AssertionError  # unreachable: missing() raised
    return path


@contextlib.asynccontextmanager
async def hang_guard(what: str, seconds: float = HANG) -> AsyncIterator[None]:
    """Fail, naming `what`, if the block has not ended after `seconds`: a hang, not slowness."""
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            pytest.fail(f"{what}: still running after {seconds:g}s, a hang")
        raise


def ssh_endpoint(host: TestHost, **overrides: Any) -> SshEndpoint:
    """The SSH endpoint of a test host, as the config would give it."""
    values: dict[str, Any] = {
        "host": host.address,
        "port": host.ssh_port,
        "user": host.user,
        "key_file": host.key_file,
        "known_hosts": host.known_hosts,
        **overrides,
    }
    return SshEndpoint(**values)


def service_argv(service: str, config: Path | str, listen: str) -> list[str]:
    """`python -m SERVICE --config CONFIG --listen LISTEN`, with this interpreter."""
    return [sys.executable, "-m", service, "--config", str(config), "--listen", listen]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def install_steps(printed: str) -> dict[int, str]:
    """The shell lines of each numbered step `redis-autoheal init` printed for the (one) host."""
    found: dict[int, str] = {}
    number = 0
    for line in printed.split("\nOn ", 1)[1].splitlines()[1:]:
        if line.startswith("# ") and line[2:3].isdigit():
            number = int(line[2])
            found[number] = ""
        elif number:
            found[number] += line + "\n"
    return found
