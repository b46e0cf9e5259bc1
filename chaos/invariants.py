"""The campaign's invariants, judged from the ground truth (`chaos.truth.Truth`) alone.

Definitions (all times are wall-clock seconds; audit timestamps have whole seconds, so an event
stamped S happened in [S, S+1)):

- **outage**: a maximal run of samples in which the host, seen as a client sees it, is not
  healthy (unit not `active`, or no PONG: a hung Redis and a host off the network are outages
  too). It ends at the first healthy sample after it, or is still on when the sequence ends.
- **paged** (direct mode, derived as Alertmanager and the alert rules would): a recovery that
  ended `exhausted` (RedisAutoRecoveryFailed, per target, pages at once) pages for the outages
  its alerts started in and for the one going on when it ended; an open circuit breaker
  (RedisRecoveryCircuitOpen) pages from its opening on, for every outage.
  Full-stack mode fills `Truth.pages` from the pager sink instead.
- **I1 no lost outage**: every outage longer than `detection_budget` is healed (it ends) within
  `detection_budget + page_grace` of its start, or is paged by then. And paged once: no alert is
  served by two recoveries that both ended exhausted.
- **I2 do no harm**: no `reload`, `restart` or `stop` by the remediator (sudo from `autobot`)
  ran against a unit that was healthy when the decision was made. The decision is taken to be
  made at the remediator's last look at the unit before the action (its last `systemctl
  is-active` on the host, `Truth.looks`), or `harm_window` before the action if it never
  looked: harm if the host was healthy from `look_margin` before that moment until the action
  (sampled without a gap wider than `sample_gap`).
- **I3**: every recovery (`auto_recovery`, `recovery_id`) and manual operation
  (`service_operation`, `operation_id`) with a `started` event has exactly one terminal event
  (phase `finished`, whatever its outcome, `interrupted` included), and none ends unstarted.
- **I4**: the remediator's start/restart invocations never exceed `start_burst` within any
  `start_interval`, and none was refused with `start-limit-hit`.
- **I5 breaker**: the recoveries the breaker counted equal the recoveries that decided on a
  state-changing step (`phase: decided`); once it is open, no state-changing command runs on
  the host except the rest of the recovery whose count opened it.
- **I6 audit**: every line of the live file and its rotated backups parses as a JSON object;
  every state-changing `systemctl` the host ran has one `ssh_command` `started` event before it
  (within `command_lag`); no event that says a command ran (`finished` with an exit code) lacks
  its run on the host; no recovery or step event is written twice.
- **I7**: every GET /healthz answers 200, except around the times the campaign itself stopped
  the remediator (`remediator_down`).
"""

from __future__ import annotations

import calendar
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chaos.truth import STATE_CHANGING, Action, Page, Sample, Truth

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

INVARIANTS = ("I1", "I2", "I3", "I4", "I5", "I6", "I7")
PROBE_TIMEOUT_MARGIN = 2.5  # a probe begun just before a kill fails after it
RECOVERY_IDS = {"auto_recovery": "recovery_id", "service_operation": "operation_id"}


@dataclass(frozen=True)
class Violation:
    invariant: str
    sequence: str  # "seed S sequence I"
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant} [{self.sequence}] {self.detail}"


@dataclass(frozen=True)
class Outage:
    start: float
    end: float | None  # None: still on when the sequence ended


def event_time(event: dict[str, Any]) -> float:
    """The audit timestamp (`2025-10-10T14:30:00Z`) as seconds; the start of its second."""
    try:
        return float(calendar.timegm(time.strptime(str(event["timestamp"]), "%Y-%m-%dT%H:%M:%SZ")))
    except (KeyError, ValueError):
        return 0.0


def outages(samples: list[Sample]) -> list[Outage]:
    found: list[Outage] = []
    start: float | None = None
    for s in samples:
        if not s.healthy and start is None:
            start = s.t
        elif s.healthy and start is not None:
            found.append(Outage(start, s.t))
            start = None
    if start is not None:
        found.append(Outage(start, None))
    return found


