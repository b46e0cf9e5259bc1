"""A target's health now: its three layers probed (redis_autoheal.probe, as the exporter
does) and judged healthy, warning or critical by the runbook's thresholds, with its circuit
breaker and its last recoveries. The worst judgement is the target's status and the exit code
of `redis-autoheal health` (Nagios: 0, 1, 2); the README lists what each check judges.

`Thresholds()` repeats alerts/thresholds.yml's numbers, as an installed package has no alerts/
directory; tests/remediator/test_health.py fails if the two differ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from redis_autoheal.probe import (
    ConnectivityResult,
    Layer,
    LayerResult,
    PerformanceResult,
    Reason,
    SystemdResult,
)
from redis_autoheal.units import RUNNING, STOPPED
from remediator.audit import utc_timestamp
from remediator.auditread import latest_events
from remediator.errors import AuditReadError, BreakerStateError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis_autoheal.config import Audit, CircuitBreaker
    from redis_autoheal.probe import Prober
    from remediator.breaker import BreakerStore

log = logging.getLogger(__name__)

MIB = 1024 * 1024
RECOVERIES_SHOWN = 5
LATENCY_PINGS = 3


class Status(IntEnum):
    """A judgement; the value is the Nagios exit code."""

    HEALTHY = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Band:
    """The runbook's bands: warning from `warning` (inclusive), critical above `critical`."""

    warning: float
    critical: float

    def judge(self, value: float) -> Status:
        if value > self.critical:
            return Status.CRITICAL
        if value >= self.warning:
            return Status.WARNING
        return Status.HEALTHY


@dataclass(frozen=True)
class Thresholds:
    """alerts/thresholds.yml's numbers; see the module docstring."""

    ping_latency_ms: Band = Band(5, 50)
    memory_used_mb: Band = Band(3072, 4000)
    connected_clients: Band = Band(8000, 9500)
    ops_per_sec: Band = Band(10000, 50000)
    memory_near_max_percent: float = 75
    clients_near_max_percent: float = 80


@dataclass
class Check:
    """One judged measurement."""

    name: str
    status: Status
    detail: str
    value: float | None = None
    warning: float | None = None
    critical: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.label,
            "value": self.value,
            "warning": self.warning,
            "critical": self.critical,
            "detail": self.detail,
        }


@dataclass
class LayerHealth:
    """One layer: what the probe found and the checks made of it."""

    result: LayerResult
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return max((c.status for c in self.checks), default=Status.HEALTHY)

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "status": self.status.label,
            "success": r.success,
            "duration_seconds": round(r.duration_seconds, 6),
            "reason": r.reason.value if r.reason else None,
            "message": r.message,
            **self.facts,
            "checks": [c.as_json() for c in self.checks],
        }


def _band_check(name: str, value: float, band: Band, what: str) -> Check:
    status = band.judge(value)
    scale = f"warning from {band.warning:g}, critical above {band.critical:g}"
    return Check(name, status, f"{what} ({scale})", value, band.warning, band.critical)


def _number(info: Mapping[str, str], name: str) -> float | None:
    try:
        return float(info[name])
    except (KeyError, ValueError):
        return None


def judge_connectivity(result: LayerResult, t: Thresholds) -> LayerHealth:
    layer = LayerHealth(result)
    if not isinstance(result, ConnectivityResult) or not result.success:
        layer.checks.append(Check("ping", Status.CRITICAL, f"PING failed: {result.message}"))
        layer.facts["latency_ms"] = None
        return layer
    ms = (result.latency_seconds or 0.0) * 1000
    layer.facts["latency_ms"] = round(ms, 3)
    layer.checks.append(Check("ping", Status.HEALTHY, "PONG"))
    layer.checks.append(_band_check("ping_latency_ms", ms, t.ping_latency_ms, f"{ms:.2f} ms"))
    return layer


