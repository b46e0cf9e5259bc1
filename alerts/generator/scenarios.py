"""The promtool unit tests of the rules, derived from thresholds.yml so they follow its values.

Every threshold is tested one step below, at and one step above its boundary; every `for` one
evaluation short of it and at it; every counted alert (RedisDown, RedisSshUnreachable,
RedisOperationsBurst) one count short and at the count. Expected values come from the runbook's
semantics written here in Python (warning from W inclusive, critical above C, ...), not from
the PromQL, so the tests check the expressions rather than restate them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from alerts.generator.gotemplate import render
from alerts.generator.rules import (
    EXPORTER_JOB,
    PROBE_JOBS,
    REMEDIATOR_JOB,
    Group,
    Rule,
    Severity,
    num,
)
from redis_autoheal.thresholds import Thresholds, format_duration
from redis_autoheal.units import UNIT_STATES

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Timeline = list[bool]  # one entry per evaluation; True: the alert's condition holds
    SeriesOf = Callable[[Timeline], dict[str, list[str]]]

EVAL = 15  # seconds: the tests' evaluation_interval, equal to alerts/prometheus.yml's
MIB = 1024 * 1024
TARGET = "redis"
UNIT = "redis-server"
REMEDIATOR = "127.0.0.1:9122"
EXPORTER = "127.0.0.1:9121"


@dataclass(frozen=True)
class Expected:
    """A firing alert: its severity, the labels its expression keeps, the value it reports."""

    severity: Severity
    labels: dict[str, str]
    value: float = 0.0


@dataclass
class Check:
    at: int  # seconds
    alert: str
    expected: list[Expected] = field(default_factory=list)


@dataclass
class Case:
    name: str
    interval: int  # seconds between the samples of `series`
    series: dict[str, list[str]]  # selector -> one value per interval ("_": no sample)
    checks: list[Check]


def selector(metric: str, **labels: str) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def fire_at(start: int, for_seconds: int, evaluation: int) -> int:
    """The first evaluation at which a condition true from `start` on has held for `for`."""
    return start + math.ceil(for_seconds / evaluation) * evaluation


def compress(values: Sequence[str]) -> str:
    """promtool's notation, with runs of four or more written `vxN` (v, then N repeats)."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        run = j - i
        out.append(f"{values[i]}x{run - 1}" if run >= 4 and values[i] != "_" else values[i])
        if run < 4 or values[i] == "_":
            out.extend([values[i]] * (run - 1))
        i = j
    return " ".join(out)


def counter(op_times: Sequence[float], samples: int, interval: int) -> list[str]:
    """A counter's samples, one every `interval` s from 0, counting operations at `op_times`."""
    return [str(sum(1 for t in op_times if t <= k * interval)) for k in range(samples)]


