"""Resolved and firing alerts of one recovery: escalation stops only when every alert it serves
has resolved, and an alert it did not heal is never swallowed as a duplicate.

Against the real test host (what ran there, and whether Redis answers), and once against an
engine held at the exact moment the real one can be caught: the recovery has read "every alert
resolved" and is writing its last event when another firing alert joins.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from remediator.alertmanager import parse_notification
from remediator.app import create_app
from remediator.keys import DISPATCHER
from remediator.recovery import Level, Outcome, RecoveryEngine, Report
from tests.remediator.hostapp import host_config, last_report, post, settle, verbs
from tests.remediator.notifications import alert, notification
from tests.remediator.test_recovery_host import wait_event
from tests.remediator.test_webhook import unreachable

if TYPE_CHECKING:
    from redis_autoheal.config import Config
    from remediator.recovery import Controls, Trigger
    from testhost.host import TestHost
    from tests.remediator.hostapp import MakeClient

__all__ = ["unreachable"]  # the fixture, shared with test_webhook.py


@pytest.mark.root
@pytest.mark.parametrize("order", ["resolved-then-joined", "joined-then-resolved"])
async def test_a_firing_alert_keeps_escalation_going_whatever_resolved_before(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path, order: str
) -> None:
    """Redis hangs; RedisDown starts a recovery. While the reload is checked (up to 3 s of
    PING), RedisDown resolves and RedisServiceFailed fires, in either order. One alert still
    fires: the recovery goes on to the restart and Redis answers again."""
    config = host_config(tmp_path, {"vm3": test_host}, health_check={"ping_timeout_seconds": 3})
    client = await make_client(config)
    test_host.sigstop()
    down = alert("vm3", fingerprint="d0", name="RedisDown")
    failed = alert("vm3", fingerprint="f0", name="RedisServiceFailed")
    assert await post(client, down) == ["recovery_started"]
    await wait_event(config, lambda e: e.get("phase") == "decided")  # the reload runs next
    resolved = {**down, "status": "resolved"}
    if order == "resolved-then-joined":
        assert await post(client, resolved) == ["resolved"]
        assert await post(client, failed) == ["joined_running_recovery"]
    else:
        assert await post(client, failed) == ["joined_running_recovery"]
        assert await post(client, resolved) == ["resolved"]
    await settle(client)
    report = last_report(client)
    assert report.outcome == Outcome.RECOVERED, report.reason
    assert [s.level for s in report.steps] == [Level.SOFT, Level.HARD]
    assert verbs(test_host) == ["reload", "restart"]  # the host's own log
    assert test_host.ping()
    # Healed: its repeat starts a recovery that finds the target healthy and does nothing.
    assert await post(client, failed) == ["recovery_started"]
    await settle(client)
    assert last_report(client).outcome == Outcome.HEALTHY
    assert verbs(test_host) == ["reload", "restart"]


@pytest.mark.root
async def test_a_new_failure_under_an_alert_alertmanager_still_holds_is_healed_again(
    test_host: TestHost, make_client: MakeClient, tmp_path: Path
) -> None:
    """Alertmanager merges a new firing alert into one of the same labels it still holds
    (resolved or not), keeping its startsAt: the same key, delivered again after the first
    recovery healed Redis and the alert resolved, is a new outage when Redis is down again."""
    client = await make_client(host_config(tmp_path, {"vm3": test_host}))
    failed = alert("vm3", fingerprint="f0", name="RedisServiceFailed")
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    assert await post(client, failed) == ["recovery_started"]
    await settle(client)
    assert last_report(client).outcome == Outcome.RECOVERED
    assert await post(client, {**failed, "status": "resolved"}) == ["resolved"]
    test_host.kill9()
    await asyncio.to_thread(test_host.wait_state, "failed", 10)
    assert await post(client, failed) == ["recovery_started"]
    await settle(client)
    assert last_report(client).outcome == Outcome.RECOVERED
    assert verbs(test_host) == ["restart", "restart"]
    assert test_host.ping()


class ResolvedLate(RecoveryEngine):
    """Waits for its alerts to resolve, as the real engine does in its retry delay, then ends
    `resolved` only when `finish` is set: the real one writing its last audit event."""

    def __init__(self) -> None:  # nothing of the real engine is used
        self.finish = asyncio.Event()
        self.resolved_seen = asyncio.Event()

    async def recover(self, control: Controls, trigger: Trigger) -> Report:
        await trigger.resolved.wait()
        self.resolved_seen.set()
        await self.finish.wait()
        return Report(
            trigger.recovery_id, control.name, Outcome.RESOLVED, "every alert resolved", [], 0.0
        )


async def test_an_alert_joining_a_recovery_that_ends_resolved_is_not_lost(
    aiohttp_client: Any, unreachable: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The recovery read "every alert resolved" just before another firing alert joined it, so
    it ends `resolved` without having served that alert. Alertmanager's next delivery of the
    alert (the same fingerprint and startsAt) must start a recovery, not count as a duplicate."""
    client = await aiohttp_client(create_app(unreachable))
    engine = ResolvedLate()
    client.app[DISPATCHER].engine = engine
    down = alert("redis", fingerprint="d1", name="RedisDown")
    failed = alert("redis", fingerprint="f1", name="RedisServiceFailed")
    assert await post(client, down) == ["recovery_started"]
    assert await post(client, {**down, "status": "resolved"}) == ["resolved"]
    async with asyncio.timeout(10):
        await engine.resolved_seen.wait()
    assert await post(client, failed) == ["joined_running_recovery"]
    engine.finish.set()
    async with asyncio.timeout(10):
        await client.app[DISPATCHER].wait_idle()
    assert client.app[DISPATCHER].history("redis")[-1].outcome == Outcome.RESOLVED
    assert "ended resolved as 1 more alert(s) joined" in caplog.text
    assert await post(client, failed) == ["recovery_started"]  # the repeat: not a duplicate
    assert await post(client, down) == ["duplicate"]  # resolved: its late repeat changes nothing
    assert await post(client, {**failed, "status": "resolved"}) == ["resolved"]
    async with asyncio.timeout(10):
        await client.app[DISPATCHER].wait_idle()


async def test_a_join_given_back_leaves_a_recovery_whose_alerts_resolved_stopped(
    aiohttp_client: Any, unreachable: Config
) -> None:
    """A firing alert is admitted to a recovery (its audit write pending) as the recovery's
    only other alert resolves; then the write fails and the join is given back. Every alert
    the recovery serves has resolved: it stops escalating."""
    client = await aiohttp_client(create_app(unreachable))
    engine = ResolvedLate()
    engine.finish.set()
    dispatcher = client.app[DISPATCHER]
    dispatcher.engine = engine
    down = alert("redis", fingerprint="d2", name="RedisDown")
    assert await post(client, down) == ["recovery_started"]
    pending = dispatcher.admit(
        parse_notification(notification(alert("redis", fingerprint="f2"))), "127.0.0.1"
    )
    assert [d for _, d in pending.decisions] == ["joined_running_recovery"]
    assert await post(client, {**down, "status": "resolved"}) == ["resolved"]
    dispatcher.release(pending)  # its audit write failed
    async with asyncio.timeout(10):
        await dispatcher.wait_idle()
    assert dispatcher.history("redis")[-1].outcome == Outcome.RESOLVED
