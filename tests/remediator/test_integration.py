"""The remediator against the real test host: sshd, sudo, the systemd stand-ins, redis-server.

Each test breaks the host the way the runbook's incidents do, posts the alert Alertmanager
would, and checks what the host saw (its recorded systemctl calls) and whether Redis answers.
Timings are shortened through the config; the last tests show the start-limit arithmetic.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.audit import read_events
from remediator.keys import DISPATCHER, METRICS
from remediator.recovery import Level, Outcome
from testhost.host import TestHost
from tests.remediator.hostapp import AUTH, MakeClient, host_config, last_report, post, settle, verbs
from tests.remediator.notifications import alert, notification

pytestmark = pytest.mark.root


@pytest.fixture
def config(test_host: TestHost, tmp_path: Path) -> Config:
    """The test host as the one target, vm3."""
    return host_config(tmp_path, {"vm3": test_host})


@pytest.fixture
async def client(make_client: MakeClient, config: Config) -> TestClient:
    """The remediator's app acting on `config`."""
    return await make_client(config)


def sample(client: TestClient, name: str, **labels: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def wait_state(host: TestHost, state: str) -> None:
    await asyncio.to_thread(host.wait_state, state, 10)


async def test_kill9_is_failed_and_gets_a_hard_restart(
    test_host: TestHost, config: Config, client: TestClient
) -> None:
    old_pid = test_host.kill9()
    await wait_state(test_host, "failed")
    assert await post(client, alert("vm3", fingerprint="a1")) == ["recovery_started"]
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert [s.level for s in report.steps] == [Level.HARD]
    assert test_host.ping()
    assert test_host.redis_pid() not in (None, old_pid)
    assert verbs(test_host) == ["restart"]
    assert test_host.invocations()[0].sudo_user == "autobot"
    assert sample(client, "autoheal_recoveries_total", target="vm3", level="hard", result="success")
    assert sample(
        client, "autoheal_ssh_commands_total", target="vm3", command="restart", result="success"
    )
    events = read_events(config.audit)
    commands = [e for e in events if e["event_type"] == "ssh_command"]
    assert [(e["operation"], e["phase"]) for e in commands[:2]] == [
        ("is-active", "started"),
        ("is-active", "finished"),
    ]
    restart = [e for e in commands if e["operation"] == "restart"]
    assert [e["phase"] for e in restart] == ["started", "finished"]
    assert restart[1]["result"]["exit_code"] == 0
    assert restart[1]["command"] == "sudo -n systemctl restart redis-server"
    assert restart[1]["security"]["ssh_key_used"] is True
    (verified,) = [e for e in events if e.get("phase") == "verified"]
    assert verified["recovery_level"] == "hard"
    assert (verified["unit_state_before"], verified["unit_state_after"]) == ("failed", "active")
    assert verified["alert_fingerprints"] == ["a1"]


async def test_stopped_unit_is_inactive_and_gets_a_start(
    test_host: TestHost, client: TestClient
) -> None:
    await asyncio.to_thread(test_host.stop)
    assert test_host.unit_state() == "inactive"
    await post(client, alert("vm3"))
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert [s.level for s in report.steps] == [Level.STANDARD]
    assert verbs(test_host) == ["start"]
    assert test_host.ping()


async def test_hung_redis_reload_does_not_help_restart_does(
    test_host: TestHost, client: TestClient
) -> None:
    test_host.sigstop()
    assert test_host.unit_state() == "active"
    assert not test_host.ping(timeout=0.3)
    await post(client, alert("vm3"))
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert [s.level for s in report.steps] == [Level.SOFT, Level.HARD]
    assert "no PONG" in report.steps[0].reason
    assert verbs(test_host) == ["reload", "restart"]
    assert test_host.ping()


async def test_a_start_that_always_fails_is_exhausted_then_left_alone(
    test_host: TestHost, client: TestClient
) -> None:
    test_host.start_fails()
    test_host.kill9()
    await wait_state(test_host, "failed")
    body = alert("vm3", fingerprint="e1")
    await post(client, body)
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.EXHAUSTED
    assert [s.level for s in report.steps] == [Level.HARD] * 3
    assert verbs(test_host) == ["restart"] * 3
    assert sample(client, "autoheal_recovery_exhausted_total", target="vm3") == 1
    assert await post(client, body) == ["duplicate"]  # Alertmanager's repeat: no further action
    await settle(client)
    assert verbs(test_host) == ["restart"] * 3
    assert test_host.max_starts_in_window() <= 3


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "kept-alive-connection"])
async def test_unreachable_host_is_exhausted_within_the_ssh_timeouts(
    test_host: TestHost, client: TestClient, warm: bool
) -> None:
    if warm:  # a connection is open when the host drops off
        assert await post(client, alert("vm3", fingerprint="f0")) == ["recovery_started"]
        await settle(client)
        assert last_report(client).outcome == Outcome.HEALTHY
    test_host.kill9()
    test_host.blackhole()
    await post(client, alert("vm3", fingerprint="f1"))
    await settle(client, limit=30)
    report = last_report(client)
    assert report.outcome == Outcome.EXHAUSTED
    # Each of the 3 attempts ends at an SSH timeout (connect 1 s, command 3 s), none hangs:
    # settle()'s limit is only the hang guard.
    assert [s.attempt for s in report.steps] == [1, 2, 3]
    for step in report.steps:
        assert step.state_before is None, step
        assert step.level is None, step
        assert "'systemctl is-active redis-server'" in step.reason, step
        assert " within " in step.reason, step
    assert verbs(test_host) == []
    assert (await client.get("/healthz")).status == 200