def judge_systemd(result: LayerResult) -> LayerHealth:
    layer = LayerHealth(result)
    state = result.state if isinstance(result, SystemdResult) else None
    unit = result.unit if isinstance(result, SystemdResult) else ""
    layer.facts.update(
        unit=unit,
        ssh_up=isinstance(result, SystemdResult) and result.ssh_up,
        state=state,
    )
    if result.reason is Reason.SSH_NOT_CONFIGURED:
        detail = "no ssh section: the unit's state is unknown and the remediator cannot act"
        layer.checks.append(Check("unit_state", Status.WARNING, detail))
    elif state is None:
        detail = f"cannot read the unit's state, remediation is impossible: {result.message}"
        layer.checks.append(Check("unit_state", Status.CRITICAL, detail))
    elif state in RUNNING:
        layer.checks.append(Check("unit_state", Status.HEALTHY, f"{unit} is {state}"))
    elif state in STOPPED:
        layer.checks.append(Check("unit_state", Status.CRITICAL, f"{unit} is {state}"))
    else:
        detail = f"{unit} is {state}: in transition, or a state the runbook does not cover"
        layer.checks.append(Check("unit_state", Status.WARNING, detail))
    return layer


def _performance_facts(result: PerformanceResult) -> dict[str, Any]:
    info = result.info
    used = _number(info, "used_memory")
    maxmemory = _number(info, "maxmemory")
    maxclients = None if result.maxclients is None else _number({"m": result.maxclients}, "m")
    return {
        "memory_used_mb": None if used is None else round(used / MIB, 3),
        "memory_max_mb": None if not maxmemory else round(maxmemory / MIB, 3),
        "connected_clients": _number(info, "connected_clients"),
        "maxclients": maxclients,
        "ops_per_sec": _number(info, "instantaneous_ops_per_sec"),
        "uptime_seconds": _number(info, "uptime_in_seconds"),
        "rejected_connections": _number(info, "rejected_connections"),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "role": info.get("role"),
        "redis_version": info.get("redis_version"),
    }


def judge_performance(result: LayerResult, t: Thresholds, pong: bool) -> LayerHealth:
    layer = LayerHealth(result)
    if not isinstance(result, PerformanceResult) or not result.success:
        status = Status.WARNING if pong else Status.CRITICAL
        layer.checks.append(Check("info", status, f"INFO failed: {result.message}"))
        return layer
    facts = layer.facts = _performance_facts(result)
    checks = layer.checks
    used, maxmemory = facts["memory_used_mb"], facts["memory_max_mb"]
    if used is not None:
        checks.append(_band_check("memory_used_mb", used, t.memory_used_mb, f"{used:.1f} MB used"))
        if maxmemory:
            pct = 100 * used / maxmemory
            near = Status.WARNING if pct > t.memory_near_max_percent else Status.HEALTHY
            limit = t.memory_near_max_percent
            detail = f"{pct:.1f} % of maxmemory (warning above {limit:g} %)"
            checks.append(Check("memory_percent_of_max", near, detail, round(pct, 2), limit))
    clients, maxclients = facts["connected_clients"], facts["maxclients"]
    if clients is not None:
        band = t.connected_clients
        checks.append(_band_check("connected_clients", clients, band, f"{clients:g} clients"))
        if maxclients:
            pct = 100 * clients / maxclients
            near = Status.WARNING if pct > t.clients_near_max_percent else Status.HEALTHY
            limit = t.clients_near_max_percent
            detail = f"{pct:.1f} % of maxclients (warning above {limit:g} %)"
            checks.append(Check("clients_percent_of_max", near, detail, round(pct, 2), limit))
    ops = facts["ops_per_sec"]
    if ops is not None:
        checks.append(_band_check("ops_per_sec", ops, t.ops_per_sec, f"{ops:g} ops/s"))
    bgsave = facts["rdb_last_bgsave_status"]
    if bgsave is not None:
        failed = bgsave != "ok"
        detail = "the last background save failed" if failed else "last background save ok"
        checks.append(
            Check("rdb_last_bgsave", Status.CRITICAL if failed else Status.HEALTHY, detail)
        )
    return layer


