"""The SSH runner refuses anything outside the whitelist before any network I/O."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_autoheal.commands import IsActive, Unit
from redis_autoheal.config import SshEndpoint
from redis_autoheal.errors import CommandRejected
from redis_autoheal.ssh import SshHost


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anything connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize(
    "command",
    [
        "systemctl is-active redis-server",
        ("systemctl", "is-active", "redis-server"),
        None,
        42,
    ],
)
async def test_non_commands_never_reach_the_network(
    listener: socket.socket, tmp_path: Path, command: object
) -> None:
    host = SshHost(
        SshEndpoint(
            host="127.0.0.1",
            port=listener.getsockname()[1],
            key_file=tmp_path / "key",
            known_hosts=tmp_path / "known_hosts",
        )
    )
    with pytest.raises(CommandRejected):
        await host.run(command)  # type: ignore[arg-type]
    await host.close()  # nothing the host started is left running to connect later
    assert not connected(listener)
    assert host.connections_opened == 0


async def test_tampered_command_never_reaches_the_network(
    listener: socket.socket, tmp_path: Path
) -> None:
    host = SshHost(SshEndpoint(port=listener.getsockname()[1], key_file=tmp_path / "k"))
    cmd = IsActive(Unit("redis-server"))
    object.__setattr__(cmd.unit, "name", "redis-server; reboot")
    with pytest.raises(CommandRejected):
        await host.run(cmd)
    await host.close()
    assert not connected(listener)