class Suite:
    """Collects the cases and turns them into a promtool test file."""

    def __init__(self, t: Thresholds, groups: list[Group], evaluation: int) -> None:
        self.t = t
        self.eval = evaluation  # seconds between rule evaluations
        self.rules: dict[tuple[str, str], Rule] = {
            (r.alert, r.severity): r for g in groups for r in g.rules
        }
        self.cases: list[Case] = []

    # -- building blocks ------------------------------------------------------------------

    def add(self, case: Case) -> None:
        self.cases.append(case)

    def never(self, alert: str, until: int) -> list[Check]:
        """`alert` is not firing at any evaluation from 0 to `until`."""
        return [Check(at, alert) for at in range(0, until + 1, self.eval)]

    def held(
        self,
        name: str,
        alert: str,
        for_seconds: int,
        series: SeriesOf,
        expected: list[Expected],
    ) -> None:
        """Two cases for a `for` alert: its condition one evaluation short of `for`, then enough.

        `series` turns a timeline into the input series.
        """
        steps = math.ceil(for_seconds / self.eval)
        if steps:
            # True at evaluations 1 .. steps: pending for one evaluation short of for, never firing.
            timeline = [False] + [True] * steps + [False] * 2
            self.add(
                Case(
                    f"{name}: true for one evaluation less than for: {format_duration(for_seconds)}"
                    ", no alert",
                    self.eval,
                    series(timeline),
                    self.never(alert, self.eval * (len(timeline) - 1)),
                )
            )
        timeline = [False] + [True] * (steps + 2) + [False] * 2
        fires = fire_at(self.eval, for_seconds, self.eval)
        clears = self.eval * (steps + 3)
        checks = [Check(0, alert)]
        if steps:
            checks.append(Check(fires - self.eval, alert))
        checks += [Check(fires, alert, expected), Check(clears, alert)]
        self.add(
            Case(
                f"{name}: true for {format_duration(for_seconds)} fires, then resolves",
                self.eval,
                series(timeline),
                checks,
            )
        )

    def boundaries(
        self,
        name: str,
        alert: str,
        for_seconds: int,
        points: list[tuple[str, dict[str, str], list[Expected]]],
    ) -> None:
        """One case per boundary point: constant series, checked just before and at `for`."""
        fires = fire_at(0, for_seconds, self.eval)
        samples = fires // self.eval + 2
        for label, series, expected in points:
            checks = [Check(fires - self.eval, alert)] if fires else []
            checks.append(Check(fires, alert, expected))
            self.add(
                Case(
                    f"{name} {label}",
                    self.eval,
                    {sel: [value] * samples for sel, value in series.items()},
                    checks,
                )
            )

    # -- output ---------------------------------------------------------------------------

    def _alert(self, alert: str, e: Expected) -> dict[str, object]:
        rule = self.rules[(alert, e.severity)]
        annotations = {
            k: render(v, e.labels, e.value) for k, v in rule.annotations(self.t.runbook_url).items()
        }
        return {"exp_labels": {**e.labels, **rule.labels()}, "exp_annotations": annotations}

    def document(self, rule_file: str) -> dict[str, object]:
        tests = [
            {
                "name": case.name,
                "interval": format_duration(case.interval),
                "input_series": [
                    {"series": sel, "values": compress(values)}
                    for sel, values in case.series.items()
                ],
                "alert_rule_test": [
                    {
                        "eval_time": format_duration(c.at),
                        "alertname": c.alert,
                        "exp_alerts": [self._alert(c.alert, e) for e in c.expected],
                    }
                    for c in case.checks
                ],
            }
            for case in self.cases
        ]
        return {
            "rule_files": [rule_file],
            "evaluation_interval": format_duration(self.eval),
            "tests": tests,
        }


# -- layer 1 ----------------------------------------------------------------------------------


def redis_down(s: Suite) -> None:
    n = s.t["RedisDown"].count("failed_pings")
    iv = s.t.intervals["connectivity"]
    labels = {"job": PROBE_JOBS["connectivity"], "instance": TARGET}
    sel = selector("redis_up", **labels)
    down = [Expected("critical", labels)]

    def case(name: str, values: list[str], checks: list[Check]) -> None:
        s.add(Case(f"RedisDown: {name}", iv, {sel: values}, checks))

    short = ["1"] + ["0"] * (n - 1) + ["1", "1"]
    case(
        f"{n - 1} failed PINGs in a row, then PONG: no alert",
        short,
        s.never("RedisDown", iv * (len(short) - 1)),
    )
    case(
        f"{n} failed PINGs in a row fire; a PONG resolves one interval later (keep_firing_for)",
        ["1"] + ["0"] * n + ["1", "1"],
        [
            Check(n * iv - s.eval, "RedisDown"),
            # Between scrapes too: the window must reach back to the first failure, and
            # keep_firing_for bridges an evaluation that does not see the latest sample yet.
            *(Check(at, "RedisDown", down) for at in range(n * iv, (n + 2) * iv, s.eval)),
            Check((n + 2) * iv, "RedisDown"),
        ],
    )
    case(
        f"down from the first scrape: {n} failed PINGs fire",
        ["0"] * (n + 1),
        [
            *s.never("RedisDown", (n - 1) * iv - s.eval),
            Check((n - 1) * iv, "RedisDown", down),
        ],
    )
    # A scrape that failed is no PING result: the count restarts after it.
    gap = ["1"] + ["0"] * (n - 1) + ["_"] + ["0"] * n
    case(
        f"{n - 1} failed PINGs, a missed scrape, {n} failed PINGs: only these {n} fire",
        gap,
        [
            *s.never("RedisDown", iv * (len(gap) - 1) - s.eval),
            Check(iv * (len(gap) - 1), "RedisDown", down),
        ],
    )


