"""demo/timeline.py's reading of its sources, on recorded samples (no stack needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from demo.timeline import (
    Event,
    Timeline,
    _audit_text,
    _logfmt,
    _pop_webhook,
    audit_events,
    command_anchors,
    parse_time,
)
from testhost.host import Invocation

T0 = datetime(2025, 10, 10, 14, 30, tzinfo=UTC).timestamp()


def test_parse_time_keeps_sub_second_digits():
    assert parse_time("2025-10-10T14:30:00Z") == T0
    assert parse_time("2025-10-10T14:30:00.123456789Z") == pytest.approx(T0 + 0.123456789)
    assert parse_time("2025-10-10T16:30:01.5+02:00") == pytest.approx(T0 + 1.5)
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("yesterday")


def test_logfmt_of_an_alertmanager_line():
    line = (
        "ts=2025-10-10T14:30:00.580Z caller=notify.go:743 level=debug component=dispatcher "
        'receiver=remediator integration=webhook[0] msg="Notify success" attempts=1'
    )
    fields = _logfmt(line)
    assert fields["msg"] == "Notify success"
    assert fields["receiver"] == "remediator"
    assert parse_time(fields["ts"]) == pytest.approx(T0 + 0.58)


def webhook(second: int) -> dict:
    return {
        "timestamp": datetime.fromtimestamp(T0 + second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_type": "webhook",
        "alerts": [
            {"alertname": "RedisDown", "status": "firing", "disposition": "recovery_started"}
        ],
    }


def test_deliveries_pair_with_the_webhook_events_in_order():
    audit = [webhook(0), {"event_type": "auto_recovery"}, webhook(5), webhook(9)]
    pending = [0, 2, 3]
    assert _pop_webhook(audit, pending, T0 + 0.4) == 0
    assert _pop_webhook(audit, pending, T0 + 4.9) is None  # audited later: not this delivery
    assert pending == [2, 3]
    assert _pop_webhook(audit, pending, T0 + 9.2) == 3  # 5 was never confirmed: skipped
    assert pending == []


def test_audit_events_follow_their_anchors_within_their_second():
    audit = [
        webhook(0),
        {
            "timestamp": "2025-10-10T14:30:00Z",
            "event_type": "auto_recovery",
            "phase": "started",
            "recovery_id": "r1",
        },
        {
            "timestamp": "2025-10-10T14:30:00Z",
            "event_type": "ssh_command",
            "operation": "restart",
            "phase": "finished",
        },
        {
            "timestamp": "2025-10-10T14:30:00Z",
            "event_type": "auto_recovery",
            "phase": "finished",
            "outcome": "recovered",
            "reason": "hard: PONG",
        },
    ]
    inv = Invocation(
        "restart", "redis-server.service", T0 + 0.6, 0, 0, "autobot", [], 0, "done", T0 + 0.7
    )
    anchors = command_anchors(audit, [inv]) | {0: T0 + 0.5}
    assert anchors == {2: T0 + 0.7, 0: T0 + 0.5}
    started, finished = audit_events(audit, T0, anchors)
    assert started.whole_second
    assert started.at == finished.at == T0  # the recorded second, as printed
    assert T0 + 0.5 <= started.sort_key < T0 + 0.6  # after the delivery, before the restart
    assert T0 + 0.7 <= finished.sort_key < T0 + 1  # after the restart ended on the host


def test_audit_texts():
    assert _audit_text({"event_type": "ssh_command"}) is None
    decided = {
        "event_type": "auto_recovery",
        "phase": "decided",
        "attempt": 1,
        "recovery_level": "soft",
        "unit_state_before": "active",
        "command": "sudo -n systemctl reload redis-server",
    }
    assert _audit_text(decided) == (
        "attempt 1: soft recovery, unit active: sudo -n systemctl reload redis-server"
    )
    opened = {"event_type": "circuit_breaker", "operation": "open", "reason": "3 recoveries"}
    assert _audit_text(opened) == "circuit breaker open: 3 recoveries"
    summary = {
        "event_type": "security_violation_summary",
        "source_ip": "127.0.0.1",
        "count": 7,
        "reasons": {"invalid_token": 5, "missing_token": 2},
    }
    assert _audit_text(summary) == (
        "7 refused requests from 127.0.0.1 (invalid_token 5, missing_token 2)"
    )
    assert "from other sources" in str(_audit_text(summary | {"other_sources": True}))


def test_milestones_summary_and_render():
    t = Timeline(T0)
    t.add(
        Event(T0 + 3.5, "ready", "redis-server: Ready to accept connections", "host journal"),
        Event(T0 + 2.0, "alert", "RedisServiceFailed firing", "Prometheus rule"),
        Event(T0 + 3.0, "webhook", "delivered", "Alertmanager log"),
        Event(
            T0 + 3, "remediator", "recovery started", "audit log", whole_second=True, key=T0 + 3.01
        ),
        Event(T0 + 3.2, "action", "systemctl restart", "host systemctl log"),
        Event(T0 + 5.0, "pong", "PING -> PONG", "Prometheus scrape"),
    )
    assert [e.stage for e in t.events] == [
        "alert",
        "webhook",
        "remediator",
        "action",
        "ready",
        "pong",
    ]
    assert t.milestones() == {
        "alert": 2.0,
        "webhook": 3.0,
        "action": pytest.approx(3.2),
        "ready": 3.5,
        "pong": 5.0,
    }
    assert t.summary().startswith("Redis ready again 3.50 s after the fault: detection 3.00 s")
    text = t.render()
    assert "14:30:03.000" in text
    assert "14:30:03    " in text  # a whole second: no decimals
    assert "+3.0..4.0 s" in text  # but an interval after the fault
    assert "[audit log]" in text