def breaker_health(
    store: BreakerStore, target: str, settings: CircuitBreaker
) -> tuple[Status, dict[str, Any]]:
    """The breaker's state as JSON, and how it counts in the target's status."""
    status, data = _breaker(store, target, settings)
    return status, {**data, "status": status.label}


def _breaker(
    store: BreakerStore, target: str, settings: CircuitBreaker
) -> tuple[Status, dict[str, Any]]:
    window = settings.window_seconds
    base = {"max_recoveries": settings.max_recoveries, "window_seconds": window}
    try:
        state = store.state(target)
    except BreakerStateError as e:
        return Status.WARNING, {"open": None, **base, "error": str(e)}
    now = time.time()
    opened = state.opened_at
    data = {
        "open": state.open,
        "opened_at": None if opened is None else utc_timestamp_of(opened),
        "reason": state.reason,
        "recent_recoveries": sum(1 for t in state.recoveries if now - t < window),
        **base,
    }
    return (Status.CRITICAL if state.open else Status.HEALTHY), data


def utc_timestamp_of(epoch: float) -> str:
    """The audit log's timestamp form of a POSIX time."""
    return utc_timestamp(datetime.fromtimestamp(epoch, UTC))


def recent_recoveries(
    settings: Audit, target: str, limit: int = RECOVERIES_SHOWN
) -> tuple[list[dict[str, Any]], str | None]:
    """The target's last finished recoveries, newest first, and why none could be read."""
    try:
        events = latest_events(settings.path)
    except AuditReadError as e:
        return [], str(e)
    found = [
        e
        for e in events
        if e.get("event_type") == "auto_recovery"
        and e.get("phase") == "finished"
        and e.get("service") == target
    ]
    return [_recovery(e) for e in reversed(found[-limit:])], None


def _recovery(event: Mapping[str, Any]) -> dict[str, Any]:
    """A finished recovery's event as the API shows it; a field of the wrong type is null."""
    result = event.get("result")
    result = result if isinstance(result, dict) else {}

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    duration = result.get("duration_seconds")
    attempts = event.get("attempts")
    success = result.get("success")
    return {
        "recovery_id": text(event.get("recovery_id")),
        "finished_at": text(event.get("timestamp")),
        "outcome": text(event.get("outcome")),
        "success": success if isinstance(success, bool) else None,
        "recovery_level": text(event.get("recovery_level")),
        "attempts": attempts if type(attempts) is int else None,
        "duration_seconds": (
            float(duration)
            if isinstance(duration, int | float) and not isinstance(duration, bool)
            else None
        ),
        "reason": text(event.get("reason")),
    }


@dataclass
class TargetHealth:
    """Everything one health check found about one target."""

    target: str
    checked_at: str
    layers: dict[str, LayerHealth]
    breaker_status: Status
    breaker: dict[str, Any]
    recoveries: list[dict[str, Any]]
    recoveries_error: str | None = None
    activity: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return max([self.breaker_status, *(layer.status for layer in self.layers.values())])

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "target": self.target,
            "status": self.status.label,
            "checked_at": self.checked_at,
            "layers": {name: layer.as_json() for name, layer in self.layers.items()},
            "circuit_breaker": self.breaker,
            "recoveries": self.recoveries,
        }
        if self.recoveries_error:
            data["recoveries_error"] = self.recoveries_error
        data.update(self.activity)
        return data


def judge(results: Iterable[LayerResult], thresholds: Thresholds) -> dict[str, LayerHealth]:
    """Each layer's result judged; see the module docstring."""
    by_layer = {r.layer.value: r for r in results}
    connectivity = judge_connectivity(by_layer["connectivity"], thresholds)
    pong = by_layer["connectivity"].success
    return {
        "connectivity": connectivity,
        "systemd": judge_systemd(by_layer["systemd"]),
        "performance": judge_performance(by_layer["performance"], thresholds, pong),
    }