def ping_latency(s: Suite) -> None:
    settings = s.t["RedisPingLatencyHigh"]
    warn, crit = settings.number("warning_ms"), settings.number("critical_ms")
    labels = {"job": PROBE_JOBS["connectivity"], "instance": TARGET}
    step = Decimal("0.1")
    points = []
    for ms, where in _around(warn, crit, step):
        seconds = num(ms / 1000)
        value = float(seconds)
        expected = [Expected(sev, labels, value) for sev in _bands_hit(ms, warn, crit)]
        points.append(
            (
                f"{num(ms)} ms ({where})",
                {selector("redis_ping_latency_seconds", **labels): seconds},
                expected,
            )
        )
    s.boundaries("RedisPingLatencyHigh", "RedisPingLatencyHigh", settings.seconds("for"), points)


def _bands_hit(value: Decimal, warn: Decimal, crit: Decimal) -> list[Severity]:
    """The runbook's bands: warning from `warn` on (inclusive), critical above `crit`."""
    hit: list[Severity] = []
    if value >= warn:
        hit.append("warning")
    if value > crit:
        hit.append("critical")
    return hit


def _flag(sel: str, bad: str, good: str) -> SeriesOf:
    """One series that is `bad` while the timeline says so and `good` otherwise."""

    def series(timeline: Timeline) -> dict[str, list[str]]:
        return {sel: [bad if b else good for b in timeline]}

    return series


def _around(warn: Decimal, crit: Decimal, step: Decimal) -> list[tuple[Decimal, str]]:
    return [
        (warn - step, "just below warning"),
        (warn, "at warning"),
        (warn + step, "just above warning"),
        (crit - step, "just below critical"),
        (crit, "at critical"),
        (crit + step, "just above critical"),
    ]


# -- layer 2 ----------------------------------------------------------------------------------


def unit_series(states: Sequence[str]) -> dict[str, list[str]]:
    """redis_systemd_unit_state for a sequence of states: 1 for the current state, 0 others."""
    return {
        selector(
            "redis_systemd_unit_state",
            job=PROBE_JOBS["systemd"],
            instance=TARGET,
            unit=UNIT,
            state=state,
        ): ["1" if s == state else "0" for s in states]
        for state in UNIT_STATES
    }


def unit_states(s: Suite) -> None:
    def labels(state: str) -> dict[str, str]:
        return {"job": PROBE_JOBS["systemd"], "instance": TARGET, "unit": UNIT, "state": state}

    steady = ["active", "reloading", "active", "active"]
    iv = s.t.intervals["systemd"]
    s.add(
        Case(
            "Unit active (and briefly reloading): no unit alert",
            iv,
            unit_series(steady),
            [
                Check(at, alert)
                for at in range(0, iv * len(steady), s.eval)
                for alert in (
                    "RedisServiceInactive",
                    "RedisServiceFailed",
                    "RedisServiceTransitionStuck",
                )
            ],
        )
    )
    for alert, state in (
        ("RedisServiceInactive", "inactive"),
        ("RedisServiceFailed", "failed"),
        ("RedisServiceTransitionStuck", "activating"),
        ("RedisServiceTransitionStuck", "deactivating"),
    ):
        severity: Severity = "warning" if alert == "RedisServiceTransitionStuck" else "critical"

        def series(timeline: list[bool], state: str = state) -> dict[str, list[str]]:
            return unit_series([state if bad else "active" for bad in timeline])

        s.held(
            f"{alert} (unit {state})",
            alert,
            s.t[alert].seconds("for"),
            series,
            [Expected(severity, labels(state))],
        )
    # The two remediation alerts do not fire for each other's state.
    s.add(
        Case(
            "Unit inactive then failed: each alert only for its own state",
            iv,
            unit_series(["inactive", "inactive", "failed", "failed"]),
            [
                Check(
                    fire_at(0, s.t["RedisServiceInactive"].seconds("for"), s.eval),
                    "RedisServiceFailed",
                ),
                Check(
                    fire_at(2 * iv, s.t["RedisServiceFailed"].seconds("for"), s.eval),
                    "RedisServiceInactive",
                ),
            ],
        )
    )
    followed_while_state(s, labels)


