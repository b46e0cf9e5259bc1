"""What mutation testing found untested in remediator/recovery.py (scripts/mutation.sh):
a recovery cut by shutdown, what a dry run audits and counts. Each test asserts what a person
reads afterwards: the audit log and /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from redis_autoheal.commands import Action, Command
from redis_autoheal.config import Audit, CircuitBreaker
from redis_autoheal.ssh import CommandResult
from remediator.audit import AUTOHEAL, read_events
from remediator.recovery import Outcome, RecoveryEngine, Report
from tests.remediator.test_recovery import (
    FakeTarget,
    _no_help,
    audit,
    counter,
    engine,
    trigger,
)

__all__ = ["audit", "engine"]  # the fixtures, shared with test_recovery.py


def finished(audit: Audit) -> dict[str, Any]:
    (event,) = [e for e in read_events(audit) if e.get("phase") == "finished"]
    return event


async def recovery_held_mid_command(
    engine: RecoveryEngine,
) -> tuple[FakeTarget, asyncio.Task[Report]]:
    """A hard recovery started, its restart running until the task is cancelled."""
    acting = asyncio.Event()
    target = FakeTarget(state="failed", pong=False, acting=acting)
    task = asyncio.create_task(engine.recover(target, trigger()))
    async with asyncio.timeout(10):
        await acting.wait()
    return target, task


async def test_a_recovery_cancelled_mid_command_audits_its_interruption(
    engine: RecoveryEngine, audit: Audit
) -> None:
    target, task = await recovery_held_mid_command(engine)
    task.cancel()
    async with asyncio.timeout(10):
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the cancellation was swallowed")
    end = finished(audit)
    assert end["outcome"] == end["result"]["outcome"] == "interrupted"
    assert end["result"]["success"] is False
    assert end["reason"] == (
        "the remediator shut down before this recovery ended (during attempt 1, restart)"
    )
    assert (end["recovery_level"], end["attempts"], end["recovery_id"]) == ("hard", 1, "r1")
    assert target.commands == ["is-active", "restart"]


async def test_a_recovery_cancelled_before_its_first_step_says_so(
    engine: RecoveryEngine, audit: Audit
) -> None:
    target = FakeTarget(state="failed", pong=False)
    looked = asyncio.Event()
    run = target.run

    async def held_look(command: Command, **kw: Any) -> CommandResult:
        looked.set()
        await asyncio.Event().wait()  # until cancelled
        return await run(command, **kw)

    target.run = held_look  # type: ignore[method-assign]
    task = asyncio.create_task(engine.recover(target, trigger()))
    async with asyncio.timeout(10):
        await looked.wait()
    task.cancel()
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)
    end = finished(audit)
    assert end["outcome"] == "interrupted"
    assert end["reason"] == "the remediator shut down before this recovery ended"
    assert (end["recovery_level"], end["attempts"]) == (None, 1)


async def test_shutdown_before_acting_runs_nothing(engine: RecoveryEngine, audit: Audit) -> None:
    engine.stopping.set()
    target = FakeTarget(state="failed", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.INTERRUPTED
    assert report.reason == "the remediator is shutting down: stopped before acting"
    assert target.commands == []
    end = finished(audit)
    assert (end["outcome"], end["result"]["success"]) == ("interrupted", False)
    assert end["reason"] == report.reason


async def test_shutdown_between_attempts_starts_no_other(
    engine: RecoveryEngine, audit: Audit
) -> None:
    def reload_then_shutdown(t: FakeTarget) -> int:
        engine.stopping.set()
        return _no_help(t)

    target = FakeTarget(state="active", pong=False, effects={Action.RELOAD: reload_then_shutdown})
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.INTERRUPTED
    assert report.reason == "the remediator is shutting down: stopped after 1 attempt(s)"
    assert target.commands == ["is-active", "reload", "is-active"]  # no restart
    assert finished(audit)["attempts"] == 1


async def test_a_dry_run_audits_its_decision_and_counts_it(
    engine: RecoveryEngine, audit: Audit
) -> None:
    target = FakeTarget(state="failed", pong=False, dry_run=True)
    report = await engine.recover(target, trigger())
    assert report.reason == "dry run: would restart (unit failed)"
    (decided,) = [e for e in read_events(audit) if e.get("phase") == "decided"]
    assert decided["event_type"] == "auto_recovery"
    assert decided["operation"] == "restart"
    assert decided["service"] == "redis"
    assert decided["result"]["success"] is None
    assert (decided["recovery_level"], decided["attempt"]) == ("hard", 1)
    assert decided["unit_state_before"] == "failed"
    assert decided["source_ip"] == "127.0.0.1"
    assert counter(
        engine, "autoheal_recoveries_total", target="redis", level="hard", result="dry_run"
    )
    end = finished(audit)
    assert (end["outcome"], end["result"]["success"]) == ("dry_run", True)


async def test_an_interruption_the_audit_log_cannot_take_is_written_when_it_can(
    engine: RecoveryEngine, audit: Audit, caplog: pytest.LogCaptureFixture
) -> None:
    _, task = await recovery_held_mid_command(engine)
    aside = audit.path.with_name("aside.log")
    audit.path.rename(aside)
    audit.path.mkdir()  # the log cannot be written now
    with caplog.at_level(logging.WARNING, logger="remediator.recovery"):
        task.cancel()
        async with asyncio.timeout(10):
            await asyncio.gather(task, return_exceptions=True)
    assert engine.audit.overdue == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("target=redis could not audit the interruption of recovery: cannot open ")
        for m in messages
    )
    reason = "the remediator shut down before this recovery ended (during attempt 1, restart)"
    assert f"target=redis recovery r1: interrupted: {reason}" in messages
    audit.path.rmdir()
    aside.rename(audit.path)
    await engine.audit.close()  # writes what is overdue
    end = finished(audit)
    assert (end["outcome"], end["reason"], end["attempts"]) == ("interrupted", reason, 1)


async def test_the_recovery_that_fills_the_breaker_audits_its_opening(
    engine: RecoveryEngine, audit: Audit
) -> None:
    engine.breaker.settings = CircuitBreaker(max_recoveries=1)
    target = FakeTarget(state="failed", pong=False)
    report = await engine.recover(target, trigger())
    assert report.outcome == Outcome.RECOVERED
    (opened,) = [e for e in read_events(audit) if e["event_type"] == "circuit_breaker"]
    assert (opened["service"], opened["operation"], opened["user"]) == (
        "redis",
        "open",
        AUTOHEAL.as_json(),
    )
    assert (opened["recovery_id"], opened["recoveries"], opened["source_ip"]) == (
        "r1",
        1,
        "127.0.0.1",
    )
    assert opened["result"]["success"] is True
    assert opened["reason"]
