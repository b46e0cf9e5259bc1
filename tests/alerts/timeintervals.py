"""Alertmanager's time intervals, evaluated in Python: amtool cannot say whether an instant is
inside one. Mirrors `timeinterval.TimeInterval.ContainsTime` of Alertmanager 0.25: within one
interval every given field must match (a missing field matches everything), a named interval
matches when any of its intervals does; end times are exclusive; negative days of the month
count from its end. An unknown field raises, so a config using one gets a test update first.
test_maintenance_windows.py holds it to a real Alertmanager's answers on windows of the
shipped shape re-anchored around the current time.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
MONTHS = [m.lower() for m in calendar.month_name]  # "" at 0, "january" at 1
FIELDS = {"times", "weekdays", "days_of_month", "months", "years", "location"}


def _ranges(items: list[object], parse: Callable[[str], int]) -> list[tuple[int, int]]:
    """Inclusive ranges from "a:b" or "a" items; "-3:-1" is a range, "-1" a single value."""
    out = []
    for item in items:
        text = str(item)
        colon = text.find(":", 1)  # from 1: a leading "-" is a sign, not a separator
        if colon > 0:
            out.append((parse(text[:colon]), parse(text[colon + 1 :])))
        else:
            out.append((parse(text), parse(text)))
    return out


def _weekday(text: str) -> int:
    return WEEKDAYS.index(text.strip().lower())


def _month(text: str) -> int:
    text = text.strip().lower()
    return int(text) if text.isdigit() else MONTHS.index(text)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def interval_contains(interval: Mapping[str, Any], instant: datetime) -> bool:
    """Whether `instant` (timezone-aware) falls inside one time interval."""
    unknown = set(interval) - FIELDS
    if unknown:
        raise ValueError(f"time interval field(s) not implemented here: {sorted(unknown)}")
    t = instant.astimezone(ZoneInfo(str(interval.get("location", "UTC"))))
    month_length = calendar.monthrange(t.year, t.month)[1]

    def day_of_month(text: str) -> int:
        n = int(text)
        return month_length + n + 1 if n < 0 else n

    def within(field: str, value: int, parse: Callable[[str], int]) -> bool:
        return any(b <= value <= e for b, e in _ranges(interval[field], parse))

    minute = t.hour * 60 + t.minute
    checks = {
        "times": lambda: any(
            _minutes(r["start_time"]) <= minute < _minutes(r["end_time"]) for r in interval["times"]
        ),
        # Python counts weekdays from Monday = 0, Alertmanager (Go) from Sunday = 0.
        "weekdays": lambda: within("weekdays", (t.weekday() + 1) % 7, _weekday),
        "days_of_month": lambda: within("days_of_month", t.day, day_of_month),
        "months": lambda: within("months", t.month, _month),
        "years": lambda: within("years", t.year, int),
    }
    return all(check() for field, check in checks.items() if field in interval)


def named_contains(config: dict[str, object], name: str, instant: datetime) -> bool:
    """Whether `instant` is inside the named entry of the config's `time_intervals`."""
    entries = config["time_intervals"]
    assert isinstance(entries, list)
    (entry,) = [e for e in entries if e["name"] == name]
    return any(interval_contains(i, instant) for i in entry["time_intervals"])
