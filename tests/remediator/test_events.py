"""The typed audit events: what each writes, and that reading it back gives the same event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from remediator.audit import encode
from remediator.events import (
    Actor,
    AutoRecovery,
    CircuitBreaker,
    Event,
    OtherEvent,
    SecurityViolation,
    SecurityViolationSummary,
    ServiceOperation,
    SshCommand,
    Webhook,
    from_json,
    to_json,
)

ALICE = Actor(id="user-123", email="alice@example.com", role="operator")
RUN: dict[str, Any] = {"recovery_id": "r1", "alert_fingerprints": ["f1"], "dry_run": False}
EVENTS: list[Event] = [
    Webhook(
        service=None,
        operation="receive",
        success=True,
        receiver="autoheal",
        group_key="{}:{}",
        status="firing",
        truncated_alerts=0,
        alerts=[{"alertname": "RedisDown", "disposition": "started"}],
    ),
    AutoRecovery(
        service="redis", operation="recover", success=None, phase="started", alerts=[], **RUN
    ),
    AutoRecovery(
        service="redis",
        operation="restart",
        success=None,
        phase="decided",
        recovery_level="hard",
        attempt=1,
        unit_state_before="failed",
        command="sudo -n systemctl restart redis-server",
        risk_level="moderate",
        **RUN,
    ),
    AutoRecovery(
        service="redis",
        operation="check",
        success=False,
        phase="verified",
        attempt=1,
        reason="ssh: connection refused",
        **RUN,
    ),
    AutoRecovery(
        service="redis",
        operation="recover",
        success=True,
        duration_seconds=2.5,
        phase="finished",
        outcome="recovered",
        reason="hard: PONG and active",
        recovery_level="hard",
        attempts=1,
        **RUN,
    ),
    AutoRecovery(
        service="redis",
        operation="resume",
        success=False,
        phase="skipped",
        resumed_ids=["r0"],
        reason="auto_recovery.enabled is false",
    ),
    ServiceOperation(
        service="redis",
        operation="stop",
        user=ALICE,
        source_ip="10.0.0.5",
        success=True,
        duration_seconds=1.25,
        exit_code=0,
        ssh_key_used=True,
        phase="finished",
        operation_id="op1",
        unit="redis-server.service",
        unit_state_before="active",
        unit_state_after="inactive",
        detail="stopped",
        circuit_breaker_opened=True,
        outcome="success",
    ),
    SshCommand(
        service="redis",
        operation="restart",
        success=False,
        duration_seconds=1.0,
        phase="finished",
        error="cut at timeout after 1s",
        command="sudo -n systemctl restart redis-server",
        host="redis@198.18.0.2:22",
        context={"recovery_id": "r1", "recovery_level": None, "attempt": 1},
        cut_after_seconds=1.0,
    ),
    CircuitBreaker(
        service="redis",
        operation="open",
        success=True,
        recovery_id="r1",
        reason="3 recoveries within 300s",
        recoveries=3,
    ),
    CircuitBreaker(service="redis", operation="reset", success=True, was_open=True, reason=None),
    SecurityViolation(
        service=None,
        operation="POST /webhook",
        success=False,
        command_validated=False,
        risk_level="high",
        reason="invalid_token",
        detail="wrong token",
        user_agent=None,
    ),
    SecurityViolationSummary(
        service=None,
        operation="refused_requests",
        success=False,
        count=4,
        first_seen="2025-10-10T14:30:00Z",
        last_seen="2025-10-10T14:31:00Z",
        reasons={"invalid_token": 4},
        last_operation="POST /webhook",
        interval_seconds=60.0,
        other_sources=True,
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.event_type}-{e.operation}")
def test_an_event_reads_back_as_the_same_event(event: Event) -> None:
    line = json.loads(encode(event))
    assert from_json(line) == event
    assert to_json(from_json(line)) == line


def test_a_phase_writes_its_own_fields_in_order() -> None:
    decided = to_json(EVENTS[2])
    assert list(decided) == [
        *("timestamp", "event_type", "service", "operation", "user", "source_ip", "result"),
        *("security", "recovery_id", "alert_fingerprints", "dry_run", "phase"),
        *("recovery_level", "attempt", "unit_state_before", "command"),
    ]
    assert decided["security"] == {
        "command_validated": True,
        "risk_level": "moderate",
        "ssh_key_used": False,
    }
    finished = to_json(EVENTS[4])
    assert finished["result"] == {
        "success": True,
        "duration_seconds": 2.5,
        "exit_code": None,
        "outcome": "recovered",
    }
    ssh = to_json(EVENTS[7])
    assert ssh["recovery_level"] is None  # in the context: written, as null
    assert "stdout" not in ssh
    assert "outcome" not in ssh["result"]


def test_a_field_of_the_wrong_type_reads_as_none_and_an_unknown_type_as_other() -> None:
    line = to_json(EVENTS[4])
    line |= {"attempts": "two", "recovery_level": 3, "user": "root"}
    line["result"] |= {"success": "yes", "duration_seconds": True}
    event = from_json(line)
    assert isinstance(event, AutoRecovery)
    assert (event.attempts, event.recovery_level) == (None, None)
    assert (event.success, event.duration_seconds) == (None, None)
    assert event.user == Actor(id="unknown", email=None, role="unknown")
    other = from_json({"event_type": "from_another_tool", "operation": "x"})
    assert isinstance(other, OtherEvent)
    assert (other.event_type, other.operation, other.timestamp) == ("from_another_tool", "x", "")
