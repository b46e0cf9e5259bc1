"""Each invariant checker catches its violation in a crafted ground truth, and passes a clean one.

The truths are built by hand: a host sampled every 0.1 s from T0, `systemctl` runs on it, audit
events, pages, /healthz probes. What a checker is fed is what the campaign collects."""

from __future__ import annotations

import gzip
import time
from typing import Any

from chaos import invariants
from chaos.runner import read_audit
from chaos.truth import Action, Page, Probe, Sample, Truth

T0 = 1_760_000_000.0  # a whole second: audit timestamps are whole seconds


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def samples(*spans: tuple[float, float, str, bool], until: float = 40.0) -> list[Sample]:
    """Healthy every 0.1 s from T0 to T0+until, except within the (from, to, state, pong) spans."""
    found = []
    for n in range(int(until * 10) + 1):
        t = n / 10
        state, pong = "active", True
        for begin, end, s, p in spans:
            if begin <= t < end:
                state, pong = s, p
        found.append(Sample(T0 + t, state, pong))
    return found


def truth(**fields: Any) -> Truth:
    base: dict[str, Any] = {
        "name": "seed 0 sequence 0",
        "started": T0,
        "ended": T0 + 40,
        "samples": samples(),
    }
    return Truth(**(base | fields))


def ev(t: float, event_type: str, **fields: Any) -> dict[str, Any]:
    return {"timestamp": stamp(T0 + t), "event_type": event_type, **fields}


def recovery(t: float, rid: str, outcome: str | None = "recovered") -> list[dict[str, Any]]:
    """A recovery's started event and, unless outcome is None, its terminal one."""
    started = ev(
        t,
        "auto_recovery",
        phase="started",
        recovery_id=rid,
        alerts=[{"fingerprint": "f1", "starts_at": stamp(T0 + t - 1)}],
    )
    if outcome is None:
        return [started]
    return [started, ev(t + 2, "auto_recovery", phase="finished", recovery_id=rid, outcome=outcome)]


def command(t: float, rid: str, verb: str, exit_code: int | None = 0) -> list[dict[str, Any]]:
    """The audit's decided + ssh_command started/finished events of one state-changing step."""
    ctx = {"recovery_id": rid, "attempt": 1, "operation": verb, "command": f"systemctl {verb}"}
    return [
        ev(t, "auto_recovery", phase="decided", recovery_id=rid, attempt=1),
        ev(t, "ssh_command", phase="started", **ctx),
        ev(t + 0.5, "ssh_command", phase="finished", result={"exit_code": exit_code}, **ctx),
    ]


def act(t: float, verb: str = "restart", **fields: Any) -> Action:
    return Action(verb, T0 + t, T0 + t + 0.3, "done", **fields)


def messages(checker: str, t: Truth) -> list[str]:
    return invariants.CHECKS[checker](t)


# --- I1 no lost outage ----------------------------------------------------------------------


def test_i1_an_outage_neither_healed_nor_paged_is_lost():
    down = samples((5.0, 30.0, "failed", False))
    (problem,) = messages("I1", truth(samples=down))
    assert "lost outage from 5.0s" in problem
    assert "ended only at 30.0s" in problem
    assert messages("I1", truth(samples=samples((5.0, 99.0, "failed", False))))[0].startswith(
        "lost outage from 5.0s: still down"
    )


def test_i1_healed_in_time_short_or_paged_outages_are_fine():
    assert messages("I1", truth(samples=samples((5.0, 15.0, "failed", False)))) == []
    assert messages("I1", truth(samples=samples((5.0, 6.5, "active", False)))) == []  # a blip
    page = Page(T0 + 12, "recovery exhausted", "r1", "f1@x", alert_starts=(T0 + 5.1,))
    down = samples((5.0, 30.0, "failed", False))
    assert messages("I1", truth(samples=down, pages=[page])) == []
    breaker = Page(T0 + 1, "circuit breaker open")  # open before: on-call already knows
    assert messages("I1", truth(samples=down, pages=[breaker])) == []


def test_i1_a_page_for_another_outage_or_after_the_deadline_does_not_count():
    down = samples((5.0, 30.0, "failed", False))
    before = Page(T0 + 3, "recovery exhausted", "r1", "f1@x", alert_starts=(T0 + 1.0,))
    late = Page(T0 + 25, "recovery exhausted", "r2", "f1@y", alert_starts=(T0 + 5.1,))
    assert len(messages("I1", truth(samples=down, pages=[before, late]))) == 1


def test_i1_a_page_while_the_outage_goes_on_counts_whichever_alert_it_was_for():
    """RedisAutoRecoveryFailed names the target: a recovery started by an earlier outage's
    alert that ends exhausted during this one pages for this one too."""
    down = samples((5.0, 30.0, "failed", False))
    during = Page(T0 + 12, "recovery exhausted", "r1", "f1@x", alert_starts=(T0 + 1.0,))
    assert messages("I1", truth(samples=down, pages=[during])) == []


