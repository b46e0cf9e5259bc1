"""Load alerts/thresholds.yml: every key checked, every error naming the key and the problem.

The rules generator (alerts/generator) and the remediator's health judgement both read it here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

Kind = Literal["count", "number", "percent", "duration", "window"]

# What each alert accepts. A key missing here is a typo in the file, and a key missing there is
# a threshold the rules cannot do without: both stop the generator.
SCHEMA: dict[str, dict[str, Kind]] = {
    "RedisDown": {"failed_pings": "count"},
    "RedisPingLatencyHigh": {"warning_ms": "number", "critical_ms": "number", "for": "duration"},
    "RedisServiceInactive": {"for": "duration"},
    "RedisServiceFailed": {"for": "duration"},
    "RedisServiceTransitionStuck": {"for": "duration"},
    "RedisSshUnreachable": {"failed_probes": "count"},
    "RedisMemoryHigh": {"warning_mb": "count", "critical_mb": "count", "for": "duration"},
    "RedisClientsHigh": {"warning": "count", "critical": "count", "for": "duration"},
    "RedisOpsHigh": {"warning": "count", "critical": "count", "for": "duration"},
    "RedisMemoryNearMax": {"above_percent": "percent", "for": "duration"},
    "RedisClientsNearMax": {"above_percent": "percent", "for": "duration"},
    "RedisRdbSaveFailed": {"for": "duration"},
    "RedisAutoRecoveryFailed": {"window": "window"},
    "RedisRecoveryCircuitOpen": {"for": "duration"},
    "RedisOperationsBurst": {"operations": "count", "within": "window"},
    "RedisRemediatorSecurityViolation": {"window": "window"},
    "RedisRemediatorWebhookRejected": {"window": "window"},
    "RedisRemediatorAuditWriteFailing": {"window": "window"},
    "RedisProbeFailed": {"for": "duration"},
    "RedisAutohealExporterDown": {"for": "duration"},
    "RedisRemediatorDown": {"for": "duration"},
    "RedisRemediatorCoordinationDown": {"for": "duration"},
}
BANDS = {
    "RedisPingLatencyHigh": ("warning_ms", "critical_ms"),
    "RedisMemoryHigh": ("warning_mb", "critical_mb"),
    "RedisClientsHigh": ("warning", "critical"),
    "RedisOpsHigh": ("warning", "critical"),
}
LAYERS = ("connectivity", "systemd", "performance", "remediator")

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNIT_SECONDS = (86400, 3600, 60, 1)


class ThresholdsError(Exception):
    """thresholds.yml is unreadable or a value is wrong; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def parse_duration(text: object, key: str) -> int:
    """Seconds in a Prometheus duration made of d, h, m and s parts ("1m30s")."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None or not text:
        raise ThresholdsError(key, f"must be a duration like 30s, 2m or 1h, got {text!r}")
    return sum(int(n) * s for n, s in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)


def format_duration(seconds: int) -> str:
    """`seconds` in the largest unit that divides it exactly: 3600 -> "1h", 90 -> "90s"."""
    for suffix, unit in zip("dhm", _UNIT_SECONDS, strict=False):
        if seconds and seconds % unit == 0:
            return f"{seconds // unit}{suffix}"
    return f"{seconds}s"


@dataclass(frozen=True)
class AlertSettings:
    """The validated settings of one alert; lookups of keys SCHEMA declares cannot fail."""

    name: str
    values: dict[str, Decimal | int]

    def count(self, key: str) -> int:
        value = self.values[key]
        assert isinstance(value, int)
        return value

    def number(self, key: str) -> Decimal:
        value = self.values[key]
        return value if isinstance(value, Decimal) else Decimal(value)

    def seconds(self, key: str) -> int:
        """A duration or window, in seconds."""
        return self.count(key)


@dataclass(frozen=True)
class Thresholds:
    """The whole of thresholds.yml."""

    runbook_url: str
    intervals: dict[str, int]  # layer -> scrape interval in seconds
    alerts: dict[str, AlertSettings]

    def __getitem__(self, alert: str) -> AlertSettings:
        return self.alerts[alert]

    def for_site(self, ping_interval: int, failed_pings: int) -> Thresholds:
        """These thresholds with a site's PING interval (scrape_intervals.connectivity) and
        RedisDown's count: a config's health_check.interval_seconds and failure_threshold."""
        down = AlertSettings(
            "RedisDown", {**self["RedisDown"].values, "failed_pings": failed_pings}
        )
        intervals = {**self.intervals, "connectivity": ping_interval}
        return Thresholds(self.runbook_url, intervals, {**self.alerts, "RedisDown": down})


def _mapping(value: object, key: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ThresholdsError(key, f"must be a mapping, got {type(value).__name__}")
    return value


def _exact_keys(data: dict[str, object], expected: list[str] | tuple[str, ...], key: str) -> None:
    unknown = sorted(set(data) - set(expected))
    if unknown:
        raise ThresholdsError(f"{key}.{unknown[0]}", f"unknown key; expected one of {expected}")
    missing = [k for k in expected if k not in data]
    if missing:
        raise ThresholdsError(f"{key}.{missing[0]}", "is missing")


def _value(raw: object, kind: Kind, key: str) -> Decimal | int:
    if kind in ("duration", "window"):
        seconds = parse_duration(raw, key)
        if kind == "window" and seconds == 0:
            raise ThresholdsError(key, "must be longer than 0s")
        return seconds
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ThresholdsError(key, f"must be a number, got {raw!r}")
    if kind == "count":
        if not isinstance(raw, int) or raw < 1:
            raise ThresholdsError(key, f"must be a whole number of at least 1, got {raw!r}")
        return raw
    number = Decimal(str(raw))
    if number <= 0:
        raise ThresholdsError(key, f"must be above 0, got {raw!r}")
    if kind == "percent" and (number >= 100 or number != number.quantize(Decimal("0.01"))):
        raise ThresholdsError(key, f"must be below 100 with at most 2 decimals, got {raw!r}")
    return number


def _alert(name: str, raw: object) -> AlertSettings:
    key = f"alerts.{name}"
    data = _mapping(raw, key)
    schema = SCHEMA[name]
    _exact_keys(data, list(schema), key)
    values = {k: _value(data[k], kind, f"{key}.{k}") for k, kind in schema.items()}
    settings = AlertSettings(name, values)
    if name in BANDS:
        low, high = BANDS[name]
        if settings.number(low) >= settings.number(high):
            raise ThresholdsError(f"{key}.{low}", f"must be below {high} ({settings.number(high)})")
    return settings


def parse(data: object) -> Thresholds:
    """Validate the parsed YAML of thresholds.yml."""
    top = _mapping(data, "thresholds.yml")
    _exact_keys(top, ("runbook_url", "scrape_intervals", "alerts"), "thresholds.yml")
    url = top["runbook_url"]
    if not isinstance(url, str) or not re.fullmatch(r"https?://\S+", url) or "#" in url:
        raise ThresholdsError("runbook_url", f"must be an http(s) URL without #anchor, got {url!r}")
    raw_intervals = _mapping(top["scrape_intervals"], "scrape_intervals")
    _exact_keys(raw_intervals, LAYERS, "scrape_intervals")
    intervals = {k: parse_duration(raw_intervals[k], f"scrape_intervals.{k}") for k in LAYERS}
    for layer, seconds in intervals.items():
        if seconds < 2:  # the counting windows end 1 s short of a whole interval
            raise ThresholdsError(f"scrape_intervals.{layer}", "must be at least 2s")
    raw_alerts = _mapping(top["alerts"], "alerts")
    _exact_keys(raw_alerts, list(SCHEMA), "alerts")
    alerts = {name: _alert(name, raw_alerts[name]) for name in SCHEMA}
    return Thresholds(url, intervals, alerts)


def load(path: Path) -> Thresholds:
    """Read and validate a thresholds file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ThresholdsError("(file)", f"cannot be read: {e}") from e
    return parse(data)


@functools.cache
def shipped() -> Thresholds:
    """alerts/thresholds.yml as installed with the package (package data of `alerts`)."""
    with resources.as_file(resources.files("alerts") / "thresholds.yml") as path:
        return load(Path(path))