def followed_series(values: Sequence[str], instance: str = TARGET) -> dict[str, list[str]]:
    """redis_systemd_unit_followed of the unit on `instance`, one value per interval."""
    sel = selector(
        "redis_systemd_unit_followed", job=PROBE_JOBS["systemd"], instance=instance, unit=UNIT
    )
    return {sel: list(values)}


def followed_while_state(s: Suite, labels: Callable[[str], dict[str, str]]) -> None:
    """While the exporter follows the unit and its pushes are taken, the push is the alert."""
    iv = s.t.intervals["systemd"]
    for alert, state in (("RedisServiceInactive", "inactive"), ("RedisServiceFailed", "failed")):
        fires = fire_at(0, s.t[alert].seconds("for"), s.eval)
        states = unit_series([state] * 6)
        s.add(
            Case(
                f"{alert}: unit {state} while followed (the exporter pushes it): no alert",
                iv,
                states | followed_series(["1"] * 6),
                s.never(alert, 5 * iv),
            )
        )
        s.add(
            Case(
                f"{alert}: unit {state}, followed until a push is not taken (0): fires then",
                iv,
                states | followed_series(["1", "1", "0", "0", "0", "0"]),
                [
                    *s.never(alert, 2 * iv - s.eval),
                    Check(2 * iv + fires, alert, [Expected("critical", labels(state))]),
                ],
            )
        )
        s.add(
            Case(
                f"{alert}: unit {state}, another target's unit followed: fires",
                iv,
                states | followed_series(["1"] * 6, instance="other"),
                [Check(fires, alert, [Expected("critical", labels(state))])],
            )
        )


def ssh_unreachable(s: Suite) -> None:
    n = s.t["RedisSshUnreachable"].count("failed_probes")
    iv = s.t.intervals["systemd"]
    labels = {"job": PROBE_JOBS["systemd"], "instance": TARGET}
    sel = selector("redis_ssh_up", **labels)
    short = ["1"] + ["0"] * (n - 1) + ["1", "1"]
    s.add(
        Case(
            f"RedisSshUnreachable: {n - 1} failed SSH probes in a row: no alert",
            iv,
            {sel: short},
            s.never("RedisSshUnreachable", iv * (len(short) - 1)),
        )
    )
    fired = [Expected("critical", labels)]
    s.add(
        Case(
            f"RedisSshUnreachable: {n} failed SSH probes in a row fire; a login resolves one "
            "interval later (keep_firing_for)",
            iv,
            {sel: ["1"] + ["0"] * n + ["1", "1"]},
            [
                Check(n * iv - s.eval, "RedisSshUnreachable"),
                # Between scrapes too: the window must reach back to the first failure.
                *(
                    Check(at, "RedisSshUnreachable", fired)
                    for at in range(n * iv, (n + 2) * iv, s.eval)
                ),
                Check((n + 2) * iv, "RedisSshUnreachable"),
            ],
        )
    )


# -- layer 3 ----------------------------------------------------------------------------------


