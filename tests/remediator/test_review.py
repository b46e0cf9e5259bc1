"""`redis-autoheal audit summary` on a generated audit log, rotated into gzip backups by the
real writer: every count equals one computed here, independently, from the generated events.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from redis_autoheal.cli import main
from redis_autoheal.config import Config
from remediator.audit import AUTOHEAL, AuditWriter, utc_timestamp
from remediator.events import from_json
from remediator.review import BusinessHours, parse_since, percentile
from tests.remediator.configs import write_config

USERS = [
    {"id": "user-123", "email": "admin@autobot.local", "role": "admin"},
    {"id": "user-456", "email": "operator@autobot.local", "role": "operator"},
    {"id": "user-999", "email": "ghost@elsewhere", "role": "admin"},  # not in the config
]
SERVICES = ["redis", "cache"]
OUTCOMES = ["recovered", "exhausted", "healthy", "resolved", "suppressed", "aborted"]
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def event(kind: str, moment: datetime, **fields: Any) -> dict[str, Any]:
    """An event as the log holds it (written with `from_json`, as the remediator reads it)."""
    duration = fields.pop("duration", None)
    base: dict[str, Any] = {
        "timestamp": utc_timestamp(moment),
        "event_type": kind,
        "service": fields.pop("service", "redis"),
        "operation": fields.pop("operation", "x"),
        "user": fields.pop("user", AUTOHEAL.as_json()),
        "source_ip": fields.pop("source_ip", None),
        "result": {
            "success": fields.pop("success", None),
            "duration_seconds": None if duration is None else round(duration, 3),
            "exit_code": fields.pop("exit_code", None),
        },
        "security": {"command_validated": True, "risk_level": "none", "ssh_key_used": False},
    }
    return base | fields


def generate(now: datetime, rng: random.Random) -> list[dict[str, Any]]:  # noqa: C901
    """About 40 days of events, none within an hour of a window's edge."""
    edges = [now - w for w in WINDOWS.values()]
    events: list[dict[str, Any]] = []

    def when() -> datetime:
        while True:
            moment = now - timedelta(seconds=rng.uniform(600, 40 * 86400))
            if all(abs((moment - e).total_seconds()) > 3600 for e in edges):
                return moment.replace(microsecond=0)

    for _ in range(500):
        t = when()
        user = rng.choice(USERS)
        op = rng.choice(["start", "stop", "restart", "reload"])
        phase = rng.choice(["finished", "finished", "finished", "refused", "started"])
        ok = phase == "finished" and rng.random() < 0.8
        events.append(
            event(
                "service_operation",
                t,
                service=rng.choice(SERVICES),
                operation=op,
                user=user,
                source_ip=rng.choice(["172.16.168.20", "10.1.2.3"]),
                success=None if phase == "started" else ok,
                duration=rng.uniform(0.1, 20),
                exit_code=0 if ok else 1,
                phase=phase,
            )
        )
    for _ in range(300):
        t = when()
        service = rng.choice(SERVICES)
        level = rng.choice(["soft", "standard", "hard"])
        kind = rng.choice(["verified", "verified", "finished", "suppressed", "started"])
        extra: dict[str, Any] = {"phase": kind}
        if kind == "verified":
            extra.update(recovery_level=level, success=rng.random() < 0.6)
        elif kind == "finished":
            outcome = rng.choice(OUTCOMES)
            extra.update(
                outcome=outcome,
                recovery_level=level if outcome in ("recovered", "exhausted") else None,
                success=outcome == "recovered",
                duration=rng.uniform(0.5, 120),
            )
        events.append(event("auto_recovery", t, service=service, operation="recover", **extra))
    for _ in range(200):  # state-changing commands, some in bursts, and reads that never count
        t = when()
        service = rng.choice(SERVICES)
        gaps = rng.choice([[0], [0, 20], [0, 20, 40], [0, 30, 61], [0, 10, 20, 30], [0, 59, 118]])
        for gap in gaps:
            op = rng.choice(["start", "stop", "restart", "reload"])
            moment = t + timedelta(seconds=gap)
            events.append(
                event("ssh_command", moment, service=service, operation=op, phase="started")
            )
            events.append(
                event("ssh_command", moment, service=service, operation=op, phase="finished")
            )
        events.append(
            event("ssh_command", t, service=service, operation="is-active", phase="started")
        )
    for _ in range(100):
        t = when()
        reason = rng.choice(
            ["missing_token", "invalid_token", "forbidden_role", "address_not_allowed"]
        )
        events.append(
            event(
                "security_violation",
                t,
                service=None,
                reason=reason,
                source_ip="10.9.9.9",
                success=False,
            )
        )
    for _ in range(40):
        t = when()
        op = rng.choice(["open", "reset"])
        events.append(
            event("circuit_breaker", t, operation=op, user=rng.choice(USERS), success=True)
        )
    for _ in range(20):  # refusals without a token, counted per source (remediator.violations)
        t = when()
        reasons = {r: rng.randint(1, 500) for r in ("missing_token", "invalid_token")}
        events.append(
            event(
                "security_violation_summary",
                t,
                service=None,
                source_ip="10.9.9.8",
                success=False,
                count=sum(reasons.values()),
                reasons=reasons,
            )
        )
    events.sort(key=lambda e: e["timestamp"])
    return events