def test_i1_one_alert_paged_twice_is_caught():
    pages = [
        Page(T0 + 8, "recovery exhausted", "r1", "f1@a", alert_starts=(T0 + 5.1,)),
        Page(T0 + 14, "recovery exhausted", "r2", "f1@a", alert_starts=(T0 + 5.1,)),
    ]
    (problem,) = messages("I1", truth(samples=samples((5.0, 99.0, "failed", False)), pages=pages))
    assert problem == "alert f1@a paged 2 times (exhausted recoveries ['r1', 'r2'])"


def test_pages_from_audit_exhausted_recoveries_and_an_open_breaker():
    audit = [*recovery(5, "r1", "exhausted"), *recovery(20, "r2", "recovered")]
    pages = invariants.pages_from_audit(audit, {"open": True, "opened_at": T0 + 30})
    assert [(p.why, p.recovery_id) for p in pages] == [
        ("recovery exhausted", "r1"),
        ("circuit breaker open", None),
    ]
    assert pages[0].alert_starts == (T0 + 4,)
    # The contract's form of the outcome (result.outcome) counts the same.
    finished = ev(7, "auto_recovery", phase="finished", recovery_id="r3")
    finished["result"] = {"outcome": "exhausted"}
    assert len(invariants.pages_from_audit([finished], {})) == 1


# --- I2 do no harm --------------------------------------------------------------------------


def test_i2_a_restart_of_a_healthy_unit_is_harm():
    (problem,) = messages("I2", truth(actions=[act(10.0, "restart")]))
    assert problem == (
        "restart at 10.00s of a unit active and answering PING since 9.00s (never looked)"
    )
    assert len(messages("I2", truth(actions=[act(10.0, "reload"), act(20.0, "stop")]))) == 2


def test_i2_the_decision_is_the_last_look_at_the_unit():
    # Back by itself at 9.5 s; the remediator looked at 9.8 s and restarted it at 10 s.
    back = samples((5.0, 9.5, "failed", False))
    (problem,) = messages("I2", truth(samples=back, actions=[act(10.0)], looks=[T0 + 9.8]))
    assert problem == (
        "restart at 10.00s of a unit active and answering PING since 9.65s (last looked at 9.80s)"
    )
    # It looked at 9.4 s (still failed) and acted on that: Redis came back meanwhile.
    assert messages("I2", truth(samples=back, actions=[act(10.0)], looks=[T0 + 9.4])) == []
    # A look after the action is not what it decided on.
    later = truth(samples=back, actions=[act(10.0)], looks=[T0 + 9.4, T0 + 10.5])
    assert messages("I2", later) == []


def test_i2_acting_on_an_unhealthy_or_unknown_unit_is_not_harm():
    hung = samples((5.0, 9.6, "active", False))  # healthy from 9.6: less than 1 s before 10
    assert messages("I2", truth(samples=hung, actions=[act(10.0)])) == []
    gap = [s for s in samples() if not 9.3 < s.t - T0 < 9.8]  # not seen: unknown
    assert messages("I2", truth(samples=gap, actions=[act(10.0)])) == []
    console = act(10.0, sudo_user=None)  # the campaign's own console, not the remediator
    assert messages("I2", truth(actions=[console, act(12.0, "start")])) == []


# --- I3 one terminal event ------------------------------------------------------------------


def test_i3_each_started_recovery_needs_exactly_one_terminal_event():
    assert messages("I3", truth(audit=recovery(1, "r1"))) == []
    interrupted = ev(3, "auto_recovery", phase="finished", recovery_id="r2")
    interrupted["result"] = {"outcome": "interrupted"}
    assert messages("I3", truth(audit=[*recovery(1, "r2", None), interrupted])) == []
    assert messages("I3", truth(audit=recovery(1, "r3", None))) == [
        "r3: started, no terminal event"
    ]
    doubled = [*recovery(1, "r4"), ev(4, "auto_recovery", phase="finished", recovery_id="r4")]
    assert messages("I3", truth(audit=doubled))[0].startswith("r4: started, 2 terminal events")
    orphan = [ev(4, "service_operation", phase="finished", operation_id="op1")]
    assert messages("I3", truth(audit=orphan)) == ["op1: terminal event without a start"]


# --- I4 start limit -------------------------------------------------------------------------


def test_i4_more_than_five_starts_in_ten_seconds():
    five = [act(1.0 + 2 * n, "start") for n in range(5)]
    assert messages("I4", truth(actions=five)) == []
    six = [act(1.0 + 1.5 * n, "restart") for n in range(6)]
    assert messages("I4", truth(actions=six)) == ["6 starts within 10s from 1.00s (limit 5)"]
    refused = Action("start", T0 + 3, T0 + 3.1, "start-limit-hit", "autobot")
    assert messages("I4", truth(actions=[refused])) == ["start at 3.00s refused: start-limit-hit"]


