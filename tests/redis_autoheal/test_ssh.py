"""The SSH runner against the test host: real sshd, real sudo with the runbook's sudoers file,
and the systemd stand-ins driving a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from redis_autoheal.commands import Action, IsActive, Journal, ServiceControl, Status, Unit
from redis_autoheal.config import SshEndpoint
from redis_autoheal.errors import HostKeyError, SshCommandTimeout, SshConnectError, SshError
from redis_autoheal.ssh import CommandResult, Lane, SshHost
from redis_autoheal.sshpool import SshPool
from testhost.host import TestHost
from tests.hostprocs import still_running
from tests.support import HANG, hang_guard, ssh_endpoint

pytestmark = pytest.mark.root  # every test here uses a test host

UNIT = Unit("redis-server")


def endpoint(host: TestHost, **overrides: object) -> SshEndpoint:
    return ssh_endpoint(host, **{"connect_timeout_seconds": 2.0, **overrides})


@pytest.fixture
async def ssh(test_host: TestHost):
    runner = SshHost(endpoint(test_host))
    yield runner
    await runner.close()


async def test_each_whitelisted_command_returns_systemds_exit_code(
    test_host: TestHost, ssh: SshHost
) -> None:
    r = await ssh.run(IsActive(UNIT))
    assert (r.exit_code, r.stdout) == (0, "active\n")
    assert r.line == "systemctl is-active redis-server"
    assert r.duration_seconds > 0
    r = await ssh.run(Status(UNIT))
    assert r.exit_code == 0
    assert "Active: active (running)" in r.stdout

    r = await ssh.run(ServiceControl(Action.STOP, UNIT))
    assert r.exit_code == 0, r.stderr
    assert not test_host.ping()
    r = await ssh.run(IsActive(UNIT))
    assert (r.exit_code, r.stdout) == (3, "inactive\n")
    assert (await ssh.run(Status(UNIT))).exit_code == 3
    r = await ssh.run(ServiceControl(Action.RELOAD, UNIT))
    assert r.exit_code == 1
    assert "not active, cannot reload" in r.stderr

    r = await ssh.run(ServiceControl(Action.START, UNIT))
    assert r.exit_code == 0, r.stderr
    assert test_host.ping()
    pid = test_host.redis_pid()
    assert (await ssh.run(ServiceControl(Action.RELOAD, UNIT))).exit_code == 0
    assert test_host.redis_pid() == pid  # reload keeps the process
    assert (await ssh.run(ServiceControl(Action.RESTART, UNIT))).exit_code == 0
    assert test_host.redis_pid() not in (None, pid)
    assert test_host.ping()

    r = await ssh.run(Journal(UNIT, 5))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 1 <= len(lines) <= 5
    assert any("redis-server" in line for line in lines)

    test_host.kill9()
    test_host.wait_state("failed")
    r = await ssh.run(IsActive(UNIT))
    assert (r.exit_code, r.stdout) == (3, "failed\n")
    assert ssh.connections_opened == 2  # all of it over two: the probe and the action lane


async def test_the_sudo_calls_go_through_the_runbooks_sudoers(test_host: TestHost) -> None:
    """The stand-in records who ran it: the control verbs arrive through sudo from autobot."""
    runner = SshHost(endpoint(test_host))
    try:
        assert (await runner.run(ServiceControl(Action.RESTART, UNIT))).exit_code == 0
    finally:
        await runner.close()
    (call,) = test_host.invocations(["restart"])
    assert (call.uid, call.sudo_user) == (0, "autobot")


async def test_changed_host_key_is_refused(test_host: TestHost) -> None:
    test_host.change_host_key()
    runner = SshHost(endpoint(test_host))
    with pytest.raises(HostKeyError, match="host key not verified"):
        await runner.run(IsActive(UNIT))
    assert runner.connections_opened == 0


async def test_unknown_host_key_is_refused(test_host: TestHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    runner = SshHost(endpoint(test_host, known_hosts=empty))
    with pytest.raises(HostKeyError):
        await runner.run(IsActive(UNIT))


async def test_wrong_key_is_refused(test_host: TestHost, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)
    )
    assert await proc.wait() == 0
    runner = SshHost(endpoint(test_host, key_file=other))
    with pytest.raises(SshConnectError, match="authentication failed"):
        await runner.run(IsActive(UNIT))


@pytest.mark.parametrize("fault", ["blackhole", "link_down"])
async def test_unreachable_host_fails_within_connect_timeout(
    test_host: TestHost, fault: str
) -> None:
    getattr(test_host, fault)()
    runner = SshHost(endpoint(test_host, connect_timeout_seconds=2.0))
    # Without the connect timeout, TCP would retry for about two minutes: longer than the guard.
    async with hang_guard("a connect to an unreachable host"):
        with pytest.raises(SshConnectError) as raised:
            await runner.run(IsActive(UNIT))
    # A blackhole times out (the connect's own bound, or the command's start bound of the same
    # 2 s, whichever fires first); a link down may answer at once (no route to host).
    assert (
        "connect timed out after 2s" in str(raised.value)
        or "not connected within 2s" in str(raised.value)
        or fault == "link_down"
    ), raised.value


async def test_hung_command_is_cut_at_its_timeout_and_frees_its_session(
    test_host: TestHost, ssh: SshHost
) -> None:
    test_host.stop()
    test_host.slow_start(30)
    # More timed-out commands than sshd's MaxSessions (10): each must give its session back.
    for _ in range(12):
        async with hang_guard("a command with a 0.5 s timeout"):
            with pytest.raises(SshCommandTimeout) as cut:
                await ssh.run(ServiceControl(Action.START, UNIT), timeout_seconds=0.5)
        assert str(cut.value).endswith(
            "'sudo -n systemctl start redis-server' cut at timeout after 0.5s (KILL sent)"
        )
        assert (cut.value.seconds, cut.value.killed) == (0.5, True)
    r = await ssh.run(IsActive(UNIT))
    assert r.stdout in ("activating\n", "active\n")
    assert ssh.connections_opened == 2  # one per lane, never dropped for a cut command
    assert await still_running(test_host, "sudo -n systemctl start") == []


async def test_a_command_its_caller_gives_up_on_is_killed_on_the_host(
    test_host: TestHost, ssh: SshHost
) -> None:
    """A caller's own deadline (a probe's budget, a shutdown) cancels a running command: KILL
    is sent all the same, so it does not run on holding a session until the host is done."""
    test_host.stop()
    test_host.slow_start(30)
    start = asyncio.create_task(ssh.run(ServiceControl(Action.START, UNIT), timeout_seconds=60))
    await asyncio.to_thread(test_host.wait_state, "activating")
    assert await still_running(test_host, "sudo -n systemctl start", gone_within=0) != []
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    assert await still_running(test_host, "sudo -n systemctl start") == []


async def test_probes_timing_out_do_not_cut_an_action_in_flight(
    test_host: TestHost, ssh: SshHost
) -> None:
    """Probes whose session cannot open in time (a host under load; here a tiny timeout) drop
    their connection; a restart running meanwhile goes on to its end and is reported."""
    test_host.slow_start(2)
    restart = asyncio.create_task(ssh.run(ServiceControl(Action.RESTART, UNIT)))
    await asyncio.to_thread(test_host.wait_state, "activating")
    probes = await asyncio.gather(
        *(ssh.run(IsActive(UNIT), timeout_seconds=t) for t in [1e-6, 5.0] * 20),
        return_exceptions=True,
    )
    result = await restart
    assert (result.exit_code, result.stderr) == (0, "")
    (call,) = test_host.invocations(["restart"])
    assert (call.exit_code, call.result) == (0, "done")
    assert test_host.unit_state() == "active"
    assert test_host.ping()
    assert all(isinstance(p, CommandResult | SshError) for p in probes), probes
    assert any(isinstance(p, SshConnectError) and "not run" in str(p) for p in probes)


async def test_an_action_does_not_queue_behind_a_flood_of_probes(test_host: TestHost) -> None:
    """One session per lane: 50 probes asked for before the restart still wait for theirs
    when the restart, on its own connection, has finished."""
    runner = SshHost(endpoint(test_host, max_sessions=1))
    try:
        probes = [
            asyncio.create_task(runner.run(IsActive(UNIT), timeout_seconds=120)) for _ in range(50)
        ]
        await asyncio.sleep(0)  # each probe has asked for the one probe session
        result = await runner.run(ServiceControl(Action.RESTART, UNIT))
        waiting = sum(not p.done() for p in probes)
        assert result.exit_code == 0, result.stderr
        assert waiting > 0
        states = {r.stdout for r in await asyncio.gather(*probes)}  # each answered in its turn
        assert states <= {"active\n", "deactivating\n", "inactive\n", "activating\n"}
    finally:
        await runner.close()
    assert [c.exit_code for c in test_host.invocations(["restart"])] == [0]


async def test_fifty_concurrent_commands_share_one_connection(
    test_host: TestHost, ssh: SshHost
) -> None:
    results = await asyncio.gather(*(ssh.run(IsActive(UNIT)) for _ in range(50)))
    assert [r.exit_code for r in results] == [0] * 50
    assert ssh.connections_opened == 1
    accepted = test_host.layout.sshd_log.read_text().count("Accepted publickey")
    assert accepted == 1


def ssh_sessions(host: TestHost) -> list[int]:
    """The pids of sshd's per-connection processes on the host."""
    pids = subprocess.run(
        ["ip", "netns", "pids", host.net.name], capture_output=True, text=True, check=True
    ).stdout.split()
    sessions = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd: autobot"):
                sessions.append(int(pid))
    return sessions


