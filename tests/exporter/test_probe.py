"""The layers of one target: results and reasons, deadlines, AUTH/ACL/TLS, kept connections."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import signal
import socket
import ssl
import time

import pytest

from exporter import scrape as scrape_module
from exporter.probe import TargetProber
from redis_autoheal.commands import IsActive, Unit
from redis_autoheal.errors import (
    HostKeyError,
    RedisAuthError,
    RedisConnectionError,
    RedisLoadingError,
    RedisPermissionError,
    RedisProtocolError,
    RedisReplyError,
    SshAuthError,
    SshCommandTimeout,
    SshConnectError,
    SshError,
)
from redis_autoheal.probe import (
    LAYER_REASONS,
    PROBE_CONNECTIONS,
    Layer,
    PerformanceResult,
    Prober,
    Reason,
    redis_reason,
    ssh_reason,
)
from redis_autoheal.ssh import CommandResult
from tests.exporter.redis_servers import redis_target
from tests.support import HANG, free_port, hang_guard
from tests.tls import make_tls_files

C, S, P = Layer.CONNECTIVITY, Layer.SYSTEMD, Layer.PERFORMANCE
PROBE_ACL = ["+ping", "+info", "+client|setname"]  # as documented in redis_autoheal/probe.py


@pytest.fixture
async def prober_for(make_config):
    """prober_for(target_dict, **health_check) -> a TargetProber, closed after the test."""
    made = []

    def make(target, ssh=None, **health):
        config = make_config([target], **health)
        p = TargetProber(config.targets[0], config.health_check, ssh)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()


def _connections_received(server) -> int:
    with server.client() as c:
        return int(c.info("stats")["total_connections_received"])


async def test_a_healthy_target_passes_connectivity_and_performance(prober_for, redis_server):
    p = prober_for(redis_target("redis", redis_server))
    started = time.monotonic()
    conn, perf = await p.probe((C, P), None)
    elapsed = time.monotonic() - started
    assert conn.success
    assert conn.reason is None
    assert 0 < conn.latency_seconds <= elapsed  # in seconds, and part of the probe's time
    assert perf.success
    assert perf.info["role"] == "master"
    assert perf.maxclients == "10000"


async def test_connections_are_kept_and_reused_across_probes(prober_for, redis_server):
    p = prober_for(redis_target("redis", redis_server))
    await p.probe((C, P), None)
    before = _connections_received(redis_server)
    for _ in range(20):
        assert all(r.success for r in await p.probe((C, P), None))
    # Only the test's own INFO connection is new: the prober opened none.
    assert _connections_received(redis_server) - before == 1


async def test_refused_answers_at_once(prober_for):
    # Layer timeouts longer than the hang guard: a refusal that waited for them would fail.
    long = 2 * HANG
    p = prober_for(
        redis_target("down", free_port()),
        ping_timeout_seconds=long,
        performance_timeout_seconds=long,
    )
    async with hang_guard("a refused probe"):
        conn, perf = await p.probe((C, P), None)
    assert (conn.success, conn.reason) == (False, Reason.REFUSED)
    assert (perf.success, perf.reason) == (False, Reason.REFUSED)
    assert "Connection refused" in conn.message or "111" in conn.message
    assert "\n" not in conn.message


async def test_a_hung_server_times_out_within_the_layer_timeout(prober_for, redis_server):
    p = prober_for(
        redis_target("redis", redis_server), ping_timeout_seconds=1, performance_timeout_seconds=2
    )
    assert all(r.success for r in await p.probe((C, P), None))  # a connection is open
    redis_server.stop_signal(signal.SIGSTOP)
    try:
        async with hang_guard("a probe of a hung server"):
            conn, perf = await p.probe((C, P), None)
    finally:
        redis_server.stop_signal(signal.SIGCONT)
    assert (conn.reason, perf.reason) == (Reason.TIMEOUT, Reason.TIMEOUT)
    assert conn.message == "no answer within 1s"
    assert perf.message == "no answer within 2s"
    # Each layer waited its own timeout (a timeout cannot come early; load can only delay it).
    assert conn.duration_seconds >= 0.9
    assert perf.duration_seconds >= 1.9
    # After SIGCONT the cut connections are replaced and the target is healthy again.
    assert all(r.success for r in await p.probe((C, P), None))


async def test_a_budget_shorter_than_the_layer_timeout_wins(prober_for, redis_server):
    p = prober_for(redis_target("redis", redis_server), ping_timeout_seconds=2 * HANG)
    redis_server.stop_signal(signal.SIGSTOP)
    try:
        async with hang_guard("a probe with a 0.3 s budget"):
            result = await p.probe_layer(C, 0.3)
    finally:
        redis_server.stop_signal(signal.SIGCONT)
    assert result.reason is Reason.TIMEOUT
    assert result.message == "no answer within 0.3s"


async def test_a_target_that_comes_back_is_probed_again(prober_for, redis_server_factory):
    server = redis_server_factory()
    p = prober_for(redis_target("redis", server))
    assert all(r.success for r in await p.probe((C, P), None))
    server.kill()
    # The kept connections are dead: each layer finds out, tries a new one, and says why.
    conn, perf = await p.probe((C, P), None)
    assert (conn.reason, perf.reason) == (Reason.REFUSED, Reason.REFUSED)
    redis_server_factory(port=server.port)
    assert all(r.success for r in await p.probe((C, P), None))


async def test_a_restart_between_probes_is_not_seen_as_down(prober_for, redis_server_factory):
    server = redis_server_factory()
    p = prober_for(redis_target("redis", server))
    assert all(r.success for r in await p.probe((C, P), None))
    before = _connections_received(server)
    server.kill()
    restarted = redis_server_factory(port=server.port)
    assert all(r.success for r in await p.probe((C, P), None))
    assert _connections_received(restarted) >= 2  # new connections, not the closed ones
    assert before > 0


async def test_a_connection_closed_by_the_idle_timeout_is_replaced(prober_for, redis_server):
    p = prober_for(redis_target("redis", redis_server))
    assert all(r.success for r in await p.probe((C, P), None))
    with redis_server.client() as c:
        c.client_kill_filter(_type="normal", skipme=True)  # as Redis's `timeout` would
    assert all(r.success for r in await p.probe((C, P), None))


async def test_requirepass_from_password_file(prober_for, redis_server_factory, tmp_path):
    server = redis_server_factory(password="s3cret")
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "pw").chmod(0o600)  # a password file is its owner's only
    (tmp_path / "wrong").write_text("nope\n")
    (tmp_path / "wrong").chmod(0o600)
    good = prober_for(redis_target("redis", server, password_file=str(tmp_path / "pw")))
    assert all(r.success for r in await good.probe((C, P), None))
    wrong = prober_for(redis_target("redis", server, password_file=str(tmp_path / "wrong")))
    conn, perf = await wrong.probe((C, P), None)
    assert (conn.reason, perf.reason) == (Reason.AUTH, Reason.AUTH)
    assert "WRONGPASS" in conn.message or "invalid" in conn.message
    missing = prober_for(redis_target("redis", server))
    assert (await missing.probe_layer(C, None)).reason is Reason.AUTH


async def test_an_acl_user(prober_for, redis_server, tmp_path):
    with redis_server.client() as c:
        # The least a probe needs; CONFIG GET only for a Redis older than 7.
        c.acl_setuser("probe", enabled=True, passwords=["+probe-pw"], commands=PROBE_ACL)
        c.acl_setuser(
            "pinger", enabled=True, passwords=["+ping-pw"], commands=["+ping", "+client|setname"]
        )
    (tmp_path / "probe").write_text("probe-pw")
    (tmp_path / "probe").chmod(0o600)
    (tmp_path / "pinger").write_text("ping-pw")
    (tmp_path / "pinger").chmod(0o600)
    p = prober_for(
        redis_target("redis", redis_server, username="probe", password_file=str(tmp_path / "probe"))
    )
    assert all(r.success for r in await p.probe((C, P), None))
    limited = prober_for(
        redis_target(
            "redis", redis_server, username="pinger", password_file=str(tmp_path / "pinger")
        )
    )
    conn, perf = await limited.probe((C, P), None)
    assert conn.success
    assert perf.reason is Reason.PERMISSION
    unknown = prober_for(
        redis_target(
            "redis", redis_server, username="nobody", password_file=str(tmp_path / "probe")
        )
    )
    assert (await unknown.probe_layer(C, None)).reason is Reason.AUTH


async def test_tls(prober_for, redis_server_factory, tmp_path):
    server = redis_server_factory(tls=True)
    files = server.tls
    tls = {
        "tls": True,
        "tls_ca_file": str(files["ca"]),
        "tls_cert_file": str(files["cert"]),
        "tls_key_file": str(files["key"]),
    }
    p = prober_for(redis_target("redis", server, **tls))
    assert all(r.success for r in await p.probe((C, P), None))
    other_ca = make_tls_files(tmp_path / "other")
    untrusted = prober_for(
        redis_target("redis", server, **tls | {"tls_ca_file": str(other_ca["ca"])})
    )
    result = await untrusted.probe_layer(C, None)
    assert result.reason is Reason.TLS
    assert "certificate" in result.message.lower()


async def test_maxclients_from_config_get_when_info_lacks_it(prober_for, redis_server, monkeypatch):
    real_info = scrape_module.LazyInfo

    def info_of_redis_6(text):  # INFO of a Redis older than 7 has no maxclients
        return real_info(re.sub(r"\r\nmaxclients:[0-9]+", "", text))

    monkeypatch.setattr(scrape_module, "LazyInfo", info_of_redis_6)
    p = prober_for(redis_target("redis", redis_server))
    assert (await p.probe_layer(P, None)).maxclients == "10000"
    with redis_server.client() as c:
        c.config_set("maxclients", 500)
    assert (await p.probe_layer(P, None)).maxclients == "10000"  # cached a while
    p._scraper._config = (time.monotonic() - 61, {"maxclients": "10000"})
    assert (await p.probe_layer(P, None)).maxclients == "500"


async def test_maxclients_left_out_when_config_get_is_refused(
    prober_for, redis_server, monkeypatch, tmp_path
):
    real_info = scrape_module.LazyInfo

    def info_of_redis_6(text):  # INFO of a Redis older than 7 has no maxclients
        return real_info(re.sub(r"\r\nmaxclients:[0-9]+", "", text))

    monkeypatch.setattr(scrape_module, "LazyInfo", info_of_redis_6)
    with redis_server.client() as c:
        c.acl_setuser("probe", enabled=True, passwords=["+pw"], commands=PROBE_ACL)
    (tmp_path / "pw").write_text("pw")
    (tmp_path / "pw").chmod(0o600)
    p = prober_for(
        redis_target("redis", redis_server, username="probe", password_file=str(tmp_path / "pw"))
    )
    result = await p.probe_layer(P, None)
    assert result.success
    assert result.maxclients is None


async def test_max_clients_reached(prober_for, redis_server):
    with redis_server.client() as c:
        c.config_set("maxclients", 1)
        p = prober_for(redis_target("redis", redis_server))
        result = await p.probe_layer(C, None)
        c.config_set("maxclients", 10000)
    assert result.reason is Reason.MAX_CLIENTS


async def test_an_unexpected_error_is_a_failed_probe_and_logged(
    prober_for, redis_server, monkeypatch, caplog
):
    def broken(text):
        raise KeyError("bug")

    monkeypatch.setattr(scrape_module, "LazyInfo", broken)
    p = prober_for(redis_target("redis", redis_server))
    result = await p.probe_layer(P, None)
    assert (result.success, result.reason) == (False, Reason.ERROR)
    assert "performance probe failed unexpectedly" in caplog.text


async def test_failures_are_logged_when_they_start_change_and_end(
    prober_for, redis_server_factory, caplog
):
    server = redis_server_factory()
    p = prober_for(redis_target("redis", server))
    caplog.set_level("INFO", logger="redis_autoheal.probe")
    await p.probe_layer(C, None)
    server.kill()
    for _ in range(3):
        await p.probe_layer(C, None)
    redis_server_factory(port=server.port)
    await p.probe_layer(C, None)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connectivity probe failed (refused)" in m for m in messages) == 1
    assert any("target=redis connectivity probe succeeds again" in m for m in messages)


async def test_the_shared_prober_reads_info_for_the_remediator(make_config, redis_server):
    config = make_config([redis_target("redis", redis_server)])
    p = Prober(config.targets[0], config.health_check, None)
    try:
        conn, perf = await p.probe((C, P), None)
    finally:
        await p.close()
    assert conn.success
    assert perf.success
    assert type(perf) is PerformanceResult  # INFO alone, not the exporter's scrape
    assert (perf.info["role"], perf.maxclients) == ("master", "10000")


async def test_a_ping_to_verify_an_action_is_not_logged(make_config, caplog):
    config = make_config([redis_target("down", free_port())])
    p = Prober(config.targets[0], config.health_check, None)
    caplog.set_level("INFO", logger="redis_autoheal.probe")
    try:
        result = await p.ping(1.0)
        assert (result.success, result.reason) == (False, Reason.REFUSED)
        assert caplog.records == []  # a caller waiting for a stop expects refusals
        await p.probe_layer(C, None)
        assert len(caplog.records) == 1  # a probe's failure is logged
    finally:
        await p.close()


class HeldInfoRedis:
    """A stand-in Redis server: PING answers at once, INFO only once `release` is set."""

    def __init__(self):
        self.release = asyncio.Event()
        self.held = asyncio.Condition()
        self.infos_waiting = 0
        self.serving = 0  # connections not yet closed
        self.all_closed = asyncio.Event()

    async def serve(self, reader, writer):
        self.serving += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                count = int((await reader.readline())[1:])
                words = []
                for _ in range(count):
                    size = int((await reader.readline())[1:])
                    words.append((await reader.readexactly(size + 2))[:-2].upper())
                if words[0] == b"PING":
                    writer.write(b"+PONG\r\n")
                elif words[0] == b"INFO":
                    async with self.held:
                        self.infos_waiting += 1
                        self.held.notify_all()
                    await self.release.wait()
                    body = b"redis_version:7.2.0\r\nmaxclients:10000\r\n"
                    writer.write(b"$%d\r\n%s\r\n" % (len(body), body))
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.serving -= 1
        if not self.serving:
            self.all_closed.set()


async def test_pings_kept_for_verification_never_wait_behind_probes(make_config):
    """The remediator's PINGs that verify an action have connections of their own: probes that
    hold every connection they may take (PROBE_CONNECTIONS INFOs waiting) do not delay them."""
    fake = HeldInfoRedis()
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = make_config([redis_target("held", port)], performance_timeout_seconds=HANG)
    p = Prober(config.targets[0], config.health_check, None, ping_connections=1)
    probes = [asyncio.ensure_future(p.probe_layer(P, None)) for _ in range(5)]
    try:
        async with hang_guard("INFOs held"), fake.held:
            await fake.held.wait_for(lambda: fake.infos_waiting == PROBE_CONNECTIONS)
        result = await p.ping(1.0)
        assert (result.success, result.reason) == (True, None)
        assert fake.infos_waiting == PROBE_CONNECTIONS  # the others wait for a slot
    finally:
        fake.release.set()
        results = await asyncio.gather(*probes)
        await p.close()
        async with hang_guard("the stand-in's connections closed"):
            await fake.all_closed.wait()
        server.close()
        await server.wait_closed()
    assert all(r.success for r in results)


# ---- the systemd layer's logic, with a stand-in for the SSH host (real SSH: test_testhost) ----


class FakeSshHost:
    """Answers `run` with a fixed result or error, like redis_autoheal.ssh.SshHost."""

    def __init__(self, stdout="", exit_code=0, stderr="", error=None, delay=0.0):
        self.stdout, self.exit_code, self.stderr = stdout, exit_code, stderr
        self.error, self.delay = error, delay
        self.calls = []

    async def run(self, command, *, timeout_seconds=None):
        self.calls.append((command, timeout_seconds))
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return CommandResult(
            command,
            "systemctl is-active redis-server",
            self.exit_code,
            self.stdout,
            self.stderr,
            0.01,
        )


@pytest.mark.parametrize(
    ("stdout", "exit_code", "success"),
    [
        ("active\n", 0, True),
        ("reloading\n", 0, True),
        ("inactive\n", 3, False),
        ("failed\n", 3, False),
        ("activating\n", 3, False),
        ("deactivating\n", 3, False),
    ],
)
async def test_systemd_states(prober_for, stdout, exit_code, success):
    ssh = FakeSshHost(stdout, exit_code)
    p = prober_for(redis_target("redis", 1), ssh=ssh, systemd_timeout_seconds=7)
    result = await p.probe_layer(S, None)
    assert (result.success, result.ssh_up, result.state) == (success, True, stdout.strip())
    assert result.reason is None
    assert result.unit == "redis-server"
    ((command, timeout),) = ssh.calls
    assert command == IsActive(Unit("redis-server"))
    assert timeout == 7


async def test_systemd_unknown_state(prober_for):
    p = prober_for(redis_target("redis", 1), ssh=FakeSshHost("maintenance\n", 3))
    result = await p.probe_layer(S, None)
    assert (result.success, result.ssh_up, result.state) == (False, True, "unknown")
    assert result.reason is Reason.UNKNOWN_STATE
    assert "maintenance" in result.message


async def test_systemctl_printing_nothing_is_a_failed_command(prober_for):
    ssh = FakeSshHost("", 127, "bash: systemctl: command not found\n")
    p = prober_for(redis_target("redis", 1), ssh=ssh)
    result = await p.probe_layer(S, None)
    assert (result.success, result.ssh_up, result.state) == (False, True, None)
    assert result.reason is Reason.COMMAND_FAILED
    assert "exited 127" in result.message
    assert "command not found" in result.message


async def test_no_ssh_section_reports_ssh_down(prober_for):
    p = prober_for(redis_target("redis", 1))
    result = await p.probe_layer(S, None)
    assert (result.success, result.ssh_up, result.state) == (False, False, None)
    assert result.reason is Reason.SSH_NOT_CONFIGURED


async def test_ssh_errors_are_failed_probes(prober_for):
    error = HostKeyError("autobot@198.18.0.2:22", "host key not verified")
    p = prober_for(redis_target("redis", 1), ssh=FakeSshHost(error=error))
    result = await p.probe_layer(S, None)
    assert (result.success, result.ssh_up, result.reason) == (False, False, Reason.HOST_KEY)
    assert result.message == "autobot@198.18.0.2:22: host key not verified"


async def test_a_hung_ssh_command_times_out_within_the_layer(prober_for):
    ssh = FakeSshHost(delay=2 * HANG)
    p = prober_for(redis_target("redis", 1), ssh=ssh, systemd_timeout_seconds=0.5)
    async with hang_guard("a probe of a hung SSH command"):
        result = await p.probe_layer(S, None)
    assert (result.ssh_up, result.reason) == (False, Reason.TIMEOUT)


# ---- classification of errors into the fixed set of reasons ----


def _raised_from(outer, inner):
    """`outer` as raised while handling `inner`, the way resp.py and ssh.py raise."""
    try:
        try:
            raise inner
        except type(inner):
            raise outer from None
    except type(outer) as e:
        return e


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RedisAuthError("WRONGPASS"), Reason.AUTH),
        (RedisPermissionError("NOPERM"), Reason.PERMISSION),
        (RedisLoadingError("LOADING"), Reason.LOADING),
        (_raised_from(RedisConnectionError("x"), TimeoutError()), Reason.TIMEOUT),
        (
            _raised_from(RedisConnectionError("x"), ConnectionRefusedError(111, "r")),
            Reason.REFUSED,
        ),
        (
            _raised_from(RedisConnectionError("x"), ssl.SSLCertVerificationError("v")),
            Reason.TLS,
        ),
        (
            _raised_from(RedisConnectionError("x"), socket.gaierror(-2, "n")),
            Reason.UNREACHABLE,
        ),
        (
            _raised_from(RedisConnectionError("x"), OSError(errno.EHOSTUNREACH, "h")),
            Reason.UNREACHABLE,
        ),
        (
            _raised_from(RedisConnectionError("x"), ConnectionResetError(104, "r")),
            Reason.CONNECTION_LOST,
        ),
        (RedisConnectionError("Connection closed by server."), Reason.CONNECTION_LOST),
        (RedisConnectionError("max number of clients reached"), Reason.MAX_CLIENTS),
        (RedisReplyError("ERR unknown command"), Reason.PROTOCOL),
        (RedisProtocolError("Protocol error"), Reason.PROTOCOL),
        (ValueError("a bug"), Reason.ERROR),
    ],
)
def test_redis_reasons(error, reason):
    assert redis_reason(error) is reason
    assert reason in LAYER_REASONS[C]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (HostKeyError("h", "changed"), Reason.HOST_KEY),
        (SshCommandTimeout("h", "systemctl is-active x", 1.0, killed=True), Reason.TIMEOUT),
        (SshError("h", "connection lost"), Reason.SSH_ERROR),
        (
            SshAuthError("h", "authentication failed: Permission denied"),
            Reason.SSH_AUTH,
        ),
        (_raised_from(SshConnectError("h", "timed out"), TimeoutError()), Reason.SSH_TIMEOUT),
        (
            _raised_from(SshConnectError("h", "refused"), ConnectionRefusedError(111, "r")),
            Reason.SSH_REFUSED,
        ),
        (
            _raised_from(SshConnectError("h", "x"), OSError(errno.ENETUNREACH, "n")),
            Reason.SSH_UNREACHABLE,
        ),
        (_raised_from(SshConnectError("h", "x"), socket.gaierror(-2, "n")), Reason.SSH_UNREACHABLE),
        (SshConnectError("h", "the server refused a session"), Reason.SSH_ERROR),
    ],
)
def test_ssh_reasons(error, reason):
    assert ssh_reason(error) is reason
    assert reason in LAYER_REASONS[S]