def remediator_actions(truth: Truth, verbs: Iterable[str] = STATE_CHANGING) -> list[Action]:
    wanted = set(verbs)
    chosen = [a for a in truth.actions if a.sudo_user == "autobot" and a.verb in wanted]
    return sorted(chosen, key=lambda a: a.ts)


def _alert_starts(started: dict[str, Any] | None) -> tuple[float, ...]:
    """The startsAt of the alerts a recovery's `started` event lists, as seconds."""
    if not started:
        return ()
    starts = []
    for alert in started.get("alerts") or ():
        text = str(alert.get("starts_at", ""))
        try:
            head, _, frac = text.rstrip("Z").partition(".")
            value = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
            starts.append(value + (float("0." + frac) if frac.isdigit() else 0.0))
        except ValueError:
            continue
    return tuple(starts)


def pages_from_audit(audit: list[dict[str, Any]], breaker: dict[str, Any]) -> list[Page]:
    """Direct mode's pages: exhausted recoveries and an open breaker (see the docstring)."""
    started: dict[str, dict[str, Any]] = {}
    pages: list[Page] = []
    for e in audit:
        if e.get("event_type") != "auto_recovery":
            continue
        rid = e.get("recovery_id")
        if e.get("phase") == "started" and isinstance(rid, str):
            started[rid] = e
        elif e.get("phase") == "finished" and _outcome(e) == "exhausted":
            first = started.get(str(rid))
            keys = tuple(
                f"{a.get('fingerprint')}@{a.get('starts_at')}"
                for a in ((first or {}).get("alerts") or ())
            )
            pages.append(
                Page(
                    event_time(e),
                    "recovery exhausted",
                    recovery_id=str(rid),
                    alert_key=",".join(keys) or None,
                    alert_starts=_alert_starts(first),
                )
            )
    if breaker.get("open") and breaker.get("opened_at") is not None:
        pages.append(Page(float(breaker["opened_at"]), "circuit breaker open"))
    return pages


def _outcome(event: dict[str, Any]) -> str | None:
    """A terminal event's outcome: top level today, `result.outcome` in the contract's form."""
    result = event.get("result")
    if isinstance(result, dict) and result.get("outcome"):
        return str(result["outcome"])
    value = event.get("outcome")
    return None if value is None else str(value)


def _covers(page: Page, outage: Outage) -> bool:
    if page.why == "circuit breaker open":
        return True
    end = outage.end if outage.end is not None else float("inf")
    if any(outage.start - 1.0 <= s <= end for s in page.alert_starts):
        return True
    # The page names the target, not an alert: whoever it reaches finds Redis down then.
    return outage.start - 1.0 <= page.t <= end + 1.0


def classify(truth: Truth) -> list[tuple[Outage, str]]:
    """Each outage longer than the detection budget: "healed", "paged", "lost" or "unjudged"
    (still on, unpaged, when observation stopped before its deadline)."""
    lim = truth.limits
    found = []
    for o in outages(truth.samples):
        end = o.end if o.end is not None else truth.ended
        if end - o.start <= lim.detection_budget:
            continue
        deadline = o.start + lim.detection_budget + lim.page_grace
        if o.end is not None and o.end <= deadline:
            found.append((o, "healed"))
        elif any(p.t <= deadline and _covers(p, o) for p in truth.pages):
            found.append((o, "paged"))
        elif o.end is None and truth.ended < deadline:
            found.append((o, "unjudged"))
        else:
            found.append((o, "lost"))
    return found