# --- I5 breaker -----------------------------------------------------------------------------


def test_i5_counted_recoveries_equal_recoveries_run():
    audit = [*command(2, "r1", "restart"), *command(8, "r2", "start")]
    breaker = {"open": False, "recoveries": [T0 + 2, T0 + 8]}
    actions = [act(2.2, "restart"), act(8.2, "start")]
    assert messages("I5", truth(audit=audit, breaker=breaker, actions=actions)) == []
    breaker["recoveries"] = [T0 + 2, T0 + 5, T0 + 8]
    (problem,) = messages("I5", truth(audit=audit, breaker=breaker, actions=actions))
    assert problem == "breaker counted 3 recoveries, 2 decided on a state-changing step"


def test_i5_nothing_but_the_opener_runs_while_open():
    opened = ev(10, "circuit_breaker", operation="open", recovery_id="r3")
    audit = [*command(10, "r3", "restart"), opened, *command(14, "r4", "restart")]
    breaker = {"open": True, "opened_at": T0 + 10.0, "recoveries": [T0 + 10, T0 + 14]}
    actions = [act(10.3, "restart"), act(14.3, "restart")]
    (problem,) = messages("I5", truth(audit=audit, breaker=breaker, actions=actions))
    assert problem.startswith("restart at 14.30s ran while the breaker was open")
    assert "recovery r4" in problem
    ok = truth(audit=audit[:4], breaker=breaker | {"recoveries": [T0 + 10]}, actions=actions[:1])
    assert messages("I5", ok) == []


# --- I6 audit -------------------------------------------------------------------------------


def test_i6_every_host_action_is_audited_once_and_every_audited_run_happened():
    audit = command(2, "r1", "restart")
    assert messages("I6", truth(audit=audit, actions=[act(2.3)])) == []
    lost = messages("I6", truth(audit=audit, actions=[act(2.3), act(20.0, "reload")]))
    assert lost == ["host ran reload at 20.00s; no ssh_command event for it"]
    (phantom,) = messages("I6", truth(audit=audit, actions=[]))
    assert phantom.startswith("audit says restart")
    assert "exited 0; the host has no record of it" in phantom
    # A command whose connection failed (no exit code) need not have reached the host.
    failed = command(2, "r1", "restart", exit_code=None)
    assert messages("I6", truth(audit=failed, actions=[])) == []


def test_i6_doubled_events_and_unparsable_lines():
    audit = command(2, "r1", "restart")
    doubled = [*audit, audit[0]]
    (problem,) = messages("I6", truth(audit=doubled, actions=[act(2.3)]))
    assert problem == "written 2 times: ('auto_recovery', 'r1', 'decided', 1)"
    bad = truth(audit=audit, actions=[act(2.3)], audit_problems=["audit.log:3: not JSON"])
    assert messages("I6", bad) == ["audit.log:3: not JSON"]


def test_read_audit_reads_rotated_files_oldest_first_and_reports_bad_lines(tmp_path):
    log = tmp_path / "audit.log"
    (tmp_path / "audit.log.2.gz").write_bytes(gzip.compress(b'{"n": 1}\n'))
    (tmp_path / "audit.log.1.gz").write_bytes(gzip.compress(b'{"n": 2}\n[3]\n'))
    (tmp_path / "audit.log.rotating").write_bytes(b'{"n": 4}\n')
    log.write_bytes(b'{"n": 5}\n{"n": 6, "cut')
    (tmp_path / "audit.log.lock").write_bytes(b"")
    events, problems = read_audit(log)
    assert [e["n"] for e in events] == [1, 2, 4, 5]
    assert problems[0] == "audit.log.1.gz:2: not an object: b'[3]'"
    assert problems[1].startswith("audit.log: last line incomplete")
    assert problems[2].startswith("audit.log:2: not JSON")


# --- I7 /healthz ----------------------------------------------------------------------------


def test_i7_healthz_must_answer_except_while_the_campaign_stopped_the_remediator():
    probes = [Probe(T0 + n / 4, True, "200") for n in range(40)]
    probes.append(Probe(T0 + 5.0, False, "ConnectionRefusedError"))
    (problem,) = messages("I7", truth(probes=probes))
    assert problem == "/healthz failed 1 time(s), first at 5.00s: ConnectionRefusedError"
    assert messages("I7", truth(probes=probes, remediator_down=[(T0 + 4.5, T0 + 6.0)])) == []


def test_check_names_the_sequence_and_invariant():
    audited = truth(
        actions=[act(10.3, "restart")],
        audit=command(10, "r", "restart"),
        breaker={"recoveries": [T0 + 10]},
    )
    (v,) = invariants.check(audited)
    assert (v.invariant, v.sequence) == ("I2", "seed 0 sequence 0")
    assert str(v).startswith("I2 [seed 0 sequence 0] restart at 10.30s")
