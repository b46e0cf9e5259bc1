"""SshHost.follow: `journalctl -f` as a stream over the probe lane of the kept connection."""

from __future__ import annotations

import json

import pytest

from redis_autoheal.commands import IsActive, JournalFollow, Unit
from redis_autoheal.errors import SshError
from redis_autoheal.ssh import SshHost
from testhost.host import TestHost
from tests.hostprocs import still_running
from tests.redis_autoheal.test_ssh import endpoint
from tests.support import hang_guard

pytestmark = pytest.mark.root  # every test here uses a test host

UNIT = Unit("redis-server")
JOURNALCTL = "/usr/bin/python3 /bin/journalctl -u redis-server -f"  # the stand-in, under sudo


@pytest.fixture
async def ssh(test_host: TestHost):
    runner = SshHost(endpoint(test_host, max_sessions=2))
    yield runner
    await runner.close()


async def test_the_stream_shows_the_newest_entry_then_each_transition(test_host, ssh):
    async with hang_guard("the journal's lines"), ssh.follow(JournalFollow(UNIT)) as lines:
        newest = json.loads(await anext(lines))
        assert newest["UNIT"] == "redis-server.service"
        test_host.kill9()
        messages: list[str] = []
        while not any("Failed with result" in m for m in messages):
            messages.append(json.loads(await anext(lines))["MESSAGE"])
        assert "redis-server.service: Main process exited, code=killed, status=9/KILL" in messages
        # The stream holds one of the lane's sessions; a read still gets the other.
        assert (await ssh.run(IsActive(UNIT))).stdout.strip() == "failed"
        assert await still_running(test_host, JOURNALCTL, gone_within=0)
    assert ssh.connections_opened == 1  # the stream and the read share the kept connection
    # Leaving the block gives the session back and ends journalctl on the host (as root,
    # under sudo: the SSH client's KILL does not reach it, its stdout's hangup does).
    assert await still_running(test_host, JOURNALCTL) == []
    assert (await ssh.run(IsActive(UNIT))).ok is False


async def _read_all(ssh: SshHost, unit: Unit) -> None:
    async with hang_guard("the stream"), ssh.follow(JournalFollow(unit)) as lines:
        async for _ in lines:
            pass


async def test_a_journal_sudo_does_not_allow_ends_with_sudos_message(ssh):
    with pytest.raises(SshError, match=r"exit status 1\): sudo: .*password is required"):
        await _read_all(ssh, Unit("other"))


async def _drain(lines) -> None:
    async for _ in lines:
        pass


async def test_a_connection_a_read_finds_dead_ends_the_stream_on_it(test_host):
    # Keepalives would notice only after 3 minutes: the read's retirement must end it.
    ssh = SshHost(endpoint(test_host, keepalive_seconds=60, max_sessions=2))
    try:
        async with ssh.follow(JournalFollow(UNIT)) as lines:
            await anext(lines)
            test_host.blackhole()
            with pytest.raises(SshError, match="no session opened"):
                await ssh.run(IsActive(UNIT))
            async with hang_guard("the stream to end"):
                with pytest.raises(SshError):
                    await _drain(lines)
    finally:
        test_host.unblackhole()
        await ssh.close()