def check_i1(truth: Truth) -> list[str]:
    lim = truth.limits
    found = []
    for o, verdict in classify(truth):
        at = o.start - truth.started
        if verdict == "unjudged":
            found.append(f"outage from {at:.1f}s still on when observation stopped, unpaged")
        elif verdict == "lost":
            how = "still down" if o.end is None else f"ended only at {o.end - truth.started:.1f}s"
            found.append(
                f"lost outage from {at:.1f}s: {how}, not healed within "
                f"{lim.detection_budget + lim.page_grace:g}s and nobody paged"
            )
    by_alert: dict[str, list[str]] = {}
    for p in truth.pages:
        for key in (p.alert_key or "").split(","):
            if key and p.recovery_id:
                by_alert.setdefault(key, []).append(p.recovery_id)
    for key, rids in sorted(by_alert.items()):
        if len(rids) > 1:
            found.append(f"alert {key} paged {len(rids)} times (exhausted recoveries {rids})")
    return found


def _healthy_throughout(samples: list[Sample], begin: float, end: float, gap: float) -> bool:
    window = [s for s in samples if begin <= s.t <= end]
    if not window or window[0].t - begin > gap or end - window[-1].t > gap:
        return False
    if any(b.t - a.t > gap for a, b in itertools.pairwise(window)):
        return False
    return all(s.healthy for s in window)


def check_i2(truth: Truth) -> list[str]:
    lim = truth.limits
    found = []
    for a in remediator_actions(truth, ("reload", "restart", "stop")):
        looked = [t for t in truth.looks if t < a.ts]
        decided = max(looked) if looked else a.ts - lim.harm_window
        since = decided - lim.look_margin if looked else decided
        if _healthy_throughout(truth.samples, since, a.ts, lim.sample_gap):
            seen = f"last looked at {decided - truth.started:.2f}s" if looked else "never looked"
            found.append(
                f"{a.verb} at {a.ts - truth.started:.2f}s of a unit active and answering PING "
                f"since {since - truth.started:.2f}s ({seen})"
            )
    return found


def check_i3(truth: Truth) -> list[str]:
    started: dict[str, int] = {}
    terminal: dict[str, list[str]] = {}
    for e in truth.audit:
        field = RECOVERY_IDS.get(str(e.get("event_type")))
        key = e.get(field) if field else None
        if not isinstance(key, str):
            continue
        if e.get("phase") == "started":
            started[key] = started.get(key, 0) + 1
        elif e.get("phase") == "finished":
            terminal.setdefault(key, []).append(str(_outcome(e)))
    found = []
    for key in started:
        ends = terminal.get(key, [])
        if len(ends) != 1:
            what = "no terminal event" if not ends else f"{len(ends)} terminal events {ends}"
            found.append(f"{key}: started, {what}")
    found.extend(f"{key}: terminal event without a start" for key in terminal if key not in started)
    return found


def check_i4(truth: Truth) -> list[str]:
    lim = truth.limits
    starts = remediator_actions(truth, ("start", "restart"))
    found = [
        f"{a.verb} at {a.ts - truth.started:.2f}s refused: start-limit-hit"
        for a in starts
        if a.result == "start-limit-hit"
    ]
    for i, first in enumerate(starts):
        within = [a for a in starts[i:] if a.ts - first.ts < lim.start_interval]
        if len(within) > lim.start_burst:
            found.append(
                f"{len(within)} starts within {lim.start_interval:g}s from "
                f"{first.ts - truth.started:.2f}s (limit {lim.start_burst})"
            )
            break
    return found


def _commands(truth: Truth) -> list[dict[str, Any]]:
    return [
        e
        for e in truth.audit
        if e.get("event_type") == "ssh_command"
        and e.get("phase") == "started"
        and e.get("operation") in STATE_CHANGING
    ]


def match_actions(truth: Truth) -> tuple[dict[int, int], list[Action], list[int]]:
    """Pair each state-changing action on the host with the audit's `ssh_command` `started`
    event for it: (action index -> event index in `_commands`, unmatched actions, unmatched
    events)."""
    commands = _commands(truth)
    actions = remediator_actions(truth)
    used: set[int] = set()
    pairs: dict[int, int] = {}
    unmatched: list[Action] = []
    for ai, a in enumerate(actions):
        for ci, e in enumerate(commands):
            if ci in used or e.get("operation") != a.verb:
                continue
            t = event_time(e)
            if t <= a.ts + 0.05 and a.ts - t <= truth.limits.command_lag + 1.0:
                used.add(ci)
                pairs[ai] = ci
                break
        else:
            unmatched.append(a)
    return pairs, unmatched, [ci for ci in range(len(commands)) if ci not in used]