async def test_the_circuit_breaker_opens_survives_a_restart_and_is_reset_by_a_person(
    test_host: TestHost, config: Config, client: TestClient, make_client: MakeClient
) -> None:
    for i in range(3):
        test_host.kill9()
        await wait_state(test_host, "failed")
        assert await post(client, alert("vm3", starts_at=f"2025-10-10T14:3{i}:00Z")) == [
            "recovery_started"
        ]
        await settle(client)
        assert last_report(client).outcome == Outcome.RECOVERED
    assert sample(client, "autoheal_circuit_breaker_open", target="vm3") == 1
    test_host.kill9()
    await wait_state(test_host, "failed")
    assert await post(client, alert("vm3", starts_at="2025-10-10T14:40:00Z")) == [
        "suppressed_circuit_open"
    ]
    await settle(client)
    assert verbs(test_host) == ["restart"] * 3  # the 4th ran nothing
    suppressed = [e for e in read_events(config.audit) if e.get("phase") == "suppressed"]
    assert len(suppressed) == 1
    assert suppressed[0]["event_type"] == "auto_recovery"
    await client.close()

    client = await make_client(config)  # the remediator restarted
    assert sample(client, "autoheal_circuit_breaker_open", target="vm3") == 1
    assert await post(client, alert("vm3", starts_at="2025-10-10T14:41:00Z")) == [
        "suppressed_circuit_open"
    ]
    cli = [sys.executable, "-m", "redis_autoheal.cli", "breaker"]
    status = await asyncio.to_thread(
        subprocess.run,
        [*cli, "status", "--config", str(config.source), "--target", "vm3"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "vm3: OPEN since" in status.stdout
    await asyncio.to_thread(
        subprocess.run,
        [*cli, "reset", "--config", str(config.source), "--target", "vm3"],
        capture_output=True,
        check=True,
    )
    assert sample(client, "autoheal_circuit_breaker_open", target="vm3") == 0
    assert await post(client, alert("vm3", starts_at="2025-10-10T14:42:00Z")) == [
        "recovery_started"
    ]
    await settle(client)
    assert last_report(client).outcome == Outcome.RECOVERED
    assert test_host.ping()
    assert test_host.max_starts_in_window() <= 5
    assert "start-limit-hit" not in {i.result for i in test_host.invocations()}
    resets = [e for e in read_events(config.audit) if e["operation"] == "reset"]
    assert resets[0]["event_type"] == "circuit_breaker"


async def test_duplicate_deliveries_run_one_recovery(
    test_host: TestHost, client: TestClient
) -> None:
    test_host.kill9()
    await wait_state(test_host, "failed")
    body = notification(alert("vm3", fingerprint="d00d"))
    answers = await asyncio.gather(
        *(client.post("/webhook", json=body, headers=AUTH) for _ in range(50))
    )
    dispositions = [(await a.json())["alerts"][0]["disposition"] for a in answers]
    assert dispositions.count("recovery_started") == 1
    for _ in range(5):  # the same notification: HA replicas, retries, repeat_interval
        response = await client.post("/webhook", json=body, headers=AUTH)
        assert (await response.json())["alerts"][0]["disposition"] == "duplicate"
    await settle(client)
    assert verbs(test_host) == ["restart"]
    assert len(client.app[DISPATCHER].history("vm3")) == 1
    # Healed, the recovery is over: a later delivery gets a fresh look, which acts on nothing.
    response = await client.post("/webhook", json=body, headers=AUTH)
    assert (await response.json())["alerts"][0]["disposition"] == "recovery_started"
    await settle(client)
    assert [r.outcome for r in client.app[DISPATCHER].history("vm3")] == [
        Outcome.RECOVERED,
        Outcome.HEALTHY,
    ]
    assert verbs(test_host) == ["restart"]
    assert test_host.ping()


async def test_two_targets_recover_in_parallel(
    test_host_factory: Callable[..., TestHost], make_client: MakeClient, tmp_path: Path
) -> None:
    a, b = test_host_factory(hostname="vm3a"), test_host_factory(hostname="vm3b")
    client = await make_client(host_config(tmp_path, {"a": a, "b": b}))
    for host in (a, b):
        host.slow_start(1.0)
        host.kill9()
    await wait_state(a, "failed")
    await wait_state(b, "failed")
    assert await post(client, alert("a"), alert("b")) == ["recovery_started"] * 2
    await settle(client)
    assert last_report(client, "a").outcome == Outcome.RECOVERED
    assert last_report(client, "b").outcome == Outcome.RECOVERED
    (ra,), (rb,) = a.invocations(), b.invocations()
    assert ra.end_ts is not None
    assert rb.end_ts is not None
    assert ra.ts < rb.end_ts
    assert rb.ts < ra.end_ts  # the two restarts overlapped
    assert a.ping()
    assert b.ping()


async def test_bad_requests_run_nothing_on_the_host(
    test_host: TestHost, config: Config, client: TestClient
) -> None:
    test_host.kill9()
    await wait_state(test_host, "failed")
    good = notification(alert("vm3"))
    json_headers = {**AUTH, "Content-Type": "application/json"}
    requests = [
        ({}, good, 401),
        ({"Authorization": "Bearer wrong"}, good, 401),
        ({**AUTH, "Content-Type": "text/plain"}, b"{}", 415),
        (json_headers, b"{oops", 400),
        (json_headers, {**good, "version": "3"}, 422),
        (json_headers, io.BytesIO(b"x" * (config.remediator.max_body_bytes + 1)), 413),
        (json_headers, b"[" * 100_000 + b"]" * 100_000, 400),  # too deep for json
        (json_headers, notification(alert("vm3", starts_at="0001-01-01T00:00:00+01:00")), 422),
    ]
    for headers, body, status in requests:
        if isinstance(body, dict):
            response = await client.post("/webhook", json=body, headers=headers)
        else:
            response = await client.post("/webhook", data=body, headers=headers)
        assert response.status == status
    await settle(client)
    assert verbs(test_host) == []
    assert test_host.unit_state() == "failed"
    assert not [e for e in read_events(config.audit) if e["event_type"] == "ssh_command"]
    assert (await client.get("/healthz")).status == 200


async def test_unwritable_audit_log_runs_nothing_until_it_is_back(
    test_host: TestHost, config: Config, client: TestClient
) -> None:
    test_host.kill9()
    await wait_state(test_host, "failed")
    config.audit.path.unlink()
    config.audit.path.symlink_to("/dev/full")
    body = notification(alert("vm3", fingerprint="ab"))
    response = await client.post("/webhook", json=body, headers=AUTH)
    assert response.status == 503
    await settle(client)
    assert verbs(test_host) == []
    assert sample(client, "autoheal_audit_write_errors_total") >= 1
    config.audit.path.unlink()  # the disk is back; Alertmanager retries the same notification
    response = await client.post("/webhook", json=body, headers=AUTH)
    assert response.status == 200
    await settle(client)
    assert last_report(client).outcome == Outcome.RECOVERED
    assert verbs(test_host) == ["restart"]


async def test_back_to_back_outages_stay_below_systemds_start_limit(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    """Everything as shipped that guards the start limit (the start budget, systemd's 5 starts
    in 10 s on the host): a new outage the moment each recovery of a unit that never starts has
    given up, until the breaker opens. Short delays, so only the budget keeps the starts apart."""
    config = host_config(
        tmp_path,
        {"vm3": test_host},
        health_check={"ping_timeout_seconds": 0.5},
        auto_recovery={"max_attempts": 3, "retry_delay_seconds": 0.2, "stable_seconds": 6},
        circuit_breaker={"max_recoveries": 2, "window_seconds": 300},
    )
    client = await make_client(config)
    test_host.start_fails()
    test_host.kill9()
    await wait_state(test_host, "failed")
    dispositions = []
    for i in range(5):  # the breaker opens after 2; 5 bounds the loop if it never did
        dispositions += await post(client, alert("vm3", starts_at=f"2025-10-10T14:30:0{i}Z"))
        if dispositions[-1] != "recovery_started":
            break
        await settle(client)
        assert last_report(client).outcome == Outcome.EXHAUSTED
    assert dispositions == ["recovery_started"] * 2 + ["suppressed_circuit_open"]
    starts = test_host.invocations(("start", "restart"))
    assert len(starts) == 6  # 2 recoveries of 3 attempts, then the breaker
    assert test_host.max_starts_in_window(10.0) <= 3
    assert "start-limit-hit" not in {i.result for i in starts}


async def test_the_start_budget_holds_even_without_delays(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    config = host_config(
        tmp_path,
        {"vm3": test_host},
        health_check={"ping_timeout_seconds": 0.2},
        auto_recovery={"max_attempts": 4, "retry_delay_seconds": 0},
    )
    client = await make_client(config)
    test_host.start_fails()
    test_host.kill9()
    await wait_state(test_host, "failed")
    await post(client, alert("vm3"))
    await settle(client)
    starts = test_host.invocations(("start", "restart"))
    assert len(starts) == 4
    assert starts[3].mono - starts[0].mono > 10.0  # the 4th waited for a free slot
    assert test_host.max_starts_in_window(10.0) <= 3
    waits = [e for e in read_events(config.audit) if "start_limit_wait_seconds" in e]
    assert waits


async def test_a_resolved_notification_stops_escalation(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    config = host_config(tmp_path, {"vm3": test_host}, auto_recovery={"retry_delay_seconds": 30})
    client = await make_client(config)
    test_host.start_fails()
    test_host.kill9()
    await wait_state(test_host, "failed")
    firing = alert("vm3", fingerprint="c0ffee")
    await post(client, firing)
    async with asyncio.timeout(20):
        while not [e for e in read_events(config.audit) if e.get("phase") == "verified"]:  # noqa: ASYNC110 -- the first step's end
            await asyncio.sleep(0.05)
    assert await post(client, {**firing, "status": "resolved"}) == ["resolved"]
    await settle(client, limit=5)  # not the 30 s retry delay
    report = last_report(client)
    assert report.outcome == Outcome.RESOLVED
    assert verbs(test_host) == ["restart"]
