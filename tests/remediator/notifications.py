"""Alerts and webhook bodies as Alertmanager sends them."""

from __future__ import annotations

import itertools
from typing import Any

_counter = itertools.count(1)


def alert(
    target: str | None = "redis",
    *,
    status: str = "firing",
    fingerprint: str | None = None,
    starts_at: str = "2025-10-10T14:30:00.123456789Z",
    name: str = "RedisDown",
    remediate: bool = True,
) -> dict[str, Any]:
    """One alert as Alertmanager serialises it."""
    labels = {"alertname": name, "severity": "critical"}
    if target is not None:
        labels["instance"] = target
    if remediate:
        labels["remediate"] = "true"
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "Redis is down", "description": "3 failed PINGs"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-10-10T14:40:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": fingerprint or f"{next(_counter):016x}",
    }


def notification(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A version 4 webhook body carrying `alerts`."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="RedisDown"}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "redis-autoheal",
        "groupLabels": {"alertname": "RedisDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": list(alerts),
    }
