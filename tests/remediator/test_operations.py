"""The operator API against the real test host: each manual operation does what it says and is
audited; the whole who-may-do-what matrix with real effects; one operation per target at a
time; logs; failures and an unwritable audit log.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.breaker import BreakerStore
from remediator.keys import (
    CONFIG,
    CONTROLS,
    DISPATCHER,
    METRICS,
    OPERATIONS,
    VIOLATIONS,
)
from remediator.recovery import Outcome
from testhost.host import TestHost
from tests.remediator.apidoc import call
from tests.remediator.configs import ADMIN, OPERATOR, TOKEN, write_config
from tests.remediator.matrix import ENDPOINTS, IDENTITIES, expected, violation_reason
from tests.remediator.notifications import alert, notification
from tests.support import hang_guard

pytestmark = pytest.mark.root
WEBHOOK = {"Authorization": f"Bearer {TOKEN}"}


def host_config(tmp_path: Path, host: TestHost, **sections: Any) -> Config:
    target = host.target("redis")
    target["ssh"].update(connect_timeout_seconds=1, command_timeout_seconds=3)
    data: dict[str, Any] = {
        "targets": [target],
        "health_check": {"ping_timeout_seconds": 2},
        "auto_recovery": {"retry_delay_seconds": 0.2, "stable_seconds": 0.3},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return write_config(tmp_path, data)


@pytest.fixture
async def client(aiohttp_client: Any, test_host: TestHost, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(host_config(tmp_path, test_host)))


def verbs(host: TestHost) -> list[str]:
    return [i.verb for i in host.invocations()]


def commands(config: Config) -> list[tuple[str, str]]:
    return [
        (e["operation"], e["phase"])
        for e in read_events(config.audit)
        if e["event_type"] == "ssh_command"
    ]


async def test_the_whole_matrix_with_real_effects(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    """Every identity against every endpoint: exactly 401, 403 or 200, and a refused call runs
    nothing on the host and leaves a security_violation event."""
    config = client.app[CONFIG]
    budget = client.app[CONTROLS]["redis"].start_budget  # as shipped: 3 starts in 11 s
    for method, endpoint in ENDPOINTS:  # ends with stop, then the reset of its breaker
        for who, headers in IDENTITIES.items():
            if endpoint in ("start", "restart"):  # a slot, or the 4th start is refused (429)
                await asyncio.sleep(budget.free_in())
            ran_before, commands_before = verbs(test_host), commands(config)
            events_before = len(read_events(config.audit))
            pending_before = client.app[VIOLATIONS].pending
            status, body = await call(client, method, endpoint, headers)
            assert status == expected(endpoint, who, 200), (endpoint, who, body)
            reason = violation_reason(who, status)
            if reason is None:
                continue
            assert verbs(test_host) == ran_before
            assert commands(config) == commands_before
            new = read_events(config.audit)[events_before:]
            # In full, or (no valid token, not the source's first) counted for its summary.
            counted = client.app[VIOLATIONS].pending - pending_before
            audited = [(e["event_type"], e["reason"]) for e in new]
            assert audited == [("security_violation", reason)] * (1 - counted)
            assert counted == 0 or reason != "forbidden_role"
    # A start of an active unit changes nothing and succeeds; stop is the admin's only.
    assert verbs(test_host) == ["start", "start", "stop", "restart", "restart", "reload", "reload"]


async def test_each_operation_does_what_it_says_and_is_audited(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    config = client.app[CONFIG]
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)

    status, body = await call(client, "POST", "stop", ADMIN)
    assert status == 200, body
    assert (body["success"], body["unit_state_after"], body["risk_level"]) == (
        True,
        "inactive",
        "high",
    )
    assert test_host.unit_state() == "inactive"
    assert not test_host.ping(timeout=0.3)
    assert body["circuit_breaker_opened"] is True
    assert store.is_open("redis")
    # The alert that follows does not undo the stop: auto-recovery is off.
    response = await client.post(
        "/webhook", json=notification(alert("redis", name="RedisServiceInactive")), headers=WEBHOOK
    )
    assert (await response.json())["alerts"][0]["disposition"] == "suppressed_circuit_open"

    status, body = await call(client, "POST", "start", OPERATOR)
    assert status == 200, body
    assert (body["unit_state_before"], body["unit_state_after"], body["risk_level"]) == (
        "inactive",
        "active",
        "low",
    )
    assert test_host.ping()
    assert store.is_open("redis")  # a start is not a reset: that is an admin's decision

    pid = test_host.redis_pid()
    status, body = await call(client, "POST", "restart", OPERATOR)
    assert status == 200, body
    assert body["risk_level"] == "moderate"
    assert test_host.redis_pid() not in (None, pid)
    assert test_host.ping()

    pid = test_host.redis_pid()
    status, body = await call(client, "POST", "reload", OPERATOR)
    assert status == 200, body
    assert body["risk_level"] == "low"
    assert test_host.redis_pid() == pid  # a reload keeps the process
    assert verbs(test_host) == ["stop", "start", "restart", "reload"]
    assert all(i.sudo_user == "autobot" for i in test_host.invocations())

    assert_audited(read_events(config.audit))
    metrics = client.app[METRICS].registry
    for op in ("stop", "start", "restart", "reload"):
        labels = {"target": "redis", "operation": op, "result": "success"}
        assert metrics.get_sample_value("autoheal_operations_total", labels) == 1


def assert_audited(events: list[dict[str, Any]]) -> None:
    """stop by the admin, then start, restart, reload by the operator, each in full."""
    ops = [e for e in events if e["event_type"] == "service_operation"]
    assert [(e["operation"], e["phase"]) for e in ops] == [
        (op, phase)
        for op in ("stop", "start", "restart", "reload")
        for phase in ("started", "finished")
    ]
    for started, finished in zip(ops[::2], ops[1::2], strict=True):
        assert started["result"]["success"] is None
        assert finished["result"]["success"] is True
        assert finished["result"]["exit_code"] == 0
        assert finished["result"]["duration_seconds"] > 0
        assert finished["source_ip"] == "127.0.0.1"
        assert finished["security"]["command_validated"] is True
        assert finished["security"]["ssh_key_used"] is True
        assert finished["operation_id"] == started["operation_id"]
    assert ops[1]["user"] == {"id": "user-123", "email": "admin@autobot.local", "role": "admin"}
    assert ops[3]["user"]["id"] == "user-456"
    assert [e["security"]["risk_level"] for e in ops[1::2]] == ["high", "low", "moderate", "low"]
    # The command itself, attributed to the person, between the operation's two events.
    stop_cmd = [e for e in events if e["event_type"] == "ssh_command" and e["operation"] == "stop"]
    assert [e["phase"] for e in stop_cmd] == ["started", "finished"]
    assert stop_cmd[1]["user"]["id"] == "user-123"
    assert stop_cmd[1]["command"] == "sudo -n systemctl stop redis-server"
    opened = [e for e in events if e["event_type"] == "circuit_breaker"]
    assert opened[0]["operation"] == "open"
    assert events.index(opened[0]) < events.index(stop_cmd[0])


async def test_a_second_operation_on_a_busy_target_gets_409(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    config = client.app[CONFIG]
    test_host.slow_start(2.0)
    first = asyncio.create_task(call(client, "POST", "restart", OPERATOR))
    async with asyncio.timeout(10):
        while client.app[OPERATIONS].activity("redis") is None:  # noqa: ASYNC110 -- the task's claim
            await asyncio.sleep(0.01)
    for endpoint, headers in [("start", OPERATOR), ("stop", ADMIN), ("restart", ADMIN)]:
        response = await client.post(f"/api/services/redis/{endpoint}", headers=headers)
        body = await response.json()
        assert (response.status, body["reason"]) == (409, "busy"), body
        assert response.headers["Retry-After"]
        assert "restart by user-456" in body["detail"]
    # Reading still works while it runs.
    status, body = await call(client, "GET", "logs", OPERATOR)
    assert status == 200
    status, body = await call(client, "GET", "health", OPERATOR)
    assert body["operation_in_progress"] == "restart by user-456"
    status, body = await first
    assert status == 200, body
    assert verbs(test_host) == ["restart"]
    refused = [e for e in read_events(config.audit) if e.get("phase") == "refused"]
    assert [(e["operation"], e["reason"]) for e in refused] == [
        ("start", "busy"),
        ("stop", "busy"),
        ("restart", "busy"),
    ]
    status, body = await call(client, "POST", "reload", OPERATOR)  # free again
    assert status == 200


async def test_an_operation_during_a_recovery_gets_409(
    client: TestClient, test_host: TestHost
) -> None:
    test_host.slow_start(2.0)
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    response = await client.post("/webhook", json=notification(alert("redis")), headers=WEBHOOK)
    assert (await response.json())["alerts"][0]["disposition"] == "recovery_started"
    status, body = await call(client, "POST", "restart", OPERATOR)
    assert (status, body["reason"]) == (409, "busy")
    assert "a recovery is running" in body["detail"]
    async with asyncio.timeout(30):
        await client.app[DISPATCHER].wait_idle()
    assert verbs(test_host) == ["restart"]  # the recovery's only


async def test_an_alert_during_an_operation_waits_for_it_and_finds_nothing_to_do(
    client: TestClient, test_host: TestHost
) -> None:
    test_host.slow_start(1.5)
    first = asyncio.create_task(call(client, "POST", "restart", OPERATOR))
    async with asyncio.timeout(10):
        while client.app[OPERATIONS].activity("redis") is None:  # noqa: ASYNC110 -- the task's claim
            await asyncio.sleep(0.01)
    response = await client.post("/webhook", json=notification(alert("redis")), headers=WEBHOOK)
    assert (await response.json())["alerts"][0]["disposition"] == "recovery_started"
    status, body = await first
    assert status == 200, body
    async with asyncio.timeout(30):
        await client.app[DISPATCHER].wait_idle()
    (report,) = client.app[DISPATCHER].history("redis")
    assert report.outcome == Outcome.HEALTHY  # it ran after the restart, which had healed it
    assert verbs(test_host) == ["restart"]


async def test_past_the_start_budget_a_start_is_429_with_retry_after(
    client: TestClient, test_host: TestHost
) -> None:
    for _ in range(3):
        status, body = await call(client, "POST", "restart", OPERATOR)
        assert status == 200, body
    status, body = await call(client, "POST", "start", OPERATOR)
    assert (status, body["reason"]) == (429, "start_limit")
    response = await client.post("/api/services/redis/restart", headers=ADMIN)
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 11
    status, body = await call(client, "POST", "reload", OPERATOR)  # not a start: allowed
    assert status == 200
    assert verbs(test_host) == ["restart"] * 3 + ["reload"]
    assert test_host.max_starts_in_window(10.0) == 3


async def test_reload_of_a_stopped_unit_is_refused(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    await asyncio.to_thread(test_host.stop)
    status, body = await call(client, "POST", "reload", OPERATOR)
    assert (status, body["reason"]) == (409, "not_active")
    assert verbs(test_host) == []  # (the test's own stop is not an invocation over SSH)
    ops = [
        e for e in read_events(client.app[CONFIG].audit) if e["event_type"] == "service_operation"
    ]
    assert [(e["phase"], e.get("outcome")) for e in ops] == [
        ("started", None),
        ("finished", "refused"),
    ]


async def test_a_start_that_fails_is_502_and_audited_as_failed(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    await asyncio.to_thread(test_host.stop)
    test_host.start_fails()
    status, body = await call(client, "POST", "start", OPERATOR)
    assert status == 502, body
    assert body["success"] is False
    assert body["exit_code"] != 0
    assert "start exited" in body["detail"]
    (finished,) = [
        e
        for e in read_events(client.app[CONFIG].audit)
        if e["event_type"] == "service_operation" and e["phase"] == "finished"
    ]
    assert finished["result"]["success"] is False
    assert finished["result"]["exit_code"] == body["exit_code"]


async def test_an_unreachable_host_is_502_cut_at_the_ssh_timeouts(
    client: TestClient, test_host: TestHost
) -> None:
    test_host.blackhole()
    async with hang_guard("a restart of an unreachable host"):  # only guards a hang
        status, body = await call(client, "POST", "restart", OPERATOR)
    assert status == 502
    assert body["success"] is False
    assert "not connected within" in body["detail"], body  # the connect timeout ended it
    assert body["unit_state_before"] is None
    status, body = await call(client, "GET", "logs", OPERATOR)
    assert (status, body["reason"]) == (502, "ssh_error")
    test_host.unblackhole()


@pytest.mark.parametrize("lines", [1, 7, 1000])
async def test_logs_returns_the_last_n_journal_lines(
    client: TestClient, test_host: TestHost, tmp_path: Path, lines: int
) -> None:
    status, body = await call(client, "GET", f"logs?lines={lines}", OPERATOR)
    assert status == 200
    assert body["lines"] == lines
    assert body["entries"] == test_host.journal(lines)
    (finished,) = [
        e
        for e in read_events(client.app[CONFIG].audit)
        if e["event_type"] == "ssh_command" and e["phase"] == "finished"
    ]
    assert finished["command"] == f"sudo -n journalctl -u redis-server -n {lines} --no-pager"
    assert finished["user"]["id"] == "user-456"


@pytest.mark.parametrize("value", ["0", "1001", "-5", "ten", "2.5", ""])
async def test_bad_lines_run_nothing(
    client: TestClient, test_host: TestHost, tmp_path: Path, value: str
) -> None:
    response = await client.get(
        "/api/services/redis/logs", params={"lines": value}, headers=OPERATOR
    )
    assert response.status == 400
    assert read_events(client.app[CONFIG].audit) == []


async def test_an_unwritable_audit_log_runs_nothing(
    client: TestClient, test_host: TestHost, tmp_path: Path
) -> None:
    config = client.app[CONFIG]
    config.audit.path.unlink()
    config.audit.path.symlink_to("/dev/full")
    for endpoint, headers in [("restart", OPERATOR), ("stop", ADMIN), ("logs", OPERATOR)]:
        method = "GET" if endpoint == "logs" else "POST"
        status, body = await call(client, method, endpoint, headers)
        assert (status, body["reason"]) == (503, "audit_unavailable")
    status, body = await call(client, "POST", "reset-circuit-breaker", ADMIN)
    assert status == 503
    assert verbs(test_host) == []
    assert test_host.unit_state() == "active"


async def test_a_restart_cut_at_its_timeout_says_so_and_what_the_unit_became(
    aiohttp_client: Any, test_host: TestHost, tmp_path: Path
) -> None:
    """The restart outlives its 1 s timeout: the person hears it was cut (502), and the unit's
    state once systemd finished the job it was left with, read again rather than left blank."""
    config = host_config(tmp_path, test_host)
    target = config.targets[0]
    assert target.ssh is not None
    cut_at_1s = replace(target, ssh=replace(target.ssh, control_timeout_seconds=1.0))
    client = await aiohttp_client(create_app(replace(config, targets=(cut_at_1s,))))
    test_host.slow_start(4)
    status, body = await call(client, "POST", "restart", OPERATOR)
    assert status == 502, body
    assert "cut at timeout after 1s" in body["detail"]
    assert (body["exit_code"], body["unit_state_after"]) == (None, "active")
    (restart,) = test_host.invocations(["restart"])
    assert restart.exit_code == 0  # the host's own log: systemd finished the job
    (finished,) = [
        e
        for e in read_events(config.audit)
        if e["event_type"] == "service_operation" and e["phase"] == "finished"
    ]
    assert finished["unit_state_after"] == "active"
    assert finished["result"]["outcome"] == "failure"