def bands(s: Suite) -> None:
    labels = {"job": PROBE_JOBS["performance"], "instance": TARGET}
    specs: list[tuple[str, str, str, str, Callable[[Decimal], str], str]] = [
        ("RedisMemoryHigh", "warning_mb", "critical_mb", "redis_memory_used_bytes",
         lambda mb: str(int(mb) * MIB), " MB"),
        ("RedisClientsHigh", "warning", "critical", "redis_connected_clients", str, " clients"),
        ("RedisOpsHigh", "warning", "critical", "redis_instantaneous_ops_per_sec", str, " ops/s"),
    ]  # fmt: skip
    for alert, low, high, metric, sample, unit in specs:
        settings = s.t[alert]
        warn, crit = settings.number(low), settings.number(high)
        points = []
        for amount, where in _around(warn, crit, Decimal(1)):
            expected = [
                Expected(sev, labels, float(amount)) for sev in _bands_hit(amount, warn, crit)
            ]
            sel = selector(metric, **labels)
            points.append((f"{num(amount)}{unit} ({where})", {sel: sample(amount)}, expected))
        s.boundaries(alert, alert, settings.seconds("for"), points)


def near_max(s: Suite) -> None:
    labels = {"job": PROBE_JOBS["performance"], "instance": TARGET}
    # A limit of 10000 units makes 0.01 % one unit, so each boundary is a whole number of units.
    specs = [
        ("RedisMemoryNearMax", "redis_memory_used_bytes", "redis_memory_max_bytes", MIB, "MB"),
        ("RedisClientsNearMax", "redis_connected_clients", "redis_config_maxclients", 1, "clients"),
    ]
    limit = 10000
    for alert, used_metric, max_metric, unit_size, unit in specs:
        settings = s.t[alert]
        percent = settings.number("above_percent")
        boundary = int(percent * 100)
        maximum = limit * unit_size
        points = []
        for used, where in (
            (boundary - 1, "just below"),
            (boundary, "at"),
            (boundary + 1, "just above"),
        ):
            value = 100.0 * float(used * unit_size) / float(maximum)
            expected = [Expected("warning", labels, value)] if used > boundary else []
            series = {
                selector(used_metric, **labels): str(used * unit_size),
                selector(max_metric, **labels): str(maximum),
            }
            points.append(
                (f"{used} of {limit} {unit} ({where} {num(percent)} %)", series, expected)
            )
        points.append(
            (
                f"{limit - 1} {unit} with a limit of 0 (none): no alert",
                {
                    selector(used_metric, **labels): str((limit - 1) * unit_size),
                    selector(max_metric, **labels): "0",
                },
                [],
            )
        )
        s.boundaries(alert, alert, settings.seconds("for"), points)


def rdb(s: Suite) -> None:
    labels = {"job": PROBE_JOBS["performance"], "instance": TARGET}
    s.held(
        "RedisRdbSaveFailed",
        "RedisRdbSaveFailed",
        s.t["RedisRdbSaveFailed"].seconds("for"),
        _flag(selector("redis_rdb_last_bgsave_status", **labels), bad="0", good="1"),
        [Expected("critical", labels)],
    )


# -- the remediator ---------------------------------------------------------------------------


def _remediator_labels(**extra: str) -> dict[str, str]:
    return {"job": REMEDIATOR_JOB, "instance": REMEDIATOR, **extra}


@dataclass(frozen=True)
class CounterAlert:
    """An alert on a counter's increase over `window`, and the series to test it with."""

    alert: str
    metric: str
    severity: Severity
    hit: dict[str, str]  # the labels of a series that increases once
    miss: dict[str, str] | None  # the labels of one that does not, if the rule tells them apart
    labels: dict[str, str]  # the labels of the alert, from the expression
    counts: bool  # whether the alert reports the count as its value