def kill_ssh_sessions(host: TestHost) -> int:
    """Kill sshd's per-connection processes on the host, as a reboot or a network cut would,
    and wait until they are gone."""
    killed = 0
    for pid in ssh_sessions(host):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    deadline = time.monotonic() + HANG
    while ssh_sessions(host):
        assert time.monotonic() < deadline, "sshd's sessions did not die (a hang)"
        time.sleep(0.01)
    return killed


async def wait_closed(ssh: SshHost) -> None:
    """Until the client has seen its connection close."""
    conn = ssh._lanes[Lane.PROBE].conn  # an is-active without a lane is a probe
    assert conn is not None
    async with hang_guard("the client to see its connection close"):
        await conn.wait_closed()


async def test_a_lost_connection_is_reopened(test_host: TestHost, ssh: SshHost) -> None:
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    assert kill_ssh_sessions(test_host) >= 1
    await wait_closed(ssh)
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    assert ssh.connections_opened == 2


async def test_a_connection_that_dies_unnoticed_is_retried_once(
    test_host: TestHost, ssh: SshHost
) -> None:
    """The peer vanished but we have not seen the FIN yet: the session open fails, and the
    command is retried on a new connection, since it never started."""
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    conn = ssh._lanes[Lane.PROBE].conn
    assert conn is not None
    transport = conn._transport
    assert transport is not None
    transport.pause_reading()  # do not notice the close
    assert kill_ssh_sessions(test_host) >= 1  # waits until sshd's side is gone
    transport.resume_reading()
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    assert ssh.connections_opened == 2


async def test_pool_shares_one_host_between_targets(test_host: TestHost) -> None:
    pool = SshPool()
    try:
        a = pool.host(endpoint(test_host))
        b = pool.host(endpoint(test_host))
        assert a is b
        await asyncio.gather(a.run(IsActive(UNIT)), b.run(IsActive(UNIT)))
        assert a.connections_opened == 1
    finally:
        await pool.close()


async def test_a_kept_connection_to_a_silent_host_fails_within_the_limit(
    test_host: TestHost, ssh: SshHost
) -> None:
    """The host vanished behind a kept connection: the next command must not wait for the
    keepalives to give up, and the connection after that is a new one."""
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    test_host.blackhole()
    async with hang_guard("a command on a kept connection to a silent host"):
        with pytest.raises(SshConnectError, match=r"not run: no session opened within 1s"):
            await ssh.run(IsActive(UNIT), timeout_seconds=1.0)
    test_host.unblackhole()
    assert (await ssh.run(IsActive(UNIT))).exit_code == 0
    assert ssh.connections_opened == 2
