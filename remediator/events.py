"""The audit log's events as types: one frozen dataclass per `event_type`, encoded into the
JSON the contract names in one place (`to_json`) and read back into the same types in one
place (`from_json`).

Each event has the runbook's common fields (timestamp, service, operation, user, source_ip,
`result` and `security`), flat here, and its own after them. Which of its own fields a line
carries, and in what order, depends on its phase (`_keys`): a field left out is not written,
so the lines stay as they were when each writer built its dict. Reading is forgiving: a field
missing or of the wrong type (a hand-edited line, an older version) reads as None, and an
unknown `event_type` as `OtherEvent`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

RiskLevel = Literal["none", "low", "moderate", "high"]
RISK_LEVELS: tuple[RiskLevel, ...] = ("none", "low", "moderate", "high")


def utc_timestamp(now: datetime | None = None) -> str:
    """The runbook's timestamp form: `2025-10-10T14:30:00Z`."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Actor:
    """Who an event is attributed to: a person of the operator API, or the remediator."""

    id: str
    email: str | None
    role: str

    def as_json(self) -> dict[str, str | None]:
        return {"id": self.id, "email": self.email, "role": self.role}


AUTOHEAL = Actor(id="redis-autoheal", email=None, role="system")


@dataclass(frozen=True, kw_only=True)
class Event:
    """The fields every event has. `success` is None on an event written before its action."""

    EVENT_TYPE: ClassVar[str] = ""
    timestamp: str = field(default_factory=utc_timestamp)
    service: str | None
    operation: str
    user: Actor = AUTOHEAL
    source_ip: str | None = None
    success: bool | None
    duration_seconds: float | None = None
    exit_code: int | None = None
    command_validated: bool = True
    risk_level: RiskLevel = "none"
    ssh_key_used: bool = False

    @property
    def event_type(self) -> str:
        return self.EVENT_TYPE

    def _keys(self) -> tuple[str, ...]:
        """The names of this event's own fields on disk, in order."""
        return ()

    def own_fields(self) -> dict[str, Any]:
        """This event's own fields as the log holds them, in order."""
        return {k: getattr(self, k) for k in self._keys()}

    @property
    def result_outcome(self) -> str | None:
        """`result.outcome`: how a recovery, operation or command ended; None: not written."""
        return None


@dataclass(frozen=True, kw_only=True)
class OtherEvent(Event):
    """An event of a type this version does not know, read back with its common fields."""

    kind: str | None = None

    @property
    def event_type(self) -> str:
        return self.kind or ""


@dataclass(frozen=True, kw_only=True)
class Webhook(Event):
    """An Alertmanager notification received, with what was decided for each alert."""

    EVENT_TYPE: ClassVar[str] = "webhook"
    receiver: str | None = None
    group_key: str | None = None
    status: str | None = None
    truncated_alerts: int | None = None
    alerts: list[dict[str, str]] | None = None

    def _keys(self) -> tuple[str, ...]:
        return ("receiver", "group_key", "status", "truncated_alerts", "alerts")


_RUN = ("recovery_id", "alert_fingerprints", "dry_run", "phase")  # on each event of a run
_STEP = ("recovery_level", "attempt", "unit_state_before")
_RECOVERY_KEYS = {
    "claimed": ("recovery_id", "alert_fingerprints", "phase", "reason"),  # replicas (etcd)
    "started": (*_RUN, "alerts"),
    "decided": (*_RUN, *_STEP, "command"),
    "verified": (*_RUN, *_STEP, "unit_state_after", "reason"),
    "finished": (*_RUN, "outcome", "reason", "recovery_level", "attempts"),
    "suppressed": ("phase", "outcome", "reason", "alert_fingerprints", "alerts"),  # no run
}


@dataclass(frozen=True, kw_only=True)
class AutoRecovery(Event):
    """A recovery's step: started, decided, verified, finished; or one suppressed at the door;
    or (operation `resume`) the re-check of what the last run cut."""

    EVENT_TYPE: ClassVar[str] = "auto_recovery"
    phase: str | None = None
    recovery_id: str | None = None
    alert_fingerprints: list[str] | None = None
    dry_run: bool | None = None
    alerts: list[dict[str, str]] | None = None
    recovery_level: str | None = None
    attempt: int | None = None
    attempts: int | None = None
    unit_state_before: str | None = None
    unit_state_after: str | None = None
    command: str | None = None
    outcome: str | None = None
    reason: str | None = None
    resumed_ids: list[str] | None = None
    found_at_start: bool = False

    def _keys(self) -> tuple[str, ...]:
        if self.operation == "resume":
            return ("phase", "recovery_id", "resumed_ids", "reason")
        if self.found_at_start:
            return (*_RUN, "outcome", "reason", "found_at_start")
        return _RECOVERY_KEYS.get(self.phase or "", _RECOVERY_KEYS["finished"])

    @property
    def result_outcome(self) -> str | None:
        return self.outcome if self.phase == "finished" else None


