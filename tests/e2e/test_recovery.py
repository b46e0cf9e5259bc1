"""The whole pipeline on a real stack at the fast cadence (demo/configs.py FAST): a broken
Redis on the test host -> the exporter's probes -> Prometheus' rules -> Alertmanager's routes ->
the remediator's webhook -> SSH and sudo on the host -> PONG, with the audit log telling the
story, and a person paged only when healing cannot work."""

from __future__ import annotations

import re
import time

import pytest

from demo import scenario
from demo.configs import FAST
from demo.stack import Stack
from demo.timeline import Timeline, parse_time
from tests.support import HANG

pytestmark = pytest.mark.root
REMEDIATION_ALERTS = {"RedisDown", "RedisServiceFailed", "RedisServiceInactive"}


def since(events: list[dict], t0: float) -> list[dict]:
    return [e for e in events if parse_time(e["timestamp"]) >= int(t0)]


def recoveries(stack: Stack, t0: float) -> list[dict]:
    """The auto_recovery events of the first recovery since t0, in order (a later alert of
    the same outage, RedisDown after RedisServiceFailed, may start a second one, which finds
    Redis healthy)."""
    events = [e for e in since(stack.audit_events(), t0) if e["event_type"] == "auto_recovery"]
    first = next((e["recovery_id"] for e in events if e.get("recovery_id")), None)
    return [e for e in events if e.get("recovery_id") == first]


def delivered(stack: Stack, t0: float, status: str = "firing") -> list[dict]:
    """The alerts Alertmanager delivered to the remediator since t0, as it audited them."""
    return [
        a
        for e in since(stack.audit_events(), t0)
        if e["event_type"] == "webhook"
        for a in e["alerts"]
        if a["status"] == status
    ]


FLUSH = re.compile(
    r'^ts=(?P<ts>\S+) .*aggrGroup="\{\}/\{(?P<route>[^}]*)\}:\{(?P<group>[^}]*)\}" '
    r"msg=flushing alerts=\[(?P<alerts>.*)\]$"
)


def first_grace_flushes(stack: Stack, t0: float) -> dict[str, list[str]]:
    """For each alert name, the alerts of the first flush since t0 of its on-call group (the
    remediate="true", severity="critical" route: the grace), from Alertmanager's debug log:
    e.g. {"RedisDown": ["RedisDown[1bf4ccc][resolved]"]}."""
    out: dict[str, list[str]] = {}
    for line in stack.alertmanager_log().splitlines():
        match = FLUSH.match(line)
        if match is None or parse_time(match["ts"]) < t0:
            continue
        route = match["route"]
        if 'remediate=\\"true\\"' not in route or 'severity=\\"critical\\"' not in route:
            continue
        name = re.search(r'alertname=\\"([^\\]*)\\"', match["group"])
        if name is not None:
            out.setdefault(name[1], re.findall(r"\w+\[\w+\]\[\w+\]", match["alerts"]))
    return out


def assert_story_in_order(t: Timeline) -> None:
    m = t.milestones()
    alert, webhook, action, ready = (m[k] for k in ("alert", "webhook", "action", "ready"))
    assert alert is not None, t.render()
    assert webhook is not None, t.render()
    assert action is not None, t.render()
    assert ready is not None, t.render()
    assert m["pong"] is not None, t.render()
    assert 0 < alert < webhook < action < ready, t.render()