def _step_key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e.get("recovery_id"), e.get("attempt"), e.get("operation"), e.get("command"))


def check_i5(truth: Truth) -> list[str]:
    found = []
    decided = {
        e.get("recovery_id")
        for e in truth.audit
        if e.get("event_type") == "auto_recovery" and e.get("phase") == "decided"
    }
    counted = len(truth.breaker.get("recoveries") or ())
    if counted != len(decided):
        found.append(
            f"breaker counted {counted} recoveries, {len(decided)} decided on a state-changing step"
        )
    opened = truth.breaker.get("opened_at")
    if not truth.breaker.get("open") or opened is None:
        return found
    openers = {
        e.get("recovery_id")
        for e in truth.audit
        if e.get("event_type") == "circuit_breaker" and e.get("operation") == "open"
    }
    commands = _commands(truth)
    pairs, _, _ = match_actions(truth)
    for ai, a in enumerate(remediator_actions(truth)):
        if a.ts <= float(opened):
            continue
        rid = commands[pairs[ai]].get("recovery_id") if ai in pairs else None
        if rid is None or rid not in openers:
            found.append(
                f"{a.verb} at {a.ts - truth.started:.2f}s ran while the breaker was open "
                f"(since {float(opened) - truth.started:.2f}s; recovery {rid})"
            )
    return found


def check_i6(truth: Truth) -> list[str]:
    found = list(truth.audit_problems)
    commands = _commands(truth)
    _, unmatched, unused = match_actions(truth)
    found.extend(
        f"host ran {a.verb} at {a.ts - truth.started:.2f}s; no ssh_command event for it"
        for a in unmatched
    )
    finished = {
        _step_key(e): e
        for e in truth.audit
        if e.get("event_type") == "ssh_command" and e.get("phase") == "finished"
    }
    for ci in unused:
        end = finished.get(_step_key(commands[ci]))
        code = (end or {}).get("result", {}).get("exit_code")
        if code is not None:
            found.append(
                f"audit says {commands[ci].get('operation')} ({_step_key(commands[ci])}) ran "
                f"and exited {code}; the host has no record of it"
            )
    seen: dict[tuple[Any, ...], int] = {}
    for e in truth.audit:
        if e.get("event_type") == "auto_recovery" and e.get("phase") in ("started", "decided"):
            key: tuple[Any, ...] = ("auto_recovery", e.get("recovery_id"), e.get("phase"))
            key += (e.get("attempt"),)
        elif e in commands:
            key = ("ssh_command", *_step_key(e))
        else:
            continue
        seen[key] = seen.get(key, 0) + 1
    found.extend(f"written {n} times: {key}" for key, n in seen.items() if n > 1)
    return found


def check_i7(truth: Truth) -> list[str]:
    def excused(t: float) -> bool:
        return any(a - PROBE_TIMEOUT_MARGIN <= t <= b + 0.5 for a, b in truth.remediator_down)

    bad = [p for p in truth.probes if not p.ok and not excused(p.t)]
    if not bad:
        return []
    first = bad[0]
    when = first.t - truth.started
    return [f"/healthz failed {len(bad)} time(s), first at {when:.2f}s: {first.detail}"]


CHECKS: dict[str, Callable[[Truth], list[str]]] = {
    "I1": check_i1,
    "I2": check_i2,
    "I3": check_i3,
    "I4": check_i4,
    "I5": check_i5,
    "I6": check_i6,
    "I7": check_i7,
}


def check(truth: Truth) -> list[Violation]:
    """Every violation of every invariant in this sequence."""
    return [
        Violation(name, truth.name, detail)
        for name, checker in CHECKS.items()
        for detail in checker(truth)
    ]
