"""TargetControl: the whitelist checked once more before anything; the start budget; commands
cut at their timeout (on the real test host)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from redis_autoheal.commands import Action, Journal, ServiceControl, Unit
from redis_autoheal.config import Audit, HealthCheck, SshEndpoint, Target
from redis_autoheal.errors import CommandRejected, SshCommandTimeout, SshError
from redis_autoheal.probe import Prober
from redis_autoheal.ssh import SshHost
from remediator.app import create_app
from remediator.audit import AuditWriter, read_events
from remediator.control import StartBudget, TargetControl
from remediator.keys import CONTROLS, DISPATCHER
from remediator.metrics import Metrics
from remediator.verify import pong_within, unit_state
from tests.hostprocs import still_running
from tests.remediator.conftest import OPERATOR, TOKEN, alert, notification, write_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from testhost import TestHost


async def test_a_tampered_command_is_refused_counted_and_audited(tmp_path: Path) -> None:
    audit = Audit(path=tmp_path / "audit.log")
    writer = AuditWriter(audit)
    writer.open()
    metrics = Metrics(["redis"], lambda _: False)
    endpoint = SshEndpoint(host="127.0.0.1", port=1, connect_timeout_seconds=0.2)
    target, ssh = Target(name="redis", ssh=endpoint), SshHost(endpoint)
    prober = Prober(target, HealthCheck(ping_timeout_seconds=0.1), ssh)
    control = TargetControl(target, ssh, writer, metrics, dry_run=False, prober=prober)
    command = ServiceControl(Action.RESTART, Unit("redis-server"))
    object.__setattr__(command.unit, "name", "redis-server; rm -rf /")
    with pytest.raises(CommandRejected):
        await control.run(command)
    value = metrics.registry.get_sample_value(
        "autoheal_security_violations_total", {"reason": "command_rejected"}
    )
    assert value == 1
    (event,) = read_events(audit)
    assert event["event_type"] == "security_violation"
    assert event["security"]["command_validated"] is False
    await prober.close()
    await writer.close()


async def test_the_start_budget_waits_for_a_free_slot() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    budget = StartBudget(burst=3, interval=11.0, clock=lambda: now[0], sleep=sleep)
    waits, starts = [], []
    for _ in range(7):
        waits.append(await budget.acquire())
        starts.append(now[0])
        now[0] += 0.5
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(9.5)  # until 11 s after the first
    for first in starts:  # never more than 3 in any 11 s
        assert sum(1 for t in starts if first <= t < first + 11.0) <= 3


def ssh_endpoint(host: TestHost, **overrides: Any) -> SshEndpoint:
    values: dict[str, Any] = {
        "host": host.address,
        "port": host.ssh_port,
        "user": host.user,
        "key_file": host.key_file,
        "known_hosts": host.known_hosts,
        **overrides,
    }
    return SshEndpoint(**values)


@contextlib.asynccontextmanager
async def audited(
    tmp_path: Path, ssh: SshHost, names: list[str]
) -> AsyncIterator[tuple[Audit, Metrics, list[TargetControl]]]:
    """A TargetControl per name, all on `ssh`, with a real audit log and metrics."""
    audit = Audit(path=tmp_path / "audit.log")
    writer = AuditWriter(audit)
    writer.open()
    metrics = Metrics(names, lambda _: False)
    health = HealthCheck(ping_timeout_seconds=1.0)
    controls = []
    for name in names:
        target = Target(name=name, ssh=ssh.endpoint)
        prober = Prober(target, health, ssh)
        controls.append(TargetControl(target, ssh, writer, metrics, dry_run=False, prober=prober))
    try:
        yield audit, metrics, controls
    finally:
        await asyncio.gather(*(c.prober.close() for c in controls))
        await ssh.close()
        await writer.close()


async def test_a_command_cut_at_its_timeout_is_audited_as_cut_and_killed(
    test_host: TestHost, tmp_path: Path
) -> None:
    test_host.stop()
    test_host.slow_start(30)
    ssh = SshHost(ssh_endpoint(test_host, control_timeout_seconds=1.0))
    async with audited(tmp_path, ssh, ["redis"]) as (audit, metrics, (control,)):
        with pytest.raises(SshCommandTimeout):
            await control.run(ServiceControl(Action.START, control.unit))
        assert await still_running(test_host, "sudo -n systemctl start") == []
        samples = {"target": "redis", "command": "start", "result": "timeout"}
        assert metrics.registry.get_sample_value("autoheal_ssh_commands_total", samples) == 1
    started, finished = [e for e in read_events(audit) if e["event_type"] == "ssh_command"]
    assert (started["phase"], finished["phase"]) == ("started", "finished")
    assert (finished["result"]["success"], finished["result"]["exit_code"]) == (False, None)
    assert finished["cut_after_seconds"] == 1.0
    assert finished["error"].endswith(
        "'sudo -n systemctl start redis-server' cut at timeout after 1s (KILL sent)"
    )


async def test_a_command_that_waited_for_its_session_is_still_killed_at_its_timeout(
    test_host: TestHost, tmp_path: Path
) -> None:
    """Two targets on one host and one session: the second start waits for it while the first
    runs out its time. Whatever happens to the second (not run, or cut), nothing of it is left
    running on the host: no bound outside the runner may cut it without its KILL."""
    test_host.stop()
    test_host.slow_start(30)
    ssh = SshHost(
        ssh_endpoint(
            test_host, max_sessions=1, control_timeout_seconds=2.0, connect_timeout_seconds=0.5
        )
    )
    async with audited(tmp_path, ssh, ["a", "b"]) as (_, _, (a, b)):
        first = asyncio.create_task(a.run(ServiceControl(Action.START, a.unit)))
        await asyncio.to_thread(test_host.wait_state, "activating")
        second = asyncio.create_task(b.run(ServiceControl(Action.START, b.unit)))
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        assert isinstance(outcomes[0], SshCommandTimeout)
        assert isinstance(outcomes[1], SshError), outcomes[1]
        assert await still_running(test_host, "sudo -n systemctl start") == []


async def test_log_reads_never_delay_the_reads_a_recovery_decides_on(
    test_host: TestHost, tmp_path: Path
) -> None:
    """A flood of /logs (journalctl through the control, as the API runs it) takes the probe
    lane; the `is-active` a recovery or operation decides and verifies on has its own."""
    ssh = SshHost(ssh_endpoint(test_host, max_sessions=1, command_timeout_seconds=120.0))
    async with audited(tmp_path, ssh, ["redis"]) as (_, _, (control,)):
        logs = [asyncio.create_task(control.run(Journal(control.unit, 5))) for _ in range(30)]
        await asyncio.sleep(0)  # each has asked to be audited, so it asks for a session first
        reading = await unit_state(control)
        waiting = sum(not t.done() for t in logs)
        assert reading.state == "active"
        assert waiting > 0
        assert {r.exit_code for r in await asyncio.gather(*logs)} == {0}


async def test_a_recovery_step_cut_at_its_timeout_says_so_and_reads_the_state_again(
    test_host: TestHost,
    tmp_path: Path,
    aiohttp_client: Any,
) -> None:
    target = test_host.target("vm3")
    target["ssh"].update(connect_timeout_seconds=1, control_timeout_seconds=1)
    config = write_config(
        tmp_path,
        {
            "targets": [target],
            "health_check": {"ping_timeout_seconds": 1},
            "auto_recovery": {
                "max_attempts": 2,
                "retry_delay_seconds": 0.2,
                "stable_seconds": 0,
                "transition_timeout_seconds": 10,
            },
        },
    )
    client = await aiohttp_client(create_app(config))
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed")
    test_host.slow_start(3)
    response = await client.post(
        "/webhook",
        json=notification(alert("vm3")),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status == 200, await response.text()
    async with asyncio.timeout(120):
        await client.app[DISPATCHER].wait_idle()
    events = read_events(config.audit)
    commands = [e for e in events if e["event_type"] == "ssh_command"]
    cut = next(i for i, e in enumerate(commands) if e.get("cut_after_seconds") is not None)
    assert (commands[cut]["operation"], commands[cut]["phase"]) == ("restart", "finished")
    assert (commands[cut]["cut_after_seconds"], commands[cut]["result"]["exit_code"]) == (1, None)
    # The next command reads the unit state again; nothing acts on what the cut one left.
    assert (commands[cut + 1]["operation"], commands[cut + 1]["phase"]) == ("is-active", "started")
    (first,) = [
        e
        for e in events
        if e["event_type"] == "auto_recovery" and e["phase"] == "verified" and e["attempt"] == 1
    ]
    assert first["result"]["success"] is False
    assert (
        "'sudo -n systemctl restart redis-server' cut at timeout after 1s (KILL sent)"
        in (first["reason"])
    )


async def test_a_command_cancelled_midway_is_killed_and_its_audit_pair_closed(
    test_host: TestHost, tmp_path: Path
) -> None:
    """A shutdown past its grace cancels the step: the remote command is killed and its
    `ssh_command` started event still gets its finished one, saying it was interrupted."""
    test_host.stop()
    test_host.slow_start(30)
    ssh = SshHost(ssh_endpoint(test_host))
    async with audited(tmp_path, ssh, ["redis"]) as (audit, _, (control,)):
        start = asyncio.create_task(control.run(ServiceControl(Action.START, control.unit)))
        await asyncio.to_thread(test_host.wait_state, "activating")
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start
        assert await still_running(test_host, "sudo -n systemctl start") == []
    started, finished = [e for e in read_events(audit) if e["event_type"] == "ssh_command"]
    assert (started["phase"], finished["phase"]) == ("started", "finished")
    assert finished["result"]["success"] is False
    assert (finished["outcome"], finished["result"]["outcome"]) == ("interrupted", "interrupted")
    assert finished["error"].startswith("interrupted")


@pytest.mark.root
async def test_a_target_has_one_redis_client(
    test_host: TestHost, tmp_path: Path, aiohttp_client: Any
) -> None:
    """The PINGs that verify an action reuse the connections the health check opened."""
    config = write_config(tmp_path, {"targets": [test_host.target("redis")]})
    client = await aiohttp_client(create_app(config))
    response = await client.get("/api/services/redis/health", headers=OPERATOR)
    assert response.status == 200
    opened = await asyncio.to_thread(autoheal_connections, config.targets[0])
    assert opened >= 1
    control = client.app[CONTROLS]["redis"]
    assert (await pong_within(control, 2.0)).ok
    assert await asyncio.to_thread(autoheal_connections, config.targets[0]) == opened


def autoheal_connections(target: Target) -> int:
    """How many connections Redis has from clients named redis-autoheal."""
    endpoint = target.redis
    with redis.Redis(
        host=endpoint.host, port=endpoint.port, password=endpoint.password, socket_timeout=5
    ) as r:
        return sum(c.get("name") == "redis-autoheal" for c in r.client_list())
