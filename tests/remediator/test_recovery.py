"""The decision table and the escalation, against a small fake of one target.

Only here is the target a fake: it plays systemd's states and Redis's PING so that each row of
the runbook's table can be checked exactly. test_integration.py runs the same engine against
the real test host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from redis_autoheal.commands import Action, Command, IsActive, ServiceControl, Unit
from redis_autoheal.config import Audit, AutoRecovery, CircuitBreaker
from redis_autoheal.errors import HostKeyError, SshConnectError, SshError
from redis_autoheal.probe import ConnectivityResult, Layer, Reason
from redis_autoheal.ssh import CommandResult
from remediator.audit import AuditWriter, read_events
from remediator.breaker import BreakerStore
from remediator.metrics import Metrics
from remediator.recovery import Level, Outcome, Progress, RecoveryEngine, Trigger, next_level


@dataclass
class FakeTarget:
    """A unit and its Redis. `effects[action]` says what a command does to them."""

    state: str = "active"
    pong: bool = True
    effects: dict[Action, Callable[[FakeTarget], int]] = field(default_factory=dict)
    name: str = "redis"
    unit: Unit = field(default_factory=lambda: Unit("redis-server"))
    dry_run: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refusal: str | None = None
    ssh_error: Exception | None = None
    drop_next: Exception | None = None  # raised once, by the next command
    states_to_come: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    # Given: a state-changing command sets it, then runs until the test cancels it.
    acting: asyncio.Event | None = None

    async def run(self, command: Command, **_: Any) -> CommandResult:  # who asked: not played
        if self.ssh_error is not None:
            raise self.ssh_error
        if self.drop_next is not None:
            error, self.drop_next = self.drop_next, None
            raise error
        self.commands.append(command.name)
        if self.acting is not None and isinstance(command, ServiceControl):
            self.acting.set()
            await asyncio.Event().wait()  # until cancelled
        code = 0
        if isinstance(command, IsActive):
            if self.states_to_come:
                self.state = self.states_to_come.pop(0)
            out = self.state + "\n"
            code = 0 if self.state == "active" else 3
        else:
            assert isinstance(command, ServiceControl)
            effect = self.effects.get(command.action, _works)
            code = effect(self)
            out = ""
        return CommandResult(command, command.name, code, out, "", 0.01)

    async def ping(self, timeout_seconds: float | None = None) -> ConnectivityResult:
        del timeout_seconds
        if self.pong:
            return ConnectivityResult(layer=Layer.CONNECTIVITY, success=True, duration_seconds=0)
        return ConnectivityResult(
            layer=Layer.CONNECTIVITY,
            success=False,
            duration_seconds=0,
            reason=Reason.REFUSED,
            message="127.0.0.1:6379: Connection refused",
        )


def _works(t: FakeTarget) -> int:
    t.state, t.pong, t.states_to_come = "active", True, []
    return 0


def _no_help(t: FakeTarget) -> int:
    del t
    return 0


def _fails(t: FakeTarget) -> int:
    t.state, t.pong = "failed", False
    return 1


@pytest.fixture
def audit(tmp_path: Path) -> Audit:
    return Audit(path=tmp_path / "audit.log")


@pytest.fixture
async def engine(tmp_path: Path, audit: Audit) -> RecoveryEngine:
    settings = AutoRecovery(
        max_attempts=3,
        retry_delay_seconds=0.01,
        stable_seconds=0,
        transition_timeout_seconds=0.3,
    )
    return make_engine(tmp_path, audit, settings, CircuitBreaker(max_recoveries=100))


def make_engine(
    tmp_path: Path, audit: Audit, settings: AutoRecovery, breaker: CircuitBreaker | None = None
) -> RecoveryEngine:
    """An engine for the target `redis` with its audit log open and its breaker in tmp_path."""
    writer = AuditWriter(audit)
    writer.open()
    store = BreakerStore(tmp_path / "state", breaker or CircuitBreaker())
    store.check()
    metrics = Metrics(["redis"], store.is_open)
    return RecoveryEngine(settings, store, writer, metrics, ping_timeout_seconds=0.05)


def trigger() -> Trigger:
    return Trigger("r1", [], "127.0.0.1")


def attempt(action: str) -> list[str]:
    """The commands of one attempt: it looks (is-active), acts, and its check looks again."""
    return ["is-active", action, "is-active"]


def counter(engine: RecoveryEngine, name: str, **labels: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels)
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("previous", "state", "expected"),
    [
        (None, "active", Level.SOFT),
        (None, "inactive", Level.STANDARD),
        (None, "failed", Level.HARD),
        (None, "activating", Level.HARD),  # still in transition after the bounded wait
        (None, "deactivating", Level.HARD),
        (None, "bogus", None),
        (Level.SOFT, "active", Level.HARD),  # start would do nothing to an active unit
        (Level.SOFT, "inactive", Level.STANDARD),
        (Level.SOFT, "failed", Level.HARD),
        (Level.STANDARD, "failed", Level.HARD),
        (Level.STANDARD, "inactive", Level.HARD),
        (Level.HARD, "failed", Level.HARD),
        (Level.HARD, "active", Level.HARD),
    ],
)
def test_the_decision_table(previous: Level | None, state: str, expected: Level | None) -> None:
    assert next_level(previous, state) == expected


async def test_failed_unit_gets_a_hard_recovery(engine: RecoveryEngine, audit: Audit) -> None:
    target = FakeTarget(state="failed", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == ["is-active", "restart", "is-active"]
    assert [s.level for s in report.steps] == [Level.HARD]
    assert counter(
        engine, "autoheal_recoveries_total", target="redis", level="hard", result="success"
    )
    steps = [e for e in read_events(audit) if e.get("phase") == "verified"]
    (step,) = steps
    assert step["event_type"] == "auto_recovery"
    assert step["recovery_level"] == "hard"
    assert (step["unit_state_before"], step["unit_state_after"]) == ("failed", "active")
    assert step["result"]["success"] is True
    assert step["result"]["exit_code"] == 0


async def test_inactive_unit_gets_a_start(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="inactive", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == ["is-active", "start", "is-active"]


async def test_hung_unit_reload_then_restart(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="active", pong=False, effects={Action.RELOAD: _no_help})
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == attempt("reload") + attempt("restart")
    assert [s.level for s in report.steps] == [Level.SOFT, Level.HARD]
    assert counter(
        engine, "autoheal_recoveries_total", target="redis", level="soft", result="failure"
    )


async def test_healthy_target_is_left_alone(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="active", pong=True)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.HEALTHY
    assert target.commands == ["is-active"]
    assert engine.breaker.state("redis").recoveries == ()  # not a recovery


async def test_every_level_failing_is_exhausted_and_counted(engine: RecoveryEngine) -> None:
    failing: dict[Action, Callable[[FakeTarget], int]] = dict.fromkeys(Action, _fails)
    target = FakeTarget(state="inactive", pong=False, effects=failing)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.EXHAUSTED
    assert target.commands == attempt("start") + attempt("restart") * 2
    assert [s.level for s in report.steps] == [Level.STANDARD, Level.HARD, Level.HARD]
    assert counter(engine, "autoheal_recovery_exhausted_total", target="redis") == 1
    assert len(engine.breaker.state("redis").recoveries) == 1  # one recovery, three attempts


async def test_a_recovery_taken_over_goes_on_from_the_next_attempt_and_level(
    engine: RecoveryEngine, audit: Audit
) -> None:
    """The replica it took over from ran attempt 1 (reload); here: attempts 2 and 3 only, the
    next level first, and the outage not counted on the breaker again."""
    failing: dict[Action, Callable[[FakeTarget], int]] = dict.fromkeys(Action, _fails)
    target = FakeTarget(state="active", pong=False, effects=failing)
    taken = Trigger("r2", [], after=Progress(1, Level.SOFT))
    report = await engine.recover(target, taken)
    assert report.outcome == Outcome.EXHAUSTED
    assert target.commands == attempt("restart") * 2  # start would not help an active unit
    steps = [e for e in read_events(audit) if e.get("phase") == "verified"]
    assert [(e["attempt"], e["operation"]) for e in steps] == [(2, "restart"), (3, "restart")]
    assert engine.breaker.state("redis").recoveries == ()


@pytest.mark.parametrize(("up", "outcome"), [(True, Outcome.RECOVERED), (False, Outcome.EXHAUSTED)])
async def test_a_recovery_taken_over_after_its_last_attempt_only_looks(
    engine: RecoveryEngine, *, up: bool, outcome: Outcome
) -> None:
    target = FakeTarget(state="active" if up else "failed", pong=up)
    report = await engine.recover(target, Trigger("r2", [], after=Progress(3, Level.HARD)))
    assert report.outcome == outcome, report.reason
    assert target.commands == ["is-active"]  # nothing run: every attempt was the other's
    assert report.steps == []


async def test_transition_is_waited_out(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="activating", states_to_come=["activating", "active"])
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.HEALTHY
    assert target.commands == ["is-active"] * 2


@pytest.mark.parametrize("state", ["deactivating", "reloading"])
async def test_a_stuck_transition_is_bounded_then_hard(engine: RecoveryEngine, state: str) -> None:
    target = FakeTarget(state=state, pong=False, states_to_come=[state] * 1000)
    report = await engine.recover(target, trigger())
    assert report.steps[0].level == Level.HARD
    assert report.outcome == Outcome.RECOVERED
    # 0.3 s of transition_timeout at one look per 0.5 s: two looks before the restart
    assert target.commands.index("restart") == 2


async def test_an_unknown_state_is_not_acted_on(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="maintenance", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.EXHAUSTED
    assert "not in the runbook" in report.reason
    assert target.commands == ["is-active"]


async def test_unreachable_host_exhausts_without_acting(engine: RecoveryEngine) -> None:
    target = FakeTarget(ssh_error=SshConnectError("autobot@h:22", "connect timed out after 1s"))
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.EXHAUSTED
    assert len(report.steps) == 3
    assert "timed out" in report.reason
    assert engine.breaker.state("redis").recoveries == ()


async def test_a_changed_host_key_stops_at_once(engine: RecoveryEngine) -> None:
    target = FakeTarget(ssh_error=HostKeyError("autobot@h:22", "host key not verified"))
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.EXHAUSTED
    assert len(report.steps) == 1


async def test_resolved_alert_stops_escalation(tmp_path: Path, audit: Audit) -> None:
    engine = make_engine(tmp_path, audit, AutoRecovery(retry_delay_seconds=30, stable_seconds=0))
    target = FakeTarget(state="active", pong=False, effects={Action.RELOAD: _no_help})
    t = trigger()
    task = asyncio.create_task(engine.recover(target, t))
    async with asyncio.timeout(5):
        while len(target.commands) < 3:  # noqa: ASYNC110 -- is-active, reload, is-active: in the delay
            await asyncio.sleep(0.01)
    t.resolved.set()  # during the 30 s retry delay
    report = await asyncio.wait_for(task, 5)
    assert report.outcome == Outcome.RESOLVED
    assert "restart" not in target.commands


async def test_dry_run_decides_and_runs_only_reads(engine: RecoveryEngine, audit: Audit) -> None:
    target = FakeTarget(state="failed", pong=False, dry_run=True)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.DRY_RUN
    assert target.commands == ["is-active"]
    assert "would restart" in report.reason
    (decided,) = [e for e in read_events(audit) if e.get("phase") == "decided"]
    assert decided["command"] == "sudo -n systemctl restart redis-server"
    assert decided["dry_run"] is True
    assert engine.breaker.state("redis").recoveries == ()


async def test_open_breaker_runs_nothing(engine: RecoveryEngine) -> None:
    engine.breaker.settings = CircuitBreaker(max_recoveries=1)
    engine.breaker.record_recovery("redis")
    target = FakeTarget(state="failed", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.SUPPRESSED
    assert target.commands == []


async def test_no_ssh_is_refused_saying_why(engine: RecoveryEngine) -> None:
    target = FakeTarget(state="failed", refusal="target 'redis' has no ssh section")
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.REFUSED
    assert "no ssh section" in report.reason
    assert target.commands == []


async def test_a_hard_recovery_must_stay_up(tmp_path: Path, audit: Audit) -> None:
    engine = make_engine(
        tmp_path, audit, AutoRecovery(max_attempts=2, retry_delay_seconds=0.01, stable_seconds=0.3)
    )
    restarts = 0

    def crashes_again_the_first_time(t: FakeTarget) -> int:
        nonlocal restarts
        restarts += 1
        t.state, t.pong = "active", True
        if restarts == 1:
            asyncio.get_running_loop().call_later(0.1, setattr, t, "pong", False)
        return 0

    target = FakeTarget(
        state="failed", pong=False, effects={Action.RESTART: crashes_again_the_first_time}
    )
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert "not stable" in report.steps[0].reason
    assert report.steps[1].verified
    assert restarts == 2


async def test_an_unwritable_audit_log_stops_before_acting(
    engine: RecoveryEngine, audit: Audit
) -> None:
    audit.path.unlink()
    audit.path.mkdir()
    target = FakeTarget(state="failed", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.ABORTED
    assert target.commands == []


async def test_a_restart_whose_check_lost_the_connection_is_not_repeated(
    engine: RecoveryEngine, audit: Audit
) -> None:
    """The restart worked, the SSH channel dropped before its `is-active`: the next attempt
    looks again, finds it active and answering, and ends the recovery without acting."""

    def works_then_drops(t: FakeTarget) -> int:
        t.drop_next = SshError("autobot@h:22", "channel closed")
        return _works(t)

    target = FakeTarget(state="failed", pong=False, effects={Action.RESTART: works_then_drops})
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == ["is-active", "restart", "is-active"]
    assert [s.level for s in report.steps] == [Level.HARD, None]
    assert "channel closed" in report.steps[0].reason
    (finished,) = [e for e in read_events(audit) if e.get("phase") == "finished"]
    assert finished["outcome"] == "recovered"
    assert finished["result"]["success"] is True


async def test_every_attempt_reads_the_state_before_acting(engine: RecoveryEngine) -> None:
    """The reload did not help, and meanwhile the unit failed: the next attempt sees `failed`
    (not the `active` the reload's check found) and restarts it."""
    target = FakeTarget(state="active", pong=False, effects={Action.RELOAD: _no_help})
    target.states_to_come = ["active", "active", "failed"]  # before, after the reload, next
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == attempt("reload") + attempt("restart")
    assert [s.state_before for s in report.steps] == ["active", "failed"]


async def test_a_target_found_healthy_after_an_unreachable_attempt_is_healthy(
    engine: RecoveryEngine,
) -> None:
    """Nothing was done (the first attempt could not connect): healthy, not recovered."""
    target = FakeTarget(state="active", pong=True)
    target.drop_next = SshConnectError("autobot@h:22", "connect timed out after 1s")
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.HEALTHY
    assert target.commands == ["is-active"]
    assert engine.breaker.state("redis").recoveries == ()


class WatchedEvent(asyncio.Event):
    """An event that says when someone waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.waited.set()
        return await super().wait()


async def test_alerts_resolved_and_a_new_one_joined_at_once_do_not_stop_escalation(
    tmp_path: Path, audit: Audit
) -> None:
    """One audit batch commits two notifications in one go: every alert resolved, then a new
    firing one joined. The flag is set and cleared before the recovery wakes from its delay:
    it must see a firing alert, and go on."""
    engine = make_engine(tmp_path, audit, AutoRecovery(retry_delay_seconds=1, stable_seconds=0))
    target = FakeTarget(state="active", pong=False, effects={Action.RELOAD: _no_help})
    resolved = WatchedEvent()
    t = Trigger("r1", [], "127.0.0.1", resolved)
    task = asyncio.create_task(engine.recover(target, t))
    async with asyncio.timeout(5):
        await resolved.waited.wait()  # the reload failed: in the retry delay
    resolved.set()
    resolved.clear()
    report = await asyncio.wait_for(task, 10)
    assert report.outcome == Outcome.RECOVERED
    assert target.commands == attempt("reload") + attempt("restart")


async def test_a_unit_still_reloading_that_answers_ping_is_left_alone(
    engine: RecoveryEngine,
) -> None:
    # reloading is running (redis_autoheal.units): waited out as a transition, then judged
    # as the exporter and the health check judge it, by PING.
    target = FakeTarget(state="reloading", pong=True)
    target.states_to_come = ["reloading"] * 1000
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.HEALTHY
    assert set(target.commands) == {"is-active"}