@dataclass(frozen=True, kw_only=True)
class ServiceOperation(Event):
    """A manual operation of the operator API: started, finished, or refused."""

    EVENT_TYPE: ClassVar[str] = "service_operation"
    phase: str | None = None
    operation_id: str | None = None
    unit: str | None = None
    unit_state_before: str | None = None
    unit_state_after: str | None = None
    detail: str | None = None
    circuit_breaker_opened: bool | None = None
    outcome: str | None = None
    reason: str | None = None
    found_at_start: bool = False

    def _keys(self) -> tuple[str, ...]:
        if self.phase == "refused":
            return ("phase", "operation_id", "reason", "detail")
        if self.phase != "finished":
            return ("phase", "operation_id", "unit")
        if self.found_at_start:
            return ("phase", "operation_id", "unit", "outcome", "reason", "found_at_start")
        ended = ("unit_state_before", "unit_state_after", "detail", "circuit_breaker_opened")
        refused = ("reason",) if self.reason is not None else ()
        return ("phase", "operation_id", "unit", *ended, "outcome", *refused)

    @property
    def result_outcome(self) -> str | None:
        return self.outcome if self.phase == "finished" else None


@dataclass(frozen=True, kw_only=True)
class SshCommand(Event):
    """One command on a target's host: before it runs, and after (or when cut)."""

    EVENT_TYPE: ClassVar[str] = "ssh_command"
    phase: str | None = None
    outcome: str | None = None  # "interrupted": the remediator stopped waiting for it
    error: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    command: str | None = None
    host: str | None = None
    context: dict[str, Any] = field(default_factory=dict)  # the recovery's or operation's ids
    start_limit_wait_seconds: float | None = None
    cut_after_seconds: float | None = None

    CONTEXT_KEYS: ClassVar[tuple[str, ...]] = (
        "recovery_id",
        "recovery_level",
        "attempt",
        "operation_id",
    )

    def own_fields(self) -> dict[str, Any]:
        said = ("outcome", "error", "stdout", "stderr")
        fields: dict[str, Any] = {"phase": self.phase}
        fields |= {k: getattr(self, k) for k in said if getattr(self, k) is not None}
        fields |= {"command": self.command, "host": self.host, **self.context}
        waits = ("start_limit_wait_seconds", "cut_after_seconds")
        return fields | {k: getattr(self, k) for k in waits if getattr(self, k) is not None}

    @property
    def result_outcome(self) -> str | None:
        return self.outcome


@dataclass(frozen=True, kw_only=True)
class CircuitBreaker(Event):
    """A target's circuit breaker opened (counted full, or a manual stop) or reset."""

    EVENT_TYPE: ClassVar[str] = "circuit_breaker"
    recovery_id: str | None = None
    operation_id: str | None = None
    reason: str | None = None
    recoveries: int | None = None
    was_open: bool | None = None

    def _keys(self) -> tuple[str, ...]:
        if self.operation == "reset":
            return ("was_open", "reason")
        ids = [k for k in ("recovery_id", "operation_id") if getattr(self, k) is not None]
        return (*ids, "reason", *(("recoveries",) if self.recoveries is not None else ()))


@dataclass(frozen=True, kw_only=True)
class SecurityViolation(Event):
    """A refused request (token, role, address) or a whitelist-refused command."""

    EVENT_TYPE: ClassVar[str] = "security_violation"
    reason: str | None = None
    detail: str | None = None  # a request's: its own words; absent for a command
    user_agent: str | None = None

    def _keys(self) -> tuple[str, ...]:
        return ("reason",) if self.detail is None else ("reason", "detail", "user_agent")


@dataclass(frozen=True, kw_only=True)
class SecurityViolationSummary(Event):
    """One source's refused requests, counted over an interval (remediator.violations)."""

    EVENT_TYPE: ClassVar[str] = "security_violation_summary"
    count: int | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    reasons: dict[str, int] | None = None
    last_operation: str | None = None
    interval_seconds: float | None = None
    other_sources: bool = False  # the sources beyond the ones followed, together

    def _keys(self) -> tuple[str, ...]:
        keys = ("count", "first_seen", "last_seen", "reasons", "last_operation")
        return (*keys, "interval_seconds", *(("other_sources",) if self.other_sources else ()))


