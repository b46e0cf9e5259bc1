"""Tests added for remediator/coordination.py's surviving mutants (scripts/mutation.sh): an
alert's audit write that settles after its recovery ended, a recovery ending on alerts the
memory already forgot, the target an alert suppressed by an open breaker is audited under."""

from __future__ import annotations

from typing import Any

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.coordination import SEEN_TTL_SECONDS, LocalCoordination, Verdict
from remediator.keys import BREAKER
from tests.remediator.configs import TOKEN
from tests.remediator.notifications import alert, notification
from tests.remediator.test_coordination import Clock, admit, clock, key, local
from tests.remediator.test_webhook import unreachable

__all__ = ["clock", "local", "unreachable"]  # fixtures of test_coordination and test_webhook


def test_a_join_settled_after_its_recovery_ended_changes_nothing(
    local: LocalCoordination,
) -> None:
    local.commit(admit(local, "a", new="r1"))
    late = admit(local, "b")  # joins r1; its audit write is still under way
    local.end("redis", "r1", [late.key])  # r1 ended first and did not serve it
    local.commit(late)
    assert local.claim("redis", "r2")  # the target is free


def test_a_late_commit_of_an_ended_recovery_leaves_the_next_one_as_it_is(
    local: LocalCoordination,
) -> None:
    local.commit(admit(local, "a", new="r1"))
    late = admit(local, "b")  # joins r1
    local.end("redis", "r1", [late.key])
    started = admit(local, "c", new="r2")  # r2 holds the target; its audit not yet written
    local.commit(late)  # b's write for r1 lands now: not r2's
    local.release(started)  # r2's write failed: r2 never runs
    assert local.claim("redis", "r3")  # so nothing holds the target


def test_a_recovery_can_end_on_alerts_the_memory_already_forgot(
    local: LocalCoordination, clock: Clock
) -> None:
    local.commit(admit(local, "a", new="r1"))
    clock.now += SEEN_TTL_SECONDS + 1  # a long recovery: "a" expired from the memory...
    local.remember(key("other"))  # ...and is evicted by the next one remembered
    local.end("redis", "r1", [key("a")])
    assert admit(local, "a", new="r2").verdict == Verdict.STARTED


async def test_an_alert_suppressed_by_an_open_breaker_is_audited_under_its_target(
    aiohttp_client: Any, unreachable: Config
) -> None:
    config = unreachable
    client = await aiohttp_client(create_app(config))
    client.app[BREAKER].trip("cache", "a person stopped it")
    response = await client.post(
        "/webhook",
        json=notification(alert("cache", fingerprint="fcache1")),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status == 200, await response.text()
    assert [a["disposition"] for a in (await response.json())["alerts"]] == [
        "suppressed_circuit_open"
    ]
    (suppressed,) = [e for e in read_events(config.audit) if e.get("phase") == "suppressed"]
    assert (suppressed["service"], suppressed["alert_fingerprints"]) == ("cache", ["fcache1"])
    assert suppressed["source_ip"] == "127.0.0.1"
    assert suppressed["alerts"][0]["fingerprint"] == "fcache1"
    assert (suppressed["event_type"], suppressed["operation"]) == ("auto_recovery", "recover")
    assert (suppressed["result"]["success"], suppressed["outcome"]) == (
        False,
        "suppressed",
    )
    assert suppressed["reason"] == (
        "circuit breaker open: auto-recovery is off until a person resets it"
    )
