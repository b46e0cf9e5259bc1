"""`redis-autoheal audit summary`: the runbook's daily, weekly and monthly audit review.

Reads the live audit log and its backups (remediator.auditread), keeps the events whose
timestamp falls in the window, and counts what the runbook's Routine Audit Tasks and Audit Alert
Conditions ask for. What is counted as what:

- a manual operation is a `service_operation` event of phase `finished` or `refused` (one per
  API call; an event without a phase, written by another tool in the runbook's format, counts
  too). It succeeded if `result.success` is true; a refused call is a failed one.
- auto-recovery attempts, by level: `auto_recovery` events of phase `verified` with a
  `recovery_level` (one per command tried); a recovery: phase `finished`, by outcome. The
  success rate is recovered / (recovered + exhausted): recoveries that ended healthy,
  suppressed, resolved, refused, aborted or in dry-run tried nothing to the end.
- recovery time: `result.duration_seconds` of recoveries that ended `recovered`, from the alert
  to verified (stable) health; p95 by the nearest-rank method.
- outside business hours: manual operations whose time, in `--timezone`, is not on a business
  day within business hours (default Monday-Friday 08:00-18:00 UTC; end exclusive).
- bursts: 3 or more state-changing commands (start, stop, restart, reload; automatic or manual:
  `ssh_command` events of phase `started`) on one target within 60 seconds, as the
  RedisOperationsBurst alert counts them. Operations less than 60 s apart are chained; a chain
  holding 3 within any 60 s is one burst.
- unexpected users: a manual operation by a user id the config does not list.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from redis_autoheal.commands import Action
from remediator.audit import utc_timestamp
from remediator.auditread import ReadStats, iter_events, parse_timestamp
from remediator.events import (
    AutoRecovery,
    CircuitBreaker,
    Event,
    SecurityViolation,
    SecurityViolationSummary,
    ServiceOperation,
    SshCommand,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis_autoheal.config import Config

BURST_OPERATIONS = 3  # alerts/thresholds.yml RedisOperationsBurst: {operations: 3, within: 1m}
BURST_SECONDS = 60.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANGING = frozenset(a.value for a in Action)
LISTED = 50  # at most this many entries of each list in the text output (JSON has them all)
_SINCE = re.compile(r"([1-9][0-9]{0,3})([hdw])")


def parse_since(text: str) -> timedelta:
    """`24h`, `7d`, `30d` (or any N h/d/w) as a duration; ValueError otherwise."""
    m = _SINCE.fullmatch(text)
    if not m:
        raise ValueError(f"must be like 24h, 7d or 30d, got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


@dataclass(frozen=True)
class BusinessHours:
    """When operations are expected: days (0 = Monday), [start, end) local time, a time zone."""

    days: frozenset[int] = frozenset(range(5))
    start: time = time(8)
    end: time = time(18)
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, hours: str, days: str, zone: str) -> BusinessHours:
        """From `08:00-18:00`, `mon-fri` (or `mon,wed,sat`) and a tz database name."""
        m = re.fullmatch(r"([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])", hours)
        if not m:
            raise ValueError(f"business hours must be HH:MM-HH:MM, got {hours!r}")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 24 or (h2 == 24 and m2) or (h1, m1) >= (h2, m2):
            raise ValueError(f"business hours must be a range within one day, got {hours!r}")
        end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        try:
            tz: tzinfo = UTC if zone.upper() == "UTC" else ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return cls(_days(days), time(h1, m1), end, tz)

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def describe(self) -> dict[str, str]:
        end = "24:00" if self.end == time(23, 59, 59, 999999) else self.end.strftime("%H:%M")
        return {
            "days": ",".join(DAYS[d] for d in sorted(self.days)),
            "hours": f"{self.start.strftime('%H:%M')}-{end}",
            "timezone": str(self.zone),
        }


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.strip().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"business days must be like mon-fri or mon,wed,fri, got {text!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(days)


def percentile(values: Iterable[float], pct: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _who(event: Event) -> str:
    return event.user.email or event.user.id or "unknown"


def _detail(event: Event) -> str | None:
    if isinstance(event, ServiceOperation):
        return event.detail or event.reason
    if isinstance(event, CircuitBreaker):
        return event.reason
    return None


def _brief(event: Event) -> dict[str, Any]:
    return {
        "timestamp": event.timestamp,
        "service": event.service,
        "operation": event.operation,
        "user": _who(event),
        "role": event.user.role,
        "source_ip": event.source_ip,
        "detail": _detail(event),
    }


@dataclass
class _Tally:
    operations: list[dict[str, Any]] = field(default_factory=list)
    outside_hours: list[dict[str, Any]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    attempts_ok: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    last_levels: Counter[str] = field(default_factory=Counter)
    recovery_times: list[float] = field(default_factory=list)
    suppressed: int = 0
    changes: dict[str, list[tuple[datetime, dict[str, Any]]]] = field(default_factory=dict)
    violations: Counter[str] = field(default_factory=Counter)
    violation_ips: Counter[str] = field(default_factory=Counter)
    breaker_opened: Counter[str] = field(default_factory=Counter)
    breaker_resets: list[dict[str, Any]] = field(default_factory=list)
    per_day: dict[str, Counter[str]] = field(default_factory=dict)
    in_window: int = 0


def _is_manual_operation(event: Event) -> bool:
    return isinstance(event, ServiceOperation) and event.phase in (None, "finished", "refused")


class _Summary:
    def __init__(self, since: datetime, until: datetime, hours: BusinessHours) -> None:
        self.since = since
        self.until = until
        self.hours = hours
        self.t = _Tally()

    def add(self, event: Event) -> None:
        moment = parse_timestamp(event.timestamp)
        if moment is None or not self.since <= moment <= self.until:
            return
        t = self.t
        t.in_window += 1
        day = moment.astimezone(UTC).date().isoformat()
        if _is_manual_operation(event):
            self._operation(event, moment, day)
        elif isinstance(event, AutoRecovery):
            self._recovery(event, day)
        elif isinstance(event, SshCommand):
            if event.phase == "started" and event.operation in CHANGING:
                t.changes.setdefault(str(event.service), []).append((moment, _brief(event)))
        elif isinstance(event, SecurityViolation | SecurityViolationSummary):
            self._violations(event)
        elif isinstance(event, CircuitBreaker):
            if event.operation == "open":
                t.breaker_opened[str(event.service)] += 1
            elif event.operation == "reset":
                t.breaker_resets.append(_brief(event))

    def _violations(self, event: SecurityViolation | SecurityViolationSummary) -> None:
        """One refusal, or a source's summary of many (remediator.violations)."""
        t = self.t
        if isinstance(event, SecurityViolationSummary):
            reasons = event.reasons or {}
        else:
            reasons = {event.reason or "unknown": 1}
        for reason, n in reasons.items():
            if n > 0:
                t.violations[reason] += n
                t.violation_ips[str(event.source_ip)] += n

    def _operation(self, event: Event, moment: datetime, day: str) -> None:
        entry = {
            **_brief(event),
            "user_id": event.user.id,
            "success": event.success is True,
            "refused": isinstance(event, ServiceOperation) and event.phase == "refused",
            "duration_seconds": event.duration_seconds,
        }
        self.t.operations.append(entry)
        self.t.per_day.setdefault(day, Counter())["operations"] += 1
        if not self.hours.contains(moment):
            self.t.outside_hours.append(entry)

    def _recovery(self, event: AutoRecovery, day: str) -> None:
        t = self.t
        level = event.recovery_level
        if event.phase == "verified" and level is not None:
            t.attempts[level] += 1
            t.attempts_ok[level] += event.success is True
        elif event.phase == "finished":
            outcome = str(event.outcome)
            t.outcomes[outcome] += 1
            if level is not None:
                t.last_levels[level] += 1
            t.per_day.setdefault(day, Counter())["auto_recoveries"] += 1
            duration = event.duration_seconds
            if outcome == "recovered" and duration is not None:
                t.recovery_times.append(float(duration))
        elif event.phase == "suppressed":
            t.suppressed += 1

    def bursts(self) -> list[dict[str, Any]]:
        found = []
        for service, changes in sorted(self.t.changes.items()):
            changes.sort(key=lambda c: c[0])
            chain: list[tuple[datetime, dict[str, Any]]] = []
            for change in [*changes, None]:
                if change is not None and (
                    not chain or (change[0] - chain[-1][0]).total_seconds() <= BURST_SECONDS
                ):
                    chain.append(change)
                    continue
                peak = _peak([c[0] for c in chain])
                if peak >= BURST_OPERATIONS:
                    found.append(
                        {
                            "service": service,
                            "first": utc_timestamp(chain[0][0]),
                            "last": utc_timestamp(chain[-1][0]),
                            "operations": len(chain),
                            "most_within_60s": peak,
                            "by": sorted({c[1]["user"] for c in chain}),
                            "kinds": dict(Counter(c[1]["operation"] for c in chain)),
                        }
                    )
                chain = [change] if change is not None else []
        return found

    def result(self, stats: ReadStats, config: Config, window: str) -> dict[str, Any]:
        t = self.t
        ops = t.operations
        ok = sum(1 for o in ops if o["success"])
        durations = [
            o["duration_seconds"] for o in ops if isinstance(o["duration_seconds"], int | float)
        ]
        known = {u.id for u in config.users}
        recovered = t.outcomes.get("recovered", 0)
        concluded = recovered + t.outcomes.get("exhausted", 0)
        times = t.recovery_times
        admins = [o for o in ops if o["role"] == "admin"]
        return {
            "window": window,
            "audit_path": str(config.audit.path),
            "since": utc_timestamp(self.since),
            "until": utc_timestamp(self.until),
            "files": stats.files,
            "events_read": stats.events,
            "events_in_window": t.in_window,
            "unreadable_lines": stats.bad_lines,
            "business_hours": self.hours.describe(),
            "operations": {
                "total": len(ops),
                "succeeded": ok,
                "failed": len(ops) - ok,
                "refused": sum(1 for o in ops if o["refused"]),
                "success_rate": _ratio(ok, len(ops)),
                "mean_duration_seconds": _mean(durations),
                "by_type": dict(Counter(str(o["operation"]) for o in ops).most_common()),
                "by_user": dict(Counter(o["user"] for o in ops).most_common()),
                "by_source_ip": dict(Counter(str(o["source_ip"]) for o in ops).most_common()),
                "by_admin": len(admins),
                "failed_list": [o for o in ops if not o["success"]],
                "failed_by_admin": [o for o in admins if not o["success"]],
                "outside_business_hours": t.outside_hours,
                "unexpected_users": sorted(
                    {str(o["user_id"]) for o in ops if o["user_id"] not in known}
                ),
            },
            "auto_recoveries": {
                "total": sum(t.outcomes.values()),
                "by_outcome": dict(t.outcomes.most_common()),
                "success_rate": _ratio(recovered, concluded),
                "last_level_by_recovery": dict(t.last_levels.most_common()),
                "attempts_by_level": {
                    level: {"total": t.attempts[level], "succeeded": t.attempts_ok[level]}
                    for level in ("soft", "standard", "hard", *sorted(t.attempts))
                    if level in t.attempts
                },
                "suppressed": t.suppressed,
                "recovery_time_seconds": {
                    "count": len(times),
                    "mean": _mean(times),
                    "p95": percentile(times, 95),
                },
            },
            "bursts": self.bursts(),
            "security_violations": {
                "total": sum(t.violations.values()),
                "by_reason": dict(t.violations.most_common()),
                "by_source_ip": dict(t.violation_ips.most_common()),
            },
            "circuit_breaker": {
                "opened": dict(t.breaker_opened.most_common()),
                "resets": t.breaker_resets,
            },
            "per_day": {day: dict(c) for day, c in sorted(t.per_day.items())},
        }


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def _peak(times: list[datetime]) -> int:
    """The most of `times` (sorted) within any BURST_SECONDS."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while (t - times[j]).total_seconds() > BURST_SECONDS:
            j += 1
        best = max(best, i - j + 1)
    return best


def summarize(
    config: Config,
    window: str,
    *,
    hours: BusinessHours | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The review of the last `window` (24h, 7d, 30d...) of `config`'s audit log."""
    until = now or datetime.now(UTC)
    since = until - parse_since(window)
    summary = _Summary(since, until, hours or BusinessHours())
    stats = ReadStats()
    for event in iter_events(config.audit, stats):
        summary.add(event)
    return summary.result(stats, config, window)