def windowed(s: Suite, c: CounterAlert) -> None:
    """One increase between the 1st and 2nd scrape fires at the 2nd, for `window`, then resolves."""
    window = s.t[c.alert].seconds("window")
    iv = s.t.intervals["remediator"]
    samples = (window + 4 * iv) // iv + 1
    series = {selector(c.metric, **c.hit): ["0", "0"] + ["1"] * (samples - 2)}
    if c.miss is not None:
        series[selector(c.metric, **c.miss)] = ["0"] * samples
    fired = [Expected(c.severity, c.labels, 1.0 if c.counts else 0.0)]
    s.add(
        Case(
            f"{c.alert}: one event fires, and resolves {format_duration(window)} later",
            iv,
            series,
            [
                Check(iv, c.alert),
                Check(2 * iv, c.alert, fired),
                Check(iv + window, c.alert, fired),
                Check(2 * iv + window, c.alert),
            ],
        )
    )


def remediator(s: Suite) -> None:
    for c in (
        CounterAlert(
            "RedisAutoRecoveryFailed",
            "autoheal_recovery_exhausted_total",
            "critical",
            hit=_remediator_labels(target=TARGET),
            miss=_remediator_labels(target="cache"),
            labels={"target": TARGET, "instance": TARGET},
            counts=False,
        ),
        CounterAlert(
            "RedisRemediatorSecurityViolation",
            "autoheal_security_violations_total",
            "critical",
            hit=_remediator_labels(reason="invalid_token"),
            miss=_remediator_labels(reason="address_not_allowed"),
            labels=_remediator_labels(reason="invalid_token"),
            counts=True,
        ),
        CounterAlert(
            "RedisRemediatorWebhookRejected",
            "autoheal_webhook_requests_total",
            "warning",
            hit=_remediator_labels(code="401"),
            miss=_remediator_labels(code="200"),
            labels=_remediator_labels(code="401"),
            counts=True,
        ),
        CounterAlert(
            "RedisRemediatorAuditWriteFailing",
            "autoheal_audit_write_errors_total",
            "warning",
            hit=_remediator_labels(),
            miss=None,
            labels=_remediator_labels(),
            counts=True,
        ),
    ):
        windowed(s, c)
    iv = s.t.intervals["remediator"]
    # Accepted webhooks never fire it, however many.
    ok = selector("autoheal_webhook_requests_total", **_remediator_labels(code="200"))
    s.add(
        Case(
            "RedisRemediatorWebhookRejected: only 2xx answers: no alert",
            iv,
            {ok: [str(k) for k in range(12)]},
            s.never("RedisRemediatorWebhookRejected", 11 * iv),
        )
    )
    breaker = _flag(
        selector("autoheal_circuit_breaker_open", **_remediator_labels(target=TARGET)),
        bad="1",
        good="0",
    )
    closed = selector("autoheal_circuit_breaker_open", **_remediator_labels(target="cache"))

    def breakers(timeline: Timeline) -> dict[str, list[str]]:
        return {**breaker(timeline), closed: ["0"] * len(timeline)}

    s.held(
        "RedisRecoveryCircuitOpen",
        "RedisRecoveryCircuitOpen",
        s.t["RedisRecoveryCircuitOpen"].seconds("for"),
        breakers,
        [Expected("critical", {"target": TARGET, "instance": TARGET})],
    )
    operations_burst(s)


