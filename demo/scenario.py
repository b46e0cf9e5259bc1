"""Break Redis on the stack's test host, wait until the stack has dealt with it, read the story.

    timeline = run(stack, "kill9")      # or "sigstop", "start-fails"
    print(timeline.render())

What "dealt with" means: for `kill9` and `sigstop`, the remediator finished a recovery, Redis
answers PING, and the alerts have resolved in Prometheus and Alertmanager; for `start-fails`
(every start fails), the recovery is exhausted and on-call has been paged with
RedisAutoRecoveryFailed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from demo.configs import TARGET
from demo.procs import StackError
from demo.timeline import Timeline, Watcher, collect, parse_time

if TYPE_CHECKING:
    from demo.stack import Stack

FAULTS = {
    "kill9": "kill -9 redis-server: the unit ends failed",
    "sigstop": "kill -STOP redis-server: hung, the unit stays active",
    "start-fails": "every start fails from now on, then kill -9 redis-server",
}
SETTLE_TIMEOUT = 120.0


def inject(stack: Stack, fault: str) -> str:
    """Break Redis; a description of what was done."""
    host = stack.host
    if host is None:
        raise StackError("the stack has no test host")
    if fault == "kill9":
        return f"kill -9 {host.kill9()} (redis-server)"
    if fault == "sigstop":
        return f"kill -STOP {host.sigstop()} (redis-server)"
    if fault == "start-fails":
        host.start_fails()
        return f"starts fail from now on; kill -9 {host.kill9()} (redis-server)"
    raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")


def finished_recoveries(stack: Stack, since: float) -> list[dict[str, object]]:
    """The remediator's `finished` recovery events audited since `since` (whole seconds)."""
    return [
        e
        for e in stack.audit_events()
        if e.get("event_type") == "auto_recovery"
        and e.get("phase") == "finished"
        and parse_time(str(e["timestamp"])) >= int(since)
    ]


def remediation_alerts_active(stack: Stack) -> bool:
    """Whether Prometheus or Alertmanager still has a remediate="true" alert of the target."""
    prom = [
        a
        for a in stack.prom_alerts()
        if a["labels"].get("instance") == TARGET and a["labels"].get("remediate") == "true"
    ]
    am = [
        a
        for a in stack.am_alerts()
        if a["labels"].get("instance") == TARGET and a["labels"].get("remediate") == "true"
    ]
    return bool(prom or am)


def paged(stack: Stack, alertname: str, since: float, path: str = "/oncall") -> bool:
    return any(
        alertname in p.alertnames() and p.status == "firing" and p.received_at >= since
        for p in stack.sink.pages(path)
    )


def wait_settled(stack: Stack, fault: str, since: float, timeout: float = SETTLE_TIMEOUT) -> None:
    """Until the stack has dealt with `fault` (module docstring); StackError after `timeout`."""
    assert stack.host is not None
    host = stack.host
    if fault == "start-fails":
        stack.wait_for(
            lambda: any(e.get("outcome") == "exhausted" for e in finished_recoveries(stack, since)),
            timeout,
            "the remediator to give up (recovery exhausted)",
        )
        stack.wait_for(
            lambda: paged(stack, "RedisAutoRecoveryFailed", since),
            timeout,
            "on-call to be paged with RedisAutoRecoveryFailed",
        )
        return
    stack.wait_for(
        lambda: any(e.get("outcome") == "recovered" for e in finished_recoveries(stack, since)),
        timeout,
        "the remediator to finish a recovery",
    )
    stack.wait_for(lambda: host.ping(timeout=0.5), timeout, "Redis to answer PING")
    stack.wait_for(lambda: not remediation_alerts_active(stack), timeout, "the alerts to resolve")
    acted = min(inv.ts for inv in host.invocations() if inv.ts >= since)
    stack.wait_for(
        lambda: bool(
            stack.prom_query(
                f'redis_up{{job="redis-connectivity", instance="{TARGET}"}} == 1'
                f" and timestamp(redis_up) >= {acted:.3f}"
            )
        ),
        timeout,
        "Prometheus to scrape a PONG after the recovery",
    )
    # Alertmanager tells the remediator about the resolution at the group's next interval.
    stack.wait_for(
        lambda: _resolutions_delivered(stack, since),
        15.0,
        "Alertmanager to deliver the resolved notifications",
    )


def _resolutions_delivered(stack: Stack, since: float) -> bool:
    """Every alert delivered firing to the remediator since `since` was delivered resolved."""
    status: dict[str, set[str]] = {"firing": set(), "resolved": set()}
    for event in stack.audit_events():
        if event.get("event_type") != "webhook":
            continue
        if parse_time(str(event["timestamp"])) < int(since):
            continue
        for alert in event.get("alerts", []):
            status.setdefault(alert.get("status", ""), set()).add(alert.get("alertname", ""))
    return status["firing"] <= status["resolved"]


@dataclass(frozen=True)
class Outcome:
    """What a scenario produced: the story, and why it did not settle (None if it did)."""

    timeline: Timeline
    problem: str | None


def run(stack: Stack, fault: str, timeout: float = SETTLE_TIMEOUT) -> Outcome:
    """Inject `fault`, wait until the stack settled (bounded), return what the sources say."""
    problem = None
    with Watcher(stack) as watcher:
        origin = time.time()
        description = inject(stack, fault)
        try:
            wait_settled(stack, fault, origin, timeout)
        except StackError as e:
            problem = str(e)
    return Outcome(collect(stack, origin, description, watcher), problem)
