"""The Alertmanager webhook payload (version 4), validated into typed values.

Only the fields the remediator reads are required; fields Alertmanager may add later are
ignored. Every error names the field: `alerts[2].labels.instance: must be a string`.

An alert's identity is its fingerprint (a hash of its label set) and its `startsAt`: the same
pair arrives again from each Alertmanager replica of an HA pair, from a retried delivery and
from every `repeat_interval`, while a new outage of the same alert starts at a new time.

Which alerts the remediator acts on (see `ACT_LABEL` and `TARGET_LABEL`): those that carry
`remediate="true"` and whose `instance` label is, exactly, the name of a configured target.
A label is only ever compared with configured names; it never becomes a host, a unit or any
part of a command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from remediator.errors import InvalidPayload

if TYPE_CHECKING:
    from collections.abc import Mapping

VERSION = "4"
TARGET_LABEL = "instance"  # set to the configured target name by the Prometheus config
ACT_LABEL = "remediate"  # "true" on the alerts the remediator acts on (alerts/ sets it)

Status = Literal["firing", "resolved"]
AlertKey = tuple[str, datetime]

_FINGERPRINT = re.compile(r"[0-9A-Za-z]{1,64}")
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    fingerprint: str

    @property
    def key(self) -> AlertKey:
        """What identifies one outage's alert across deliveries: fingerprint and startsAt."""
        return (self.fingerprint, self.starts_at)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def target_name(self) -> str | None:
        return self.labels.get(TARGET_LABEL)

    @property
    def wants_remediation(self) -> bool:
        return self.labels.get(ACT_LABEL) == "true"

    def summary(self) -> dict[str, str]:
        """What the audit log keeps of the alert."""
        return {
            "alertname": self.name,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at.isoformat().replace("+00:00", "Z"),
            TARGET_LABEL: self.target_name or "",
        }


@dataclass(frozen=True)
class Notification:
    """One webhook delivery: a group of alerts."""

    status: Status
    receiver: str
    group_key: str
    alerts: tuple[Alert, ...]
    truncated_alerts: int


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise InvalidPayload(f"{where}: must be an object")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidPayload(f"{where}: must be a string")
    return value


def _status(value: object, where: str) -> Status:
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise InvalidPayload(f"{where}: must be 'firing' or 'resolved'")


def _labels(value: object, where: str) -> dict[str, str]:
    return {str(k): _string(v, f"{where}.{k}") for k, v in _object(value, where).items()}


def parse_time(value: object, where: str) -> datetime:
    """An RFC 3339 time as Alertmanager writes it (nanoseconds are cut to microseconds)."""
    m = _RFC3339.fullmatch(_string(value, where))
    if not m:
        raise InvalidPayload(f"{where}: must be an RFC 3339 time, got {value!r}")
    day, clock, fraction, zone = m.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        # Out of range once in UTC (0001-01-01T00:00:00+01:00) is OverflowError, not ValueError.
        return datetime.fromisoformat(f"{day}T{clock}.{micros}{zone}").astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidPayload(f"{where}: not a valid time: {value!r}") from None


def _alert(value: object, where: str) -> Alert:
    data = _object(value, where)
    for required in ("status", "labels", "startsAt", "fingerprint"):
        if required not in data:
            raise InvalidPayload(f"{where}.{required}: is required")
    fingerprint = _string(data["fingerprint"], f"{where}.fingerprint")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise InvalidPayload(f"{where}.fingerprint: must be 1-64 letters or digits")
    return Alert(
        status=_status(data["status"], f"{where}.status"),
        labels=_labels(data["labels"], f"{where}.labels"),
        annotations=_labels(data.get("annotations", {}), f"{where}.annotations"),
        starts_at=parse_time(data["startsAt"], f"{where}.startsAt"),
        fingerprint=fingerprint,
    )


def parse_notification(data: object) -> Notification:
    """Validate a decoded webhook body; raise InvalidPayload naming the first bad field."""
    body = _object(data, "body")
    version = body.get("version")
    if version != VERSION:
        raise InvalidPayload(f"version: must be {VERSION!r}, got {version!r}")
    for required in ("status", "receiver", "groupKey", "alerts"):
        if required not in body:
            raise InvalidPayload(f"{required}: is required")
    alerts = body["alerts"]
    if not isinstance(alerts, list):
        raise InvalidPayload("alerts: must be a list")
    truncated = body.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise InvalidPayload("truncatedAlerts: must be a non-negative integer")
    for optional in ("groupLabels", "commonLabels", "commonAnnotations"):
        if optional in body:
            _labels(body[optional], optional)
    return Notification(
        status=_status(body["status"], "status"),
        receiver=_string(body["receiver"], "receiver"),
        group_key=_string(body["groupKey"], "groupKey"),
        alerts=tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)),
        truncated_alerts=truncated,
    )