def operations_burst(s: Suite) -> None:
    settings = s.t["RedisOperationsBurst"]
    n, within = settings.count("operations"), settings.seconds("within")
    iv = s.t.intervals["remediator"]
    window = within + iv
    # Operations start after one window of history, as on a remediator that has run a while.
    start = math.ceil(window / iv) * iv
    labels = {"target": TARGET, "instance": TARGET}

    def series(op_times: list[float], samples: int) -> dict[str, list[str]]:
        # Alternate the operations between two label sets: the rule sums them per target.
        return {
            selector(
                "autoheal_operations_total",
                **_remediator_labels(target=TARGET, operation=op, result="success"),
            ): counter(times, samples, iv)
            for op, times in (("restart", op_times[0::2]), ("reload", op_times[1::2]))
        }

    def spread(count: int, span: float) -> list[float]:
        # The first operation half an interval after a sample, the last `span` later.
        first = start + iv / 2
        if count == 1:
            return [first]
        return [first + i * span / (count - 1) for i in range(count)]

    burst = spread(n, within)
    seen = math.ceil(burst[-1] / iv) * iv
    s.add(
        Case(
            f"RedisOperationsBurst: {n} operations within {format_duration(within)} fire",
            iv,
            series(burst, seen // iv + 4),
            [
                *s.never("RedisOperationsBurst", seen - s.eval),
                Check(seen, "RedisOperationsBurst", [Expected("warning", labels, float(n))]),
            ],
        )
    )
    if n > 1:
        fewer = spread(n - 1, 0)
        end = start + 8 * iv
        s.add(
            Case(
                f"RedisOperationsBurst: {n - 1} operations at once: no alert",
                iv,
                series(fewer, end // iv + 1),
                s.never("RedisOperationsBurst", end),
            )
        )
        slow = spread(n, window + iv)
        end = math.ceil(slow[-1] / iv) * iv + window
        s.add(
            Case(
                f"RedisOperationsBurst: {n} operations over {format_duration(window + iv)}: "
                "no alert",
                iv,
                series(slow, end // iv + 1),
                s.never("RedisOperationsBurst", end),
            )
        )
    # A restart resets the counters: the difference goes negative, and must not fire.
    before = [str(n + 5)] * (start // iv + 2)
    after = ["0", "0"] + [str(n - 1)] * (start // iv + 1)
    s.add(
        Case(
            "RedisOperationsBurst: counters reset by a remediator restart: no alert",
            iv,
            {
                selector(
                    "autoheal_operations_total",
                    **_remediator_labels(target=TARGET, operation="restart", result="success"),
                ): before + after
            },
            s.never("RedisOperationsBurst", iv * (len(before) + len(after) - 1)),
        )
    )


# -- monitoring the monitoring ----------------------------------------------------------------


def self_monitoring(s: Suite) -> None:
    probe_for = s.t["RedisProbeFailed"].seconds("for")
    layers: tuple[tuple[str, Severity], ...] = (
        ("connectivity", "critical"),
        ("systemd", "warning"),
        ("performance", "warning"),
    )
    for layer, severity in layers:
        labels = {"job": PROBE_JOBS[layer], "instance": TARGET}
        s.held(
            f"RedisProbeFailed ({layer})",
            "RedisProbeFailed",
            probe_for,
            _flag(selector("up", **labels), bad="0", good="1"),
            [Expected(severity, {**labels, "layer": layer})],
        )
    for alert, job, instance in (
        ("RedisAutohealExporterDown", EXPORTER_JOB, EXPORTER),
        ("RedisRemediatorDown", REMEDIATOR_JOB, REMEDIATOR),
    ):
        labels = {"job": job, "instance": instance}
        s.held(
            alert,
            alert,
            s.t[alert].seconds("for"),
            _flag(selector("up", **labels), bad="0", good="1"),
            [Expected("critical", labels)],
        )
    labels = {"job": REMEDIATOR_JOB, "instance": REMEDIATOR}
    s.held(
        "RedisRemediatorCoordinationDown",
        "RedisRemediatorCoordinationDown",
        s.t["RedisRemediatorCoordinationDown"].seconds("for"),
        _flag(selector("autoheal_coordination_up", **labels), bad="0", good="1"),
        [Expected("critical", labels)],
    )


def build(
    t: Thresholds, groups: list[Group], rule_file: str, evaluation: int = EVAL
) -> dict[str, object]:
    """The promtool test file for the rules of `groups`, evaluated every `evaluation` s."""
    suite = Suite(t, groups, evaluation)
    for scenario in (
        redis_down,
        ping_latency,
        unit_states,
        ssh_unreachable,
        bands,
        near_max,
        rdb,
        remediator,
        self_monitoring,
    ):
        scenario(suite)
    return suite.document(rule_file)
