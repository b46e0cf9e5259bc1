"""The story of a failure and its recovery, read back from the sources that recorded it.

Every time comes from where it was recorded, never from the demo's own clock (except the
moment the demo injected the fault, labelled as such):

| source | what | resolution |
|---|---|---|
| the test host's journal (`journalctl -o json`) | the kill, starts, Redis ready | µs |
| the host's systemctl invocation log | the remediator's `sudo systemctl ...` | µs |
| Prometheus: raw samples (`redis_up[..]`) | PING failed / PONG, unit state | ms |
| Prometheus: `ALERTS` samples, `/api/v1/alerts` | alert pending / firing, `activeAt` | ms |
| Alertmanager: its log, `/api/v2/alerts` | alert received (`startsAt`), delivered | ms |
| the remediator's audit log | webhook received, decisions, outcome | 1 s |
| the pager sink | on-call / ops paged | ms |

Audit timestamps are whole seconds (the runbook's format): such an event is listed at the
end of its second, and its time printed without decimals.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from demo.configs import TARGET

if TYPE_CHECKING:
    from demo.stack import Stack
    from testhost.host import Invocation

MAX_WINDOW = 3600  # seconds of Prometheus samples looked at

JOURNAL_MESSAGES = (
    re.compile(r"Main process exited"),
    re.compile(r"Failed to start"),
    re.compile(r"Start request repeated too quickly"),
    re.compile(r"^Starting "),
    re.compile(r"^Started "),
    re.compile(r"^Stopping "),
    re.compile(r"^Stopped "),
    re.compile(r"^Reload"),
    re.compile(r"Ready to accept connections"),
)
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_AM_ALERT = re.compile(r"(\w+)\[(\w+)\]\[(active|resolved)\]")


@dataclass(frozen=True)
class Event:
    """One thing that happened, when, and who recorded it."""

    at: float  # unix seconds
    stage: str  # fault, failure, detected, alert, alertmanager, webhook, action, pong, ...
    text: str
    source: str
    whole_second: bool = False  # recorded to the second only (the audit log)
    key: float | None = None  # where a whole-second event goes among the others

    @property
    def sort_key(self) -> float:
        return self.at if self.key is None else self.key


def parse_time(text: str) -> float:
    """RFC 3339 (Prometheus, Alertmanager, the audit log) to unix seconds, ns kept to µs."""
    text = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?([+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole = datetime.fromisoformat(match.group(1) + match.group(3)).timestamp()
    return whole + float(f"0.{match.group(2) or 0}")


def clock(at: float, *, whole_second: bool = False) -> str:
    stamp = datetime.fromtimestamp(at, UTC)
    return stamp.strftime("%H:%M:%S") + (
        "    " if whole_second else f".{stamp.microsecond // 1000:03d}"
    )


class Watcher:
    """Polls Prometheus' and Alertmanager's alert APIs while a scenario runs.

    Both forget an alert once it resolved (Alertmanager's API v2 lists only active ones), so
    their `activeAt` and `startsAt` are caught while they are there. A background thread, every
    `interval` seconds, bounded by `limit` seconds; the times kept are theirs, not ours.
    """

    def __init__(self, stack: Stack, interval: float = 0.2, limit: float = 600.0) -> None:
        self.stack = stack
        self.interval = interval
        self.limit = limit
        self.active_at: dict[tuple[str, str], float] = {}  # (alertname, state) -> activeAt
        self.starts_at: dict[tuple[str, str], float] = {}  # (alertname, fingerprint) -> startsAt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, RuntimeError):
                self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> None:
        for alert in self.stack.prom_alerts():
            if alert["labels"].get("instance") == TARGET:
                key = (alert["labels"]["alertname"], alert["state"])
                self.active_at.setdefault(key, parse_time(alert["activeAt"]))
        for alert in self.stack.am_alerts():
            if alert["labels"].get("instance") == TARGET:
                key = (alert["labels"]["alertname"], alert["fingerprint"])
                self.starts_at.setdefault(key, parse_time(alert["startsAt"]))


@dataclass
class Timeline:
    """The events of one scenario, in order, and the milestones that measure it."""

    origin: float  # the fault's injection
    events: list[Event] = field(default_factory=list)

    def add(self, *events: Event) -> None:
        self.events.extend(events)
        self.events.sort(key=lambda e: e.sort_key)

    def first(self, stage: str, after: float | None = None) -> Event | None:
        start = self.origin if after is None else after
        return next((e for e in self.events if e.stage == stage and e.at >= start), None)

    def milestones(self) -> dict[str, float | None]:
        """Seconds after the fault: alert firing, webhook delivered, action, ready, PONG."""

        def at(stage: str) -> float | None:
            event = self.first(stage)
            return None if event is None else event.at - self.origin

        return {
            "alert": at("alert"),
            "webhook": at("webhook"),
            "action": at("action"),
            "ready": at("ready"),
            "pong": at("pong"),
        }

    def render(self) -> str:
        lines = [f"  {'time (UTC)':<12}  {'after the fault':>15}  {'stage':<12}  what  [source]"]
        for e in self.events:
            offset = e.at - self.origin
            # A whole second is an interval: say which part of the timeline it covers.
            after = f"{offset:+.1f}..{offset + 1:.1f} s" if e.whole_second else f"{offset:+.3f} s"
            stamp = clock(e.at, whole_second=e.whole_second)
            lines.append(f"  {stamp}  {after:>15}  {e.stage:<12}  {e.text}  [{e.source}]")
        lines.append(
            "  Audit log times are whole seconds (the runbook's format): each such event is"
            " placed after the precise events\n  it follows in the log (the webhook's delivery,"
            " the command's end on the host), at the earliest moment its second allows."
        )
        return "\n".join(lines)

    def summary(self) -> str:
        m = self.milestones()
        parts = []
        if m["webhook"] is not None:
            parts.append(f"detection {m['webhook']:.2f} s (fault -> webhook delivered)")
        if m["webhook"] is not None and m["ready"] is not None:
            parts.append(f"action {m['ready'] - m['webhook']:.2f} s (webhook -> Redis ready)")
        if m["pong"] is not None:
            parts.append(f"first PONG seen by Prometheus after {m['pong']:.2f} s")
        if m["ready"] is None:
            return "Redis did not come back: " + ("; ".join(parts) or "no webhook either")
        return f"Redis ready again {m['ready']:.2f} s after the fault: " + "; ".join(parts)


# --- reading each source ------------------------------------------------------------------


def journal_events(stack: Stack, since: float) -> list[Event]:
    """The unit's journal on the test host (`journalctl -u UNIT -o json`, run as root there)."""
    host = stack.host
    if host is None:
        return []
    result = host.run(["journalctl", "-u", host.unit, "-o", "json", "--no-pager"], timeout=30)
    events = []
    for line in result.stdout.splitlines():
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
            message = str(entry["MESSAGE"])
            if at < since or not any(p.search(message) for p in JOURNAL_MESSAGES):
                continue
            ident = entry.get("SYSLOG_IDENTIFIER", "")
            if "Ready to accept connections" in message:
                events.append(
                    Event(at, "ready", "redis-server: Ready to accept connections", "host journal")
                )
            elif "Main process exited" in message:
                events.append(Event(at, "failure", message, "host journal"))
            else:
                events.append(Event(at, "host", f"{ident}: {message}", "host journal"))
    return events


def invocation_events(invocations: list[Invocation], since: float) -> list[Event]:
    """The systemctl start/stop/restart/reload calls the host recorded (who, exit code)."""
    events = []
    for inv in invocations:
        if inv.ts < since:
            continue
        who = f"{inv.sudo_user} via sudo" if inv.sudo_user else f"uid {inv.uid}"
        took = f", {1000 * (inv.end_ts - inv.ts):.0f} ms" if inv.end_ts is not None else ""
        text = f"systemctl {inv.verb} {inv.unit} ({who}): exit {inv.exit_code}{took}"
        events.append(Event(inv.ts, "action", text, "host systemctl log"))
    return events


def _raw_samples(stack: Stack, selector: str, since: float, until: float) -> list[dict[str, Any]]:
    window = min(math.ceil(until - since) + 5, MAX_WINDOW)
    return stack.prom_query(f"{selector}[{window}s]", at=until)


def prometheus_events(
    stack: Stack, since: float, until: float, acted_at: float | None = None
) -> list[Event]:
    """PING failed / answered again (redis_up) and unit states other than active, as scraped.

    The PONG is the first successful PING scraped after the remediator's first command on the
    host (`acted_at`): a short outage may fall between two scrapes and show no failed PING.
    """
    events: list[Event] = []
    for series in _raw_samples(
        stack, f'redis_up{{job="redis-connectivity", instance="{TARGET}"}}', since, until
    ):
        values = [(ts, v) for ts, v in series["values"] if ts >= since]
        failed = next((ts for ts, v in values if v == "0"), None)
        if failed is not None:
            events.append(Event(failed, "detected", "PING failed: redis_up 0", "Prometheus scrape"))
        if acted_at is not None:
            pong = next((ts for ts, v in values if v == "1" and ts >= acted_at), None)
            if pong is not None:
                text = "PING -> PONG: redis_up 1" + ("" if failed else " (no failed PING scraped)")
                events.append(Event(pong, "pong", text, "Prometheus scrape"))
    for series in _raw_samples(
        stack, f'redis_systemd_unit_state{{instance="{TARGET}"}}', since, until
    ):
        state = series["metric"].get("state", "?")
        if state == "active":
            continue
        first = next((ts for ts, v in series["values"] if ts >= since and v == "1"), None)
        if first is not None:
            events.append(
                Event(
                    first, "detected", f"unit {state} (systemd probe over SSH)", "Prometheus scrape"
                )
            )
    return events


def alert_events(stack: Stack, since: float, until: float, watcher: Watcher | None) -> list[Event]:
    """Each alert of the target going pending and firing, from Prometheus' ALERTS series."""
    events = []
    for series in _raw_samples(stack, f'ALERTS{{instance="{TARGET}"}}', since, until):
        labels = series["metric"]
        name, state = labels["alertname"], labels["alertstate"]
        first = next((ts for ts, _ in series["values"] if ts >= since), None)
        if first is None:
            continue
        extra = ""
        active_at = watcher.active_at.get((name, state)) if watcher is not None else None
        if active_at is not None:
            extra = f", activeAt {clock(active_at)}" + (
                ", before the fault" if active_at < since else ""
            )
        tags = [labels.get("severity", "")] + (
            ["remediate"] if labels.get("remediate") == "true" else []
        )
        text = f"{name} {state} ({' '.join(filter(None, tags))}{extra})"
        events.append(
            Event(first, "alert" if state == "firing" else "pending", text, "Prometheus rule")
        )
    return events


def _logfmt(line: str) -> dict[str, str]:
    return {k: v.strip('"').replace('\\"', '"') for k, v in _LOGFMT.findall(line)}


def alertmanager_events(
    stack: Stack,
    since: float,
    watcher: Watcher | None,
    audit: list[dict[str, Any]],
    delivered: dict[int, float],
) -> list[Event]:
    """Alerts Alertmanager received and the notifications it delivered, from its debug log.

    Each delivery to the remediator is paired, in order, with the webhook event the remediator
    audited for it (which says what it did with each alert); `delivered` maps that audit
    event's index to the delivery's time.
    """
    events = []
    webhooks = [i for i, e in enumerate(audit) if e.get("event_type") == "webhook"]
    for line in stack.alertmanager_log().splitlines():
        fields = _logfmt(line)
        try:
            at = parse_time(fields["ts"])
        except (KeyError, ValueError):
            continue
        msg = fields.get("msg", "")
        if msg == "Received alert" and at >= since:
            match = _AM_ALERT.fullmatch(fields.get("alert", ""))
            if match is None:
                continue
            name, _fp, status = match.groups()
            starts = [
                v for (n, _), v in (watcher.starts_at.items() if watcher else []) if n == name
            ]
            extra = f", startsAt {clock(max(starts))}" if starts and status == "active" else ""
            text = f"received {name} {status}{extra}"
            events.append(Event(at, "alertmanager", text, "Alertmanager log"))
        elif msg == "Notify success" and fields.get("receiver") == "remediator":
            index = _pop_webhook(audit, webhooks, at)
            if index is not None:
                delivered[index] = at
            if at < since:
                continue
            what = _webhook_text(audit[index]) if index is not None else "200"
            source = "Alertmanager log"
            if index is not None:
                audited = parse_time(audit[index]["timestamp"])
                source += f" + audit {clock(audited, whole_second=True).strip()}"
            events.append(Event(at, "webhook", f"delivered to the remediator: {what}", source))
        elif msg == "Notify for alerts failed" and at >= since:
            text = f"delivery failed: {fields.get('err', '')}"[:160]
            events.append(Event(at, "alertmanager", text, "Alertmanager log"))
    return events


def _pop_webhook(audit: list[dict[str, Any]], webhooks: list[int], delivered: float) -> int | None:
    """The index of the remediator's audit of the delivery Alertmanager completed at
    `delivered`, if it is the next one (audited within 2 s before the 200 reached it)."""
    while webhooks:
        audited_at = parse_time(audit[webhooks[0]]["timestamp"])
        if audited_at > delivered:
            return None  # not audited yet when this delivery ended: not ours
        index = webhooks.pop(0)
        if delivered - audited_at < 2.0:
            return index
    return None


def _webhook_text(event: dict[str, Any]) -> str:
    alerts = event.get("alerts", [])
    return ", ".join(
        f"{a.get('alertname')} {a.get('status')} -> {a.get('disposition')}" for a in alerts
    )


def audit_events(
    audit: list[dict[str, Any]], since: float, anchors: dict[int, float]
) -> list[Event]:
    """The remediator's decisions and outcomes (its ssh_command events: see the host's log).

    An audit time is a whole second. `anchors` maps an event's index to a precise time known
    to precede the next events of the log (a webhook's delivery, the end of a command on the
    host); each event is placed at the earliest moment that its second and the anchors before
    it in the log allow.
    """
    events = []
    floor = 0.0
    for i, e in enumerate(audit):
        try:
            second = parse_time(e["timestamp"])
        except (KeyError, ValueError):
            continue
        key = min(max(second, floor), second + 0.999) + i * 1e-6  # the log's order breaks ties
        floor = max(floor, key, anchors.get(i, 0.0))
        text = _audit_text(e)
        if text is not None and second >= math.floor(since):
            events.append(
                Event(second, "remediator", text, "audit log", whole_second=True, key=key)
            )
    return events


def command_anchors(audit: list[dict[str, Any]], invocations: list[Invocation]) -> dict[int, float]:
    """Audited `ssh_command ... finished` events paired, in order per verb, with the host's
    record of the command's end: the audit event was written after that."""
    ends: dict[str, list[float]] = {}
    for inv in invocations:
        if inv.end_ts is not None:
            ends.setdefault(inv.verb, []).append(inv.end_ts)
    anchors = {}
    for i, e in enumerate(audit):
        verb = str(e.get("operation"))
        if e.get("event_type") == "ssh_command" and e.get("phase") == "finished" and ends.get(verb):
            anchors[i] = ends[verb].pop(0)
    return anchors


def _audit_text(e: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one return per event kind
    kind, phase = e.get("event_type"), e.get("phase")
    if kind == "auto_recovery":
        level = e.get("recovery_level")
        if phase == "started":
            return f"recovery {e.get('recovery_id')} started"
        if phase == "decided":
            state = e.get("unit_state_before")
            return f"attempt {e.get('attempt')}: {level} recovery, unit {state}: {e.get('command')}"
        if phase == "verified":
            verdict = "verified" if e.get("result", {}).get("success") else "failed"
            return f"attempt {e.get('attempt')} ({level}) {verdict}: {e.get('reason')}"
        if phase == "finished":
            return f"recovery finished: {e.get('outcome')} ({e.get('reason')})"
        if phase == "suppressed":
            return f"recovery suppressed: {e.get('reason')}"
        return None
    if kind == "circuit_breaker":
        return f"circuit breaker {e.get('operation')}: {e.get('reason')}"
    if kind == "security_violation":
        return f"refused {e.get('operation')}: {e.get('reason')}"
    if kind == "security_violation_summary":
        source = "other sources" if e.get("other_sources") else e.get("source_ip")
        reasons = ", ".join(f"{r} {n}" for r, n in sorted((e.get("reasons") or {}).items()))
        return f"{e.get('count')} refused requests from {source} ({reasons})"
    return None


def page_events(stack: Stack, since: float) -> list[Event]:
    """Notifications the pager sink (standing in for on-call and ops) received."""
    return [
        Event(
            p.received_at,
            "page",
            f"{p.receiver} paged: {', '.join(p.alertnames())} {p.status}",
            "pager sink",
        )
        for p in stack.sink.pages()
        if p.received_at >= since
    ]


def collect(
    stack: Stack,
    origin: float,
    fault: str,
    watcher: Watcher | None = None,
    until: float | None = None,
) -> Timeline:
    """Everything the sources recorded from `origin` (when `fault` was injected) on."""
    end = time.time() if until is None else until
    audit = stack.audit_events()
    invocations = stack.host.invocations() if stack.host is not None else []
    timeline = Timeline(origin)
    timeline.add(Event(origin, "fault", fault, "demo: injected"))
    timeline.add(*journal_events(stack, origin))
    timeline.add(*invocation_events(invocations, origin))
    acted = [inv.ts for inv in invocations if inv.ts >= origin]
    timeline.add(*prometheus_events(stack, origin, end, min(acted, default=None)))
    timeline.add(*alert_events(stack, origin, end, watcher))
    delivered: dict[int, float] = {}
    timeline.add(*alertmanager_events(stack, origin, watcher, audit, delivered))
    anchors = command_anchors(audit, invocations) | delivered
    timeline.add(*audit_events(audit, origin, anchors))
    timeline.add(*page_events(stack, origin))
    return timeline