def render(s: Mapping[str, Any]) -> str:
    """The summary for a person, in the order of the runbook's daily, weekly, monthly tasks."""
    ops, rec = s["operations"], s["auto_recoveries"]
    bh, sec, breaker = s["business_hours"], s["security_violations"], s["circuit_breaker"]
    times = rec["recovery_time_seconds"]
    skipped = s["unreadable_lines"]
    out = [
        f"Audit review {s['since']} .. {s['until']} ({s['window']}): "
        f"{s['events_in_window']} event(s) in the window, from {len(s['files'])} file(s)"
        + (f"; {skipped} unreadable line(s) skipped" if skipped else "")
        + ("" if s["files"] else f"; no audit log at {s['audit_path']}"),
        "",
        "Daily: what needs a look",
        f"  failed operations: {ops['failed']}" + _rows(ops["failed_list"]),
        f"  failed by admin: {len(ops['failed_by_admin'])}",
        f"  unexpected users: {', '.join(ops['unexpected_users']) or 'none'}",
    ]
    outside = ops["outside_business_hours"]
    hours = f"{bh['days']} {bh['hours']} {bh['timezone']}"
    out.append(f"  outside business hours ({hours}): {len(outside)}" + _rows(outside))
    out.append(f"  bursts of {BURST_OPERATIONS}+ operations within 60s: {len(s['bursts'])}")
    out.extend(
        f"    {b['service']}: {b['operations']} from {b['first']} to {b['last']} (at most "
        f"{b['most_within_60s']} within 60s; {_counts(b['kinds'])}; by {', '.join(b['by'])})"
        for b in s["bursts"][:LISTED]
    )
    reasons = f" ({_counts(sec['by_reason'])})" if sec["total"] else ""
    out += [f"  security violations: {sec['total']}{reasons}", ""]
    levels = ", ".join(
        f"{level} {a['total']} ({a['succeeded']} ok)"
        for level, a in rec["attempts_by_level"].items()
    )
    out += [
        "Weekly: operations and auto-recovery",
        (
            f"  manual operations: {ops['total']} ({ops['succeeded']} succeeded, {ops['failed']} "
            f"failed, {ops['refused']} of them refused; success rate {_pct(ops['success_rate'])})"
        ),
        f"    by type: {_counts(ops['by_type'])}",
        f"    by user: {_counts(ops['by_user'])}",
        f"    by source address: {_counts(ops['by_source_ip'])}",
        (
            f"  auto-recoveries: {rec['total']} ({_counts(rec['by_outcome'])}); success rate "
            f"{_pct(rec['success_rate'])}; {rec['suppressed']} suppressed by an open breaker"
        ),
        f"    attempts by level: {levels or 'none'}",
        (
            f"    recovery time: mean {_secs(times['mean'])}, p95 {_secs(times['p95'])} over "
            f"{times['count']} recovered"
        ),
        f"  circuit breaker opened: {_counts(breaker['opened'])}; resets: "
        f"{len(breaker['resets'])}" + _rows(breaker["resets"]),
        "",
        "Monthly: trends",
        (
            f"  admin operations: {ops['by_admin']}; mean operation time "
            f"{_secs(ops['mean_duration_seconds'])}"
        ),
        "  per day (UTC): operations / auto-recoveries",
    ]
    out.extend(
        f"    {day}  {c.get('operations', 0):>4} / {c.get('auto_recoveries', 0):>4}"
        for day, c in s["per_day"].items()
    )
    return "\n".join(out)


def _rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        f"\n    {r['timestamp']}  {r['service']}  {r['operation']}  by {r['user']} from "
        f"{r['source_ip']}" + (f": {r['detail']}" if r.get("detail") else "")
        for r in rows[:LISTED]
    ]
    more = f"\n    ... and {len(rows) - LISTED} more (see --json)" if len(rows) > LISTED else ""
    return "".join(lines) + more


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.1f} %"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