def in_window(events: list[dict[str, Any]], now: datetime, window: str) -> list[dict[str, Any]]:
    since = now - WINDOWS[window]
    return [e for e in events if since <= datetime.fromisoformat(e["timestamp"]) <= now]


def nearest_rank_p95(values: list[float]) -> float:
    return min(v for v in values if sum(w <= v for w in values) >= 0.95 * len(values))


def bursts(events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(service, operations, first) of each burst, found by brute force."""
    found: list[tuple[str, int, str]] = []
    for service in SERVICES:
        times = sorted(
            datetime.fromisoformat(e["timestamp"])
            for e in events
            if e["event_type"] == "ssh_command"
            and e["phase"] == "started"
            and e["operation"] != "is-active"
            and e["service"] == service
        )
        chains: list[list[datetime]] = []
        for t in times:
            if chains and (t - chains[-1][-1]).total_seconds() <= 60:
                chains[-1].append(t)
            else:
                chains.append([t])
        found.extend(
            (service, len(chain), utc_timestamp(chain[0]))
            for chain in chains
            if any(sum(0 <= (u - t).total_seconds() <= 60 for u in chain) >= 3 for t in chain)
        )
    return sorted(found)


def expected(events: list[dict[str, Any]], hours: BusinessHours) -> dict[str, Any]:
    ops = [
        e
        for e in events
        if e["event_type"] == "service_operation" and e["phase"] in ("finished", "refused")
    ]
    ok = [e for e in ops if e["result"]["success"] is True]
    rec = [e for e in events if e["event_type"] == "auto_recovery"]
    finished = [e for e in rec if e["phase"] == "finished"]
    outcomes = Counter(e["outcome"] for e in finished)
    times = [e["result"]["duration_seconds"] for e in finished if e["outcome"] == "recovered"]
    verified = [e for e in rec if e["phase"] == "verified"]

    def outside(e: dict[str, Any]) -> bool:
        local = datetime.fromisoformat(e["timestamp"]).astimezone(hours.zone)
        clock = local.hour * 60 + local.minute
        start = hours.start.hour * 60 + hours.start.minute
        end = hours.end.hour * 60 + hours.end.minute
        return not (local.weekday() in hours.days and start <= clock < end)

    concluded = outcomes["recovered"] + outcomes["exhausted"]
    return {
        "total": len(ops),
        "succeeded": len(ok),
        "refused": sum(e["phase"] == "refused" for e in ops),
        "by_type": Counter(e["operation"] for e in ops),
        "by_user": Counter(e["user"]["email"] for e in ops),
        "outside": sum(outside(e) for e in ops),
        "unexpected": sorted({e["user"]["id"] for e in ops if e["user"]["id"] == "user-999"}),
        "failed_by_admin": sum(
            e["user"]["role"] == "admin" and e["result"]["success"] is not True for e in ops
        ),
        "outcomes": outcomes,
        "success_rate": round(outcomes["recovered"] / concluded, 4) if concluded else None,
        "attempts": {
            level: {
                "total": sum(e["recovery_level"] == level for e in verified),
                "succeeded": sum(
                    e["recovery_level"] == level and e["result"]["success"] for e in verified
                ),
            }
            for level in ("soft", "standard", "hard")
            if any(e["recovery_level"] == level for e in verified)
        },
        "suppressed": sum(e["phase"] == "suppressed" for e in rec),
        "mean": round(sum(times) / len(times), 3) if times else None,
        "p95": nearest_rank_p95(times) if times else None,
        "bursts": bursts(events),
        "violations": Counter(
            e["reason"] for e in events if e["event_type"] == "security_violation"
        )
        + sum(
            (
                Counter(e["reasons"])
                for e in events
                if e["event_type"] == "security_violation_summary"
            ),
            Counter(),
        ),
        "resets": sum(
            e["event_type"] == "circuit_breaker" and e["operation"] == "reset" for e in events
        ),
    }


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Config, list[dict[str, Any]], datetime]:
    config = write_config(
        tmp_path, {"audit": {"max_bytes": 64 * 1024, "backup_count": 200, "compress": "gzip"}}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    events = generate(now, random.Random(20251010))
    writer = AuditWriter(config.audit)
    writer.open()
    for e in events:
        writer.write_sync(from_json(e))
    with config.audit.path.open("a", encoding="utf-8") as f:
        f.write("not json at all\n[1, 2]\n")  # a hand-edited line, and a line that is no event
    return config, events, now


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_the_summary_matches_counts_made_independently(
    logged: tuple[Config, list[dict[str, Any]], datetime],
    capsys: pytest.CaptureFixture[str],
    window: str,
) -> None:
    config, events, now = logged
    backups = sorted(config.audit.path.parent.glob("*.gz"))
    assert len(backups) >= 5  # the summary must read through the rotated files
    assert (
        main(["audit", "summary", "--config", str(config.source), "--since", window, "--json"]) == 0
    )
    s = json.loads(capsys.readouterr().out)
    want = expected(in_window(events, now, window), BusinessHours())
    assert len(s["files"]) == len(backups) + 1
    assert s["events_read"] == len(events)
    assert s["unreadable_lines"] == 2
    assert s["events_in_window"] == len(in_window(events, now, window))
    ops = s["operations"]
    assert ops["total"] == want["total"]
    assert ops["succeeded"] == want["succeeded"]
    assert ops["failed"] == want["total"] - want["succeeded"]
    assert len(ops["failed_list"]) == ops["failed"]
    assert ops["refused"] == want["refused"]
    assert ops["by_type"] == dict(want["by_type"])
    assert ops["by_user"] == dict(want["by_user"])
    assert len(ops["outside_business_hours"]) == want["outside"]
    assert ops["unexpected_users"] == want["unexpected"]
    assert len(ops["failed_by_admin"]) == want["failed_by_admin"]
    rec = s["auto_recoveries"]
    assert rec["by_outcome"] == dict(want["outcomes"])
    assert rec["total"] == sum(want["outcomes"].values())
    assert rec["success_rate"] == want["success_rate"]
    assert rec["attempts_by_level"] == want["attempts"]
    assert rec["suppressed"] == want["suppressed"]
    assert rec["recovery_time_seconds"]["mean"] == pytest.approx(want["mean"], abs=0.002)
    assert rec["recovery_time_seconds"]["p95"] == want["p95"]
    assert (
        sorted((b["service"], b["operations"], b["first"]) for b in s["bursts"]) == want["bursts"]
    )
    assert s["security_violations"]["by_reason"] == dict(want["violations"])
    assert len(s["circuit_breaker"]["resets"]) == want["resets"]
    assert sum(d.get("operations", 0) for d in s["per_day"].values()) == want["total"]
    if window == "30d":  # enough of everything to mean something
        assert ops["total"] > 200
        assert want["bursts"]
        assert want["outside"]
        assert want["unexpected"]


def test_business_hours_in_another_zone(
    logged: tuple[Config, list[dict[str, Any]], datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    config, events, now = logged
    argv = ["audit", "summary", "--config", str(config.source), "--since", "30d", "--json"]
    argv += ["--business-hours", "09:30-17:00", "--business-days", "mon-sat"]
    assert main([*argv, "--timezone", "Asia/Kolkata"]) == 0
    s = json.loads(capsys.readouterr().out)
    hours = BusinessHours.parse("09:30-17:00", "mon-sat", "Asia/Kolkata")
    assert hours.zone == ZoneInfo("Asia/Kolkata")
    assert (
        len(s["operations"]["outside_business_hours"])
        == expected(in_window(events, now, "30d"), hours)["outside"]
    )
    assert s["business_hours"] == {
        "days": "mon,tue,wed,thu,fri,sat",
        "hours": "09:30-17:00",
        "timezone": "Asia/Kolkata",
    }


def test_the_text_follows_the_runbooks_reviews(
    logged: tuple[Config, list[dict[str, Any]], datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = logged
    assert main(["audit", "summary", "--config", str(config.source), "--since", "7d"]) == 0
    text = capsys.readouterr().out
    for heading in (
        "Daily: what needs a look",
        "failed operations:",
        "outside business hours (mon,tue,wed,thu,fri 08:00-18:00 UTC):",
        "bursts of 3+ operations within 60s:",
        "Weekly: operations and auto-recovery",
        "by type:",
        "by user:",
        "attempts by level:",
        "recovery time: mean",
        "Monthly: trends",
        "2 unreadable line(s) skipped",
    ):
        assert heading in text


def test_a_damaged_backup_is_an_error_naming_it(
    logged: tuple[Config, list[dict[str, Any]], datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = logged
    damaged = config.audit.path.with_name(config.audit.path.name + ".3.gz")
    damaged.write_bytes(damaged.read_bytes()[:200])
    assert main(["audit", "summary", "--config", str(config.source), "--since", "30d"]) == 1
    assert f"cannot read {damaged}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("hours", "days", "zone", "blamed"),
    [
        ("8-18", "mon-fri", "UTC", "--business-hours"),
        ("18:00-08:00", "mon-fri", "UTC", "--business-hours"),
        ("08:00-18:00", "funday", "UTC", "--business-days"),
        ("08:00-18:00", "mon-fri", "Mars/Olympus", "--timezone"),
    ],
)
def test_bad_business_hours_are_refused_naming_the_flag(  # noqa: PLR0917 -- one case
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    hours: str,
    days: str,
    zone: str,
    blamed: str,
) -> None:
    config = write_config(tmp_path, {})
    argv = ["audit", "summary", "--config", str(config.source), "--business-hours", hours]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--business-days", days, "--timezone", zone])
    assert exit_.value.code == 2  # argparse's usage error
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{blamed}:" in line
    for other in {"--business-hours", "--business-days", "--timezone"} - {blamed}:
        assert other not in line


def test_since_and_percentile() -> None:
    assert parse_since("24h") == timedelta(hours=24)
    assert parse_since("7d") == timedelta(days=7)
    assert parse_since("30d") == timedelta(days=30)
    assert parse_since("2w") == timedelta(days=14)
    for bad in ("", "0d", "7", "d", "1y", "-1d", "7 d"):
        with pytest.raises(ValueError, match="must be like"):
            parse_since(bad)
    assert percentile([], 95) is None
    assert percentile([3.0], 95) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == 95.0
    assert percentile(values[:20], 95) == 19.0
    assert percentile(values[:21], 95) == 20.0 == values[math.ceil(0.95 * 21) - 1]