async def check_target(  # noqa: PLR0913 -- each part is handed in by the API or the CLI
    prober: Prober,
    *,
    breaker: BreakerStore,
    breaker_settings: CircuitBreaker,
    audit: Audit,
    thresholds: Thresholds | None = None,
    activity: Mapping[str, Any] | None = None,
) -> TargetHealth:
    """Probe the three layers now and judge them, with the breaker and the last recoveries."""
    name = prober.target.name
    checked_at = utc_timestamp()
    results = await prober.probe(tuple(Layer), None)
    results = [
        await _steady_latency(prober, r) if r.layer is Layer.CONNECTIVITY else r for r in results
    ]
    layers = judge(results, thresholds or Thresholds())
    breaker_status, breaker_data = await asyncio.to_thread(
        breaker_health, breaker, name, breaker_settings
    )
    recoveries, error = await asyncio.to_thread(recent_recoveries, audit, name)
    return TargetHealth(
        target=name,
        checked_at=checked_at,
        layers=layers,
        breaker_status=breaker_status,
        breaker=breaker_data,
        recoveries=recoveries,
        recoveries_error=error,
        activity=dict(activity or {}),
    )


async def _steady_latency(prober: Prober, first: LayerResult) -> LayerResult:
    """The median of LATENCY_PINGS more PINGs on the now open connection, if the first worked.

    The first PING of a fresh client also connects (TCP, AUTH, CLIENT SETNAME), and one PING
    can meet a scheduling hiccup; the alert rule rides that out with `for: 2m`, a single check
    cannot. A failed PING among them is the answer.
    """
    if not first.success:
        return first
    again = [await prober.probe_layer(Layer.CONNECTIVITY, None) for _ in range(LATENCY_PINGS)]
    failed = [r for r in again if not r.success]
    if failed:
        return failed[0]
    return sorted(again, key=lambda r: getattr(r, "latency_seconds", 0.0) or 0.0)[len(again) // 2]


def render(health: TargetHealth) -> str:
    """The report for a person: one line per layer and check that is not healthy."""
    lines = [f"{health.target}: {health.status.label.upper()} (checked {health.checked_at})"]
    for name, layer in health.layers.items():
        lines.append(f"  {name:<13} {layer.status.label:<8} {_summary(name, layer)}")
        lines.extend(
            f"    {c.status.label:<8} {c.name}: {c.detail}"
            for c in layer.checks
            if c.status is not Status.HEALTHY
        )
    b = health.breaker
    if b.get("open") is None:
        breaker = f"unknown ({b.get('error')})"
    elif b["open"]:
        breaker = f"OPEN since {b['opened_at']}: {b['reason']}; auto-recovery is off"
    else:
        breaker = (
            f"closed ({b['recent_recoveries']} recovery(ies) in the last {b['window_seconds']:g}s)"
        )
    lines.append(f"  {'breaker':<13} {health.breaker_status.label:<8} {breaker}")
    if health.recoveries:
        lines.append("  last recoveries:")
        lines.extend(
            f"    {r['finished_at']}  {r['outcome'] or '-':<10} {r['recovery_level'] or '-':<8} "
            f"{r['duration_seconds'] or 0:.1f}s  {r['reason'] or ''}"
            for r in health.recoveries
        )
    elif health.recoveries_error:
        lines.append(f"  last recoveries: unknown ({health.recoveries_error})")
    else:
        lines.append("  last recoveries: none in the audit log")
    return "\n".join(lines)


def _summary(name: str, layer: LayerHealth) -> str:
    f, r = layer.facts, layer.result
    if name == "systemd":
        return f"{f['unit']} is {f['state']}" if f.get("state") else "unit state unknown"
    if not r.success:
        return f"failed ({r.reason.value if r.reason else 'error'})"
    if name == "connectivity":
        return f"PONG in {f['latency_ms']:.2f} ms"
    parts = []
    if f.get("memory_used_mb") is not None:
        parts.append(f"{f['memory_used_mb']:.1f} MB")
    if f.get("connected_clients") is not None:
        parts.append(f"{f['connected_clients']:g} clients")
    if f.get("ops_per_sec") is not None:
        parts.append(f"{f['ops_per_sec']:g} ops/s")
    if f.get("redis_version"):
        parts.append(f"{f['role']} {f['redis_version']}")
    return ", ".join(parts)
