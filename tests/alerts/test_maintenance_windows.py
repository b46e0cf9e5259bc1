"""The shipped maintenance windows' semantics, judged by a real Alertmanager.

Alertmanager (Go) reads the real clock: an LD_PRELOAD clock cannot move it to a Sunday at
02:00. So the windows of alertmanager.yml are re-anchored around the current time instead:
time intervals of the shipped shape (the same fields: weekdays, days_of_month, times,
location; the same length of day range and of time range) shifted so that a boundary falls in
this minute or the next, on each side of each boundary. Each becomes the mute interval of a
route of its own; an alert per route either reaches the recorder (not muted) or Alertmanager
logs that its route is within mute time (muted).

The same cases then tie the Python re-implementation (timeintervals.py, which judges the
shipped windows at fixed instants in test_alertmanager.py) to Alertmanager's results."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.alerts.local_servers import Recorder, alertmanager, post_json, wait_until
from tests.alerts.timeintervals import WEEKDAYS, interval_contains
from tests.support import require_binary

MUTED_LOG = "Notifications not sent, route is within mute time"
OTHER_ZONE = "Asia/Kolkata"  # UTC+05:30 all year: no DST, and an offset longer than a window


@dataclass(frozen=True)
class Case:
    name: str
    intervals: list[dict[str, object]]
    muted: bool | None  # None: no expectation of its own (a shipped window as it is)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(hhmm: str) -> int:
    hours, minutes = str(hhmm).split(":")
    return int(hours) * 60 + int(minutes)


def _weekday(t: datetime, days: int = 0) -> str:
    return WEEKDAYS[((t + timedelta(days=days)).weekday() + 1) % 7]


def _variants(name: str, shipped: dict[str, Any], now: datetime) -> list[Case]:
    """Intervals of `shipped`'s shape around `now`, each with whether `now` is inside."""
    (times,) = shipped["times"]
    length = _minutes(times["end_time"]) - _minutes(times["start_time"])
    zone = ZoneInfo(str(shipped.get("location", "UTC")))
    t = now.astimezone(zone)
    m, d = t.hour * 60 + t.minute, t.day
    month = calendar.monthrange(t.year, t.month)[1]

    def shape(start: int, end: int, weekday: str, days: str, location: str) -> dict[str, object]:
        # Only the fields the shipped interval has: the same shape.
        fields = {
            "times": [{"start_time": _hhmm(start), "end_time": _hhmm(end)}],
            "weekdays": [weekday],
            "days_of_month": [days],
            "location": location,
        }
        return {key: fields[key] for key in shipped}

    span = 0
    if "days_of_month" in shipped:
        (days_range,) = shipped["days_of_month"]
        first, last = (int(x) for x in str(days_range).split(":"))
        span = last - first + 1
    location = str(shipped.get("location", "UTC"))
    today = _weekday(t)
    days_in = f"{max(1, d - span + 1)}:{d}"
    inside = (m, min(m + length, 1440))

    def case(what: str, muted: bool, **kw: Any) -> Case:
        start, end = kw.get("times", inside)
        interval = shape(
            start,
            end,
            str(kw.get("weekday", today)),
            str(kw.get("days", days_in)),
            str(kw.get("location", location)),
        )
        return Case(f"{name}: {what}", [interval], muted)

    cases = [
        case("from this minute on (its start has passed)", True),
        case(
            "from the next minute on (just before its start)",
            False,
            times=(m + 1, min(m + 1 + length, 1440)),
        ),
        case(
            "until the next minute (just before its end)",
            True,
            times=(max(m + 1 - length, 0), m + 1),
        ),
        case("until this minute (its end is exclusive)", False, times=(max(m - length, 0), m)),
    ]
    if "weekdays" in shipped:
        cases += [
            case("on yesterday's weekday", False, weekday=_weekday(t, -1)),
            case("on tomorrow's weekday", False, weekday=_weekday(t, 1)),
        ]
    if "days_of_month" in shipped:
        cases += [
            case(f"days {days_in}, ending today", True),
            case("days starting today", True, days=f"{d}:{min(d + span - 1, month)}"),
        ]
        if d < month:  # a range after today's needs a day after today in this month
            cases.append(
                case("days starting tomorrow", False, days=f"{d + 1}:{min(d + span, month)}")
            )
        if d > 1:
            cases.append(case("days ending yesterday", False, days=f"{max(1, d - span)}:{d - 1}"))
    if "location" in shipped:
        # The same shape anchored in another zone's clock: inside there, outside read as UTC
        # (the zone is 5h30 ahead, more than the window is long).
        k = now.astimezone(ZoneInfo(OTHER_ZONE))
        mk = k.hour * 60 + k.minute
        for where, muted in ((OTHER_ZONE, True), ("UTC", False)):
            interval = shape(
                mk,
                min(mk + length, 1440),
                _weekday(k),
                f"{max(1, k.day - span + 1)}:{k.day}",
                where,
            )
            cases.append(Case(f"{name}: {OTHER_ZONE}'s clock, location {where}", [interval], muted))
    return cases


