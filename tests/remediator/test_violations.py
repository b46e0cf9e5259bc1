"""Refused requests in the audit log (remediator.violations): a flood from callers without a
token cannot push earlier events out; every refusal is still accounted for, per source."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import AuditWriter, read_events
from remediator.events import SecurityViolation
from remediator.keys import AUDIT, METRICS, VIOLATIONS
from remediator.violations import ViolationLog
from tests.remediator.configs import OPERATOR, TOKEN, write_config
from tests.remediator.notifications import alert, notification

HANG_GUARD = 30  # seconds: only ever reached when something is broken
FLOOD = 5000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> TestClient:
    return await aiohttp_client(create_app(config))


def refusals(client: TestClient) -> float:
    registry = client.app[METRICS].registry
    reasons = ("missing_token", "invalid_token", "address_not_allowed", "forbidden_role")
    return sum(
        registry.get_sample_value("autoheal_security_violations_total", {"reason": r}) or 0
        for r in reasons
    )


def accounted(events: list[dict[str, Any]]) -> int:
    """Refusals the audit log accounts for: events in full plus the summaries' counts."""
    return sum(1 for e in events if e["event_type"] == "security_violation") + sum(
        e["count"] for e in events if e["event_type"] == "security_violation_summary"
    )


async def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_flood_without_a_token_leaves_earlier_events_and_a_bounded_audit(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"audit": {"max_bytes": 16384, "backup_count": 1}})
    client = await aiohttp_client(create_app(config))
    body = notification(alert("redis", fingerprint="e1"))
    assert (await client.post("/webhook", json=body, headers=AUTH)).status == 200
    long_path = "/api/services/" + "x" * 8000 + "/health"
    kinds = [
        ("POST", "/webhook", {}),
        ("POST", "/webhook", {"Authorization": "Bearer wrong"}),
        ("GET", long_path, {"Authorization": "Bearer wrong", "User-Agent": "u" * 4000}),
        ("GET", "/api/services/redis/health", {}),
    ]
    for start in range(0, FLOOD, 100):
        answers = await asyncio.gather(
            *(
                client.request(*kinds[i % 4][:2], headers=kinds[i % 4][2])
                for i in range(start, start + 100)
            )
        )
        assert {a.status for a in answers} == {401}
    assert refusals(client) == FLOOD  # the metric counts each one
    events = read_events(config.audit)
    assert [e["event_type"] for e in events] == ["webhook", "security_violation"]
    assert events[0]["alerts"][0]["fingerprint"] == "e1"
    assert client.app[VIOLATIONS].pending == FLOOD - 1

    await client.close()  # shutdown writes what was counted
    events = read_events(config.audit)
    assert events[0]["alerts"][0]["fingerprint"] == "e1"  # the earlier event is still there
    assert accounted(events) == FLOOD
    summaries = [e for e in events if e["event_type"] == "security_violation_summary"]
    assert 1 <= len(summaries) <= 3  # one an interval (60 s), and one at shutdown
    assert all(s["source_ip"] == "127.0.0.1" for s in summaries)
    reasons: dict[str, int] = {}
    for s in summaries:
        for reason, n in s["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
        assert s["first_seen"] <= s["last_seen"]
    assert sum(reasons.values()) == FLOOD - 1
    assert set(reasons) == {"missing_token", "invalid_token"}
    for line in config.audit.path.read_text().splitlines():
        assert len(line) < 2000  # no 8 KB path, no 4 KB User-Agent


async def test_refusals_that_go_on_are_summarised_each_interval_and_a_quiet_source_forgotten(
    aiohttp_client: Any, config: Config
) -> None:
    app = create_app(config)
    app[VIOLATIONS] = log = ViolationLog(app[AUDIT], interval=0.5)
    client = await aiohttp_client(app)

    def events() -> list[dict[str, Any]]:
        return read_events(config.audit)

    for _ in range(3):
        assert (await client.post("/webhook", json={})).status == 401
    await wait_for(lambda: accounted(events()) == 3, "the summary of the first three")
    first = [e for e in events() if e["event_type"] == "security_violation_summary"]
    assert first[-1]["last_operation"] == "POST /webhook"
    for _ in range(2):
        assert (await client.get("/api/services/redis/health")).status == 401
    await wait_for(lambda: accounted(events()) == 5, "the summary of the next two")
    assert events()[-1]["last_operation"] == "GET /api/services/redis/health"
    await wait_for(lambda: log.sources == 0, "the quiet source to be forgotten")
    assert (await client.post("/webhook", json={})).status == 401
    kinds = [e["event_type"] for e in events()]
    assert kinds[0] == kinds[-1] == "security_violation"  # a new episode starts in full
    assert set(kinds[1:-1]) == {"security_violation_summary"}
    assert accounted(events()) == refusals(client) == 6
    summaries = [e for e in events() if e["event_type"] == "security_violation_summary"]
    assert all(s["count"] > 0 for s in summaries)  # never an empty summary
    assert all(s["interval_seconds"] == 0.5 for s in summaries)


async def test_a_token_holders_refusals_are_audited_in_full_each_time(
    client: TestClient, config: Config
) -> None:
    for _ in range(3):
        answer = await client.post("/api/services/redis/stop", headers=OPERATOR)
        assert answer.status == 403
    events = read_events(config.audit)
    assert [(e["event_type"], e["reason"], e["user"]["id"]) for e in events] == [
        ("security_violation", "forbidden_role", "user-456")
    ] * 3


async def test_sources_beyond_the_limit_are_counted_together(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    audit = AuditWriter(config.audit)
    audit.open()
    log = ViolationLog(audit, max_sources=2)

    def refused(source: str) -> SecurityViolation:
        return SecurityViolation(
            service=None,
            operation="POST /webhook",
            source_ip=source,
            success=False,
            reason="invalid_token",
        )

    sources = [f"10.0.0.{i}" for i in range(1, 7)]
    in_full = [await log.record(refused(s)) for s in sources]
    assert in_full == [True, True, True, False, False, False]  # the third opens "the others"
    assert await log.record(refused("10.0.0.1")) is False
    await log.close()
    await audit.close()
    events = read_events(config.audit)
    assert [e["source_ip"] for e in events if e["event_type"] == "security_violation"] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    summaries = {
        e["source_ip"]: e for e in events if e["event_type"] == "security_violation_summary"
    }
    assert set(summaries) == {"10.0.0.1", None}
    assert summaries["10.0.0.1"]["count"] == 1
    assert (summaries[None]["count"], summaries[None]["other_sources"]) == (3, True)
    assert accounted(events) == 7


async def test_a_summary_that_cannot_be_written_is_kept_and_written_later(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    audit = AuditWriter(config.audit)
    audit.open()
    log = ViolationLog(audit)
    event = SecurityViolation(
        service=None,
        operation="POST /webhook",
        source_ip="10.0.0.1",
        success=False,
        reason="missing_token",
    )
    for _ in range(4):
        await log.record(event)
    path = config.audit.path
    path.rename(path.with_name("kept.log"))
    path.symlink_to("/dev/full")
    await log.flush(everything=True)
    assert log.pending == 3  # not lost
    await log.record(event)
    path.unlink()
    path.with_name("kept.log").rename(path)
    await log.close()
    await audit.close()
    events = read_events(config.audit)
    assert [e["event_type"] for e in events] == [
        "security_violation",
        "security_violation_summary",
    ]
    assert events[1]["count"] == 4
    assert accounted(events) == 5
