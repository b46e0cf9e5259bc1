"""The remediator's test helpers: a config on disk, notifications as Alertmanager sends them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_autoheal.config import Config, load_config

TOKEN = "webhook-secret-token"
_counter = itertools.count(1)


def write_config(tmp_path: Path, data: dict[str, Any]) -> Config:
    """Write `data` (with the remediator's files filled in) as config.yml and load it."""
    token = tmp_path / "webhook.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    data = dict(data)
    data.setdefault("targets", [{"name": "redis"}])
    remediator = {
        "webhook_token_file": str(token),
        "state_dir": str(tmp_path / "state"),
        **data.get("remediator", {}),
    }
    data["remediator"] = remediator
    audit = {"path": str(tmp_path / "audit" / "audit.log"), **data.get("audit", {})}
    data["audit"] = audit
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Two targets without SSH (nothing can run on them) and short timings."""
    return write_config(
        tmp_path,
        {
            "targets": [{"name": "redis"}, {"name": "cache"}],
            "auto_recovery": {"retry_delay_seconds": 0.01, "stable_seconds": 0},
        },
    )


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
