"""The webhook payload: version 4 accepted as Alertmanager sends it; anything else refused with
the field that is wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.alertmanager import parse_notification, parse_time
from remediator.errors import InvalidPayload
from tests.remediator.conftest import alert, notification


def test_a_notification_parses_into_typed_alerts() -> None:
    n = parse_notification(notification(alert("redis", fingerprint="abc123")))
    (a,) = n.alerts
    assert (n.status, n.receiver, n.truncated_alerts) == ("firing", "redis-autoheal", 0)
    assert a.target_name == "redis"
    assert a.wants_remediation
    assert a.key == ("abc123", datetime(2025, 10, 10, 14, 30, 0, 123456, tzinfo=UTC))


def test_the_same_start_in_two_spellings_is_one_key() -> None:
    a = parse_time("2025-10-10T16:30:00.123456789+02:00", "t")
    b = parse_time("2025-10-10T14:30:00.1234567Z", "t")
    assert a == b


def test_unknown_fields_are_ignored() -> None:
    body = notification(alert())
    body["somethingNew"] = {"x": 1}
    body["alerts"][0]["newField"] = [1, 2]
    assert len(parse_notification(body).alerts) == 1


def _with(change: Any) -> dict[str, Any]:
    body = notification(alert())
    change(body)
    return body


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "body: must be an object"),
        (_with(lambda b: b.update(version="3")), "version: must be '4'"),
        (_with(lambda b: b.pop("version")), "version: must be '4', got None"),
        (_with(lambda b: b.pop("alerts")), "alerts: is required"),
        (_with(lambda b: b.update(alerts={})), "alerts: must be a list"),
        (_with(lambda b: b.update(status="burning")), "status: must be 'firing' or 'resolved'"),
        (_with(lambda b: b.update(truncatedAlerts=-1)), "truncatedAlerts: must be a non-negative"),
        (
            _with(lambda b: b.update(truncatedAlerts=True)),
            "truncatedAlerts: must be a non-negative",
        ),
        (_with(lambda b: b.update(commonLabels=[])), "commonLabels: must be an object"),
        (_with(lambda b: b["alerts"].append("x")), "alerts[1]: must be an object"),
        (_with(lambda b: b["alerts"][0].pop("fingerprint")), "alerts[0].fingerprint: is required"),
        (
            _with(lambda b: b["alerts"][0].update(fingerprint="../etc")),
            "alerts[0].fingerprint: must be 1-64 letters or digits",
        ),
        (
            _with(lambda b: b["alerts"][0]["labels"].update(instance=5)),
            "alerts[0].labels.instance: must be a string",
        ),
        (
            _with(lambda b: b["alerts"][0].update(startsAt="yesterday")),
            "alerts[0].startsAt: must be an RFC 3339 time",
        ),
        (
            _with(lambda b: b["alerts"][0].update(startsAt="2025-13-40T00:00:00Z")),
            "alerts[0].startsAt: not a valid time",
        ),
        (
            _with(lambda b: b["alerts"][0].update(status="pending")),
            "alerts[0].status: must be 'firing' or 'resolved'",
        ),
    ],
)
def test_a_bad_payload_names_the_field(body: object, problem: str) -> None:
    with pytest.raises(InvalidPayload) as e:
        parse_notification(body)
    assert str(e.value).startswith(problem)
    assert "\n" not in str(e.value)