KINDS: dict[str, type[Event]] = {
    k.EVENT_TYPE: k
    for k in (
        Webhook,
        AutoRecovery,
        ServiceOperation,
        SshCommand,
        CircuitBreaker,
        SecurityViolation,
        SecurityViolationSummary,
    )
}


def to_json(event: Event) -> dict[str, Any]:
    """The event as the audit log holds it: the common fields, then its own."""
    duration = event.duration_seconds
    result: dict[str, Any] = {
        "success": event.success,
        "duration_seconds": None if duration is None else round(duration, 3),
        "exit_code": event.exit_code,
    }
    if (outcome := event.result_outcome) is not None:
        result["outcome"] = outcome
    data: dict[str, Any] = {
        "timestamp": event.timestamp,
        "event_type": event.event_type,
        "service": event.service,
        "operation": event.operation,
        "user": event.user.as_json(),
        "source_ip": event.source_ip,
        "result": result,
        "security": {
            "command_validated": event.command_validated,
            "risk_level": event.risk_level,
            "ssh_key_used": event.ssh_key_used,
        },
    }
    data.update(event.own_fields())
    return data


# Reading back: each value checked against its field's type; a mismatch reads as None.


def _of(value: object, kind: type | tuple[type, ...]) -> Any:  # noqa: ANN401 -- checked here
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        return None  # JSON's true is no number
    return value if isinstance(value, kind) else None


def _strs(value: object) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(v) for v in value]


def _dicts(value: object) -> list[dict[str, str]] | None:
    if not isinstance(value, list):
        return None
    return [{str(k): str(v) for k, v in d.items()} for d in value if isinstance(d, dict)]


def _counts(value: object) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


_NUMBER = (int, float)
_READERS: dict[str, Any] = {
    "alerts": _dicts,
    "alert_fingerprints": _strs,
    "resumed_ids": _strs,
    "reasons": _counts,
    **dict.fromkeys(
        (
            "truncated_alerts",
            "attempt",
            "attempts",
            "count",
            "recoveries",
        ),
        lambda v: _of(v, int),
    ),
    **dict.fromkeys(
        ("start_limit_wait_seconds", "cut_after_seconds", "interval_seconds"),
        lambda v: _of(v, _NUMBER),
    ),
    **dict.fromkeys(("dry_run", "circuit_breaker_opened", "was_open"), lambda v: _of(v, bool)),
    **dict.fromkeys(("found_at_start", "other_sources"), lambda v: v is True),
}


def _actor(value: object) -> Actor:
    if not isinstance(value, dict):
        return Actor(id="unknown", email=None, role="unknown")
    return Actor(
        id=_of(value.get("id"), str) or "unknown",
        email=_of(value.get("email"), str),
        role=_of(value.get("role"), str) or "unknown",
    )


def from_json(data: dict[str, Any]) -> Event:
    """An event read from the log, as its type; see the module docstring."""
    result = data.get("result") if isinstance(data.get("result"), dict) else {}
    security = data.get("security") if isinstance(data.get("security"), dict) else {}
    assert isinstance(result, dict)
    assert isinstance(security, dict)
    kind_name = data.get("event_type")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    risk = security.get("risk_level")
    common: dict[str, Any] = {
        "timestamp": _of(data.get("timestamp"), str) or "",
        "service": _of(data.get("service"), str),
        "operation": _of(data.get("operation"), str) or "",
        "user": _actor(data.get("user")),
        "source_ip": _of(data.get("source_ip"), str),
        "success": _of(result.get("success"), bool),
        "duration_seconds": _of(result.get("duration_seconds"), _NUMBER),
        "exit_code": _of(result.get("exit_code"), int),
        "command_validated": security.get("command_validated") is not False,
        "risk_level": risk if risk in RISK_LEVELS else "none",
        "ssh_key_used": security.get("ssh_key_used") is True,
    }
    if kind is None:
        return OtherEvent(**common, kind=_of(kind_name, str))
    own: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name in common or f.name == "context":
            continue
        read = _READERS.get(f.name, lambda v: _of(v, str))
        own[f.name] = read(data.get(f.name))
    if kind is SshCommand:
        own["context"] = {k: data[k] for k in SshCommand.CONTEXT_KEYS if k in data}
    return kind(**common, **own)