def _cases(am_config: dict, now: datetime) -> list[Case]:
    cases = []
    for entry in am_config["time_intervals"]:
        cases.append(Case(f"{entry['name']} as shipped", entry["time_intervals"], None))
        for shipped in entry["time_intervals"]:
            cases.extend(_variants(entry["name"], shipped, now))
    return cases


def _config(cases: list[Case], recorder: Recorder) -> dict:
    return {
        "route": {
            "receiver": "nobody",
            "group_by": ["case"],
            "group_wait": "1s",
            "group_interval": "1h",  # one flush per case: one log line or one delivery
            "repeat_interval": "1h",
            "routes": [
                {
                    "receiver": "hook",
                    "matchers": [f'case="{n}"'],
                    "mute_time_intervals": [f"case-{n}"],
                }
                for n in range(len(cases))
            ],
        },
        "receivers": [
            {"name": "nobody"},
            {"name": "hook", "webhook_configs": [{"url": f"{recorder.url}/hook"}]},
        ],
        "time_intervals": [
            {"name": f"case-{n}", "time_intervals": case.intervals} for n, case in enumerate(cases)
        ],
    }


def _anchor_time() -> datetime:
    """Now, once it is far enough from the end of a minute (and of a day) for a run of the
    cases to finish within the minute: each boundary is at most a minute from now."""
    while True:
        now = datetime.now(UTC)
        if now.second < 40 and 0 < now.hour * 60 + now.minute < 1438:
            return now
        time.sleep(1)


def _muted_by_alertmanager(
    binary: str, directory: Path, cases: list[Case]
) -> tuple[list[bool], datetime]:
    """Run Alertmanager with one muted route per case; whether each case's alert was muted,
    and the time by which all were decided."""
    directory.mkdir()
    with Recorder() as recorder:
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(_config(cases, recorder)))
        log = directory / "alertmanager.log"
        with alertmanager(binary, directory) as url:
            post_json(
                f"{url}/api/v2/alerts",
                [
                    {"labels": {"alertname": "Maintenance", "case": str(n)}}
                    for n in range(len(cases))
                ],
            )

            def delivered() -> set[int]:
                return {
                    int(alert["labels"]["case"])
                    for _, body in recorder.received("/hook")
                    for alert in body["alerts"]
                }

            def decided() -> bool:
                return len(delivered()) + log.read_text().count(MUTED_LOG) >= len(cases)

            wait_until(decided, 60, "Alertmanager to deliver or mute every case")
            done = datetime.now(UTC)
            sent = delivered()
            assert log.read_text().count(MUTED_LOG) == len(cases) - len(sent), log.read_text()
    return [n not in sent for n in range(len(cases))], done


def test_alertmanager_mutes_on_each_side_of_each_boundary(am_config, tmp_path):
    binary = require_binary("prometheus-alertmanager")
    for attempt in range(3):
        now = _anchor_time()
        cases = _cases(am_config, now)
        muted, done = _muted_by_alertmanager(binary, tmp_path / f"attempt-{attempt}", cases)
        if done.replace(second=0, microsecond=0) == now.replace(second=0, microsecond=0):
            break  # every flush fell in the minute the cases were anchored to
    else:
        pytest.fail("three runs each ran past the end of their minute: the machine is too slow")
    got = {case.name: m for case, m in zip(cases, muted, strict=True)}
    expected = {case.name: case.muted for case in cases if case.muted is not None}
    assert {name: got[name] for name in expected} == expected
    # The re-implementation agrees with Alertmanager on every case, shipped windows included,
    # at both ends of the time Alertmanager had to decide in.
    for case, m in zip(cases, muted, strict=True):
        for instant in (now, done):
            python = any(interval_contains(i, instant) for i in case.intervals)
            assert python is m, f"{case.name} at {instant}: timeintervals.py says {python}"


def test_the_cases_cover_each_boundary_of_the_shipped_shape(am_config):
    # Whatever the day: both sides of the times' start and end, other weekdays, other zones.
    now = datetime(2025, 10, 15, 12, 30, 5, tzinfo=UTC)
    cases = _cases(am_config, now)
    for name in ("weekly-maintenance", "monthly-maintenance"):
        mine = {c.name.split(": ", 1)[1]: c.muted for c in cases if c.name.startswith(name + ":")}
        assert mine["from this minute on (its start has passed)"] is True
        assert mine["from the next minute on (just before its start)"] is False
        assert mine["until the next minute (just before its end)"] is True
        assert mine["until this minute (its end is exclusive)"] is False
        assert mine["on yesterday's weekday"] is False
        assert mine[f"{OTHER_ZONE}'s clock, location UTC"] is False
    monthly = {c.name for c in cases if c.name.startswith("monthly-maintenance:")}
    assert "monthly-maintenance: days 9:15, ending today" in monthly
    assert "monthly-maintenance: days starting tomorrow" in monthly
    assert "monthly-maintenance: days ending yesterday" in monthly
    # Each variant keeps the shipped fields, no more, no fewer.
    shipped = {e["name"]: e["time_intervals"][0] for e in am_config["time_intervals"]}
    for case in cases:
        name = case.name.split(":")[0].removesuffix(" as shipped")
        assert [set(i) for i in case.intervals] == [set(shipped[name])], case.name