def test_kill9_is_restarted_and_pages_no_one(stack: Stack) -> None:
    host = stack.host
    assert host is not None
    outcome = scenario.run(stack, "kill9")
    t = outcome.timeline
    assert outcome.problem is None, t.render()
    assert_story_in_order(t)
    assert host.ping()

    # What fired, and what the remediator made of it.
    first, *_ = delivered(stack, t.origin)
    assert first["alertname"] in REMEDIATION_ALERTS, t.render()
    assert first["disposition"] == "recovery_started"
    assert {a["alertname"] for a in delivered(stack, t.origin, "resolved")} >= {first["alertname"]}

    # The audit log tells the story: one hard recovery (restart), verified, finished.
    story = [(e["operation"], e["phase"]) for e in recoveries(stack, t.origin)]
    assert story == [
        ("recover", "started"),
        ("restart", "decided"),
        ("restart", "verified"),
        ("recover", "finished"),
    ], t.render()
    decided, verified, finished = recoveries(stack, t.origin)[1:]
    assert decided["unit_state_before"] == "failed"
    assert decided["command"] == "sudo -n systemctl restart redis-server"
    assert verified["result"]["success"] is True
    assert verified["unit_state_after"] == "active"
    assert (finished["outcome"], finished["recovery_level"]) == ("recovered", "hard")

    # On the host: exactly one restart, by autobot through sudo, which succeeded.
    (restart,) = [i for i in host.invocations() if i.ts >= t.origin]
    assert (restart.verb, restart.sudo_user, restart.exit_code) == ("restart", "autobot", 0)

    # The grace: the alert resolved before on-call's group_wait ended, so no page went out.
    # Wait for Alertmanager's first flush of each on-call group of the outage (at the end of
    # the grace): it holds the alerts it would page for, all resolved, so it pages no one.
    fired = {a["alertname"] for a in delivered(stack, t.origin)}
    stack.wait_for(
        lambda: set(first_grace_flushes(stack, t.origin)) >= fired,
        float(FAST.page_grace.removesuffix("s")) + HANG,
        f"Alertmanager to flush the on-call groups of {sorted(fired)}",
    )
    for alertname, alerts in first_grace_flushes(stack, t.origin).items():
        assert alerts, alertname
        assert all(a.endswith("[resolved]") for a in alerts), (alertname, alerts)
    assert stack.sink.pages() == [], t.render()


def test_hung_redis_escalates_from_reload_to_restart(stack: Stack) -> None:
    host = stack.host
    assert host is not None
    outcome = scenario.run(stack, "sigstop")
    t = outcome.timeline
    assert outcome.problem is None, t.render()
    assert_story_in_order(t)

    # Only PING fails (the unit stays active): RedisDown, after 3 failed PINGs.
    assert [a["alertname"] for a in delivered(stack, t.origin)] == ["RedisDown"], t.render()
    pings = stack.prom_query(
        f'redis_up{{job="redis-connectivity"}}[{int(time.time() - t.origin) + 1}s]'
    )[0]["values"]
    fired = t.milestones()["alert"]
    assert fired is not None, t.render()
    failed_before_firing = [ts for ts, v in pings if v == "0" and t.origin <= ts < fired + t.origin]
    assert len(failed_before_firing) >= 3, (pings, t.render())

    # One recovery: reload (soft) does not bring PONG back, restart (hard) does.
    events = recoveries(stack, t.origin)
    steps = [(e["operation"], e["phase"], e["result"]["success"]) for e in events]
    assert steps == [
        ("recover", "started", None),
        ("reload", "decided", None),
        ("reload", "verified", False),
        ("restart", "decided", None),
        ("restart", "verified", True),
        ("recover", "finished", True),
    ], t.render()
    assert "no PONG" in events[2]["reason"]
    assert events[-1]["outcome"] == "recovered"
    assert [i.verb for i in host.invocations() if i.ts >= t.origin] == ["reload", "restart"]
    assert host.unit_state() == "active"
    assert host.ping()


def test_a_start_that_always_fails_is_exhausted_and_pages_on_call(stack: Stack) -> None:
    host = stack.host
    assert host is not None
    outcome = scenario.run(stack, "start-fails")
    t = outcome.timeline
    assert outcome.problem is None, t.render()

    # The remediator tried its 3 attempts (hard: the unit failed), all refused by the host.
    finished = [e for e in recoveries(stack, t.origin) if e["phase"] == "finished"]
    assert finished[0]["outcome"] == "exhausted", t.render()
    restarts = [i for i in host.invocations() if i.ts >= t.origin]
    assert len(restarts) >= 3
    assert all(i.verb == "restart" and i.exit_code != 0 for i in restarts)
    assert not host.ping()

    # Prometheus fired the page alert and Alertmanager routed it to on-call (the sink) alone.
    pages = [p for p in stack.sink.pages("/oncall") if "RedisAutoRecoveryFailed" in p.alertnames()]
    assert pages, t.render()
    assert pages[0].receiver == "oncall"
    assert pages[0].body["commonLabels"]["severity"] == "critical"
    assert "RedisAutoRecoveryFailed" not in {a["alertname"] for a in delivered(stack, t.origin)}
    assert not [p for p in stack.sink.pages("/ops") if "RedisAutoRecoveryFailed" in p.alertnames()]
    page = t.first("page")
    assert page is not None
    assert page.at > t.origin
