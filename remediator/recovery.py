"""The recovery engine: the runbook's decision table, tiered actions, verification, escalation.

    unit state (systemctl is-active)   level       command
    active, but PING fails             soft        sudo systemctl reload UNIT
    inactive                           standard    sudo systemctl start UNIT
    failed                             hard        sudo systemctl restart UNIT
    activating / deactivating          wait and re-check, at most transition_timeout_seconds;
                                       still in transition then: hard
    active and PING answers            nothing to do (the alert is stale)

After each command the step is verified: PING answers within `ping_timeout_seconds` (5 s) and
the unit is active; after a hard recovery the service must also stay up for
`stable_seconds` (60 s). A failed step escalates: soft -> standard -> hard, and hard repeats;
a level that cannot help in the current state is skipped (`start` does nothing to an active
unit, so an active but hung one goes from reload straight to restart). There are at most
`max_attempts` steps, `retry_delay_seconds` apart. Every attempt reads the unit's state and
PINGs afresh before it acts, never trusting what the last one found: a Redis that came back
meanwhile (a stall ended, or the last command worked but its check lost the connection) ends
the recovery without another command, `recovered` if an earlier attempt acted, else `healthy`;
otherwise the level rises from the last one tried. An unreachable host makes an attempt fail
without acting. When all attempts have failed the recovery is `exhausted`: it stops and is
counted (`autoheal_recovery_exhausted_total`), and a person is paged by the alert rules.

A recovery holds its target's lock throughout, checks the circuit breaker before acting, and
counts itself on the breaker before its first state-changing command. It stops escalating
when every alert it serves has resolved. In dry-run mode it decides and audits the first step,
runs only read-only commands, and stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from redis_autoheal.commands import Action, ServiceControl
from redis_autoheal.errors import CommandRejected, HostKeyError, SshError
from redis_autoheal.logs import target_logger
from redis_autoheal.units import RUNNING, TRANSITIONS, UnitState
from remediator.audit import AuditWriter, audit_event
from remediator.control import RISK
from remediator.errors import AuditWriteError, BreakerStateError
from remediator.verify import (
    Checkable,
    pong_within,
    settled_state,
    stable_for,
    unit_state,
)

if TYPE_CHECKING:
    from redis_autoheal.config import AutoRecovery
    from remediator.alertmanager import Alert
    from remediator.breaker import BreakerStore
    from remediator.metrics import Metrics

log = logging.getLogger(__name__)


class Level(IntEnum):
    """The recovery levels, in escalation order."""

    SOFT = 1
    STANDARD = 2
    HARD = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def action(self) -> Action:
        return {
            Level.SOFT: Action.RELOAD,
            Level.STANDARD: Action.START,
            Level.HARD: Action.RESTART,
        }[self]


class Outcome(StrEnum):
    """How a recovery ended."""

    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"  # every attempt failed: a person must step in
    HEALTHY = "healthy"  # nothing to do: active and answering PING
    RESOLVED = "resolved"  # its alerts resolved: escalation stopped
    SUPPRESSED = "suppressed"  # the circuit breaker is open
    REFUSED = "refused"  # the target cannot be acted on (no ssh section)
    DRY_RUN = "dry_run"
    ABORTED = "aborted"  # the audit log could not be written: nothing more was done
    INTERRUPTED = "interrupted"  # cut by the remediator's shutdown (remediator.shutdown)


def level_for_state(state: str) -> Level | None:
    """The runbook's first level for a unit state; None for a state it does not cover."""
    return {
        UnitState.ACTIVE: Level.SOFT,
        UnitState.INACTIVE: Level.STANDARD,
        UnitState.FAILED: Level.HARD,
        **dict.fromkeys(TRANSITIONS, Level.HARD),  # still in transition after the wait
    }.get(state)


def next_level(previous: Level | None, state: str) -> Level | None:
    """The level of the next attempt, given the last one tried and the unit's state now."""
    by_state = level_for_state(state)
    if previous is None or by_state is None:
        return by_state
    level = max(Level(min(previous + 1, Level.HARD)), by_state)
    if level == Level.STANDARD and state == "active":
        return Level.HARD  # start is a no-op on an active unit
    return level


class Controls(Checkable, Protocol):
    """What the engine needs of a target (TargetControl; a fake in the decision-table tests):
    what verification needs, and more."""

    @property
    def name(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def lock(self) -> asyncio.Lock: ...
    @property
    def refusal(self) -> str | None: ...


@dataclass
class Trigger:
    """Why a recovery runs: the alerts it serves (more may join it) and who delivered them."""

    recovery_id: str
    alerts: list[Alert]
    source_ip: str | None = None
    resolved: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fingerprints(self) -> list[str]:
        return sorted({a.fingerprint for a in self.alerts})


@dataclass
class Step:
    """One attempt: the level, its command's exit code, and what verification found."""

    attempt: int
    level: Level | None
    state_before: str | None
    exit_code: int | None = None
    state_after: str | None = None
    verified: bool = False
    reason: str = ""
    duration_seconds: float = 0.0


@dataclass
class Report:
    """What one recovery did."""

    recovery_id: str
    target: str
    outcome: Outcome
    reason: str
    steps: list[Step]
    duration_seconds: float
    pong_after_seconds: float | None = None  # from the start to the verified PONG
    started_monotonic: float = 0.0


class _Verdict(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        self.outcome = outcome
        self.reason = reason


class RecoveryEngine:
    """Runs recoveries; see the module docstring."""

    def __init__(  # noqa: PLR0913 -- the parts it works with, and the shutdown flag
        self,
        settings: AutoRecovery,
        breaker: BreakerStore,
        audit: AuditWriter,
        metrics: Metrics,
        *,
        ping_timeout_seconds: float,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.breaker = breaker
        self.audit = audit
        self.metrics = metrics
        self.ping_timeout_seconds = ping_timeout_seconds
        # Set when the remediator shuts down: a recovery finishes its step, starts no other.
        self.stopping = stopping if stopping is not None else asyncio.Event()

    async def recover(self, control: Controls, trigger: Trigger) -> Report:
        """Bring the target back, or find it cannot be done; never raises for a failure."""
        async with control.lock:
            run = _Run(self, control, trigger)
            return await run.execute()


class _Run:
    """One recovery's state; lives while `RecoveryEngine.recover` runs."""

    def __init__(self, engine: RecoveryEngine, control: Controls, trigger: Trigger) -> None:
        self.e = engine
        self.control = control
        self.trigger = trigger
        self.steps: list[Step] = []
        self.started = time.monotonic()
        self.pong_after: float | None = None
        self.level: Level | None = None
        self.counted = False  # on the circuit breaker
        self.log = target_logger(log, control.name)

    def _event(self, operation: str, success: bool | None, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        return audit_event(
            "auto_recovery",
            service=self.control.name,
            operation=operation,
            source_ip=self.trigger.source_ip,
            success=success,
            recovery_id=self.trigger.recovery_id,
            alert_fingerprints=self.trigger.fingerprints,
            dry_run=self.control.dry_run,
            **extra,
        )

    def _context(self, step: Step) -> dict[str, Any]:
        return {
            "recovery_id": self.trigger.recovery_id,
            "recovery_level": step.level.label if step.level else None,
            "attempt": step.attempt,
        }

    def _report(self, outcome: Outcome, reason: str) -> Report:
        return Report(
            recovery_id=self.trigger.recovery_id,
            target=self.control.name,
            outcome=outcome,
            reason=reason,
            steps=self.steps,
            duration_seconds=time.monotonic() - self.started,
            pong_after_seconds=self.pong_after,
            started_monotonic=self.started,
        )

    async def execute(self) -> Report:
        c = self.control
        try:
            await self.e.audit.write(
                self._event("recover", None, phase="started", alerts=self._alerts())
            )
        except AuditWriteError as err:  # nothing of it is on disk, and nothing ran
            self.log.warning("recovery %s not started: %s", self.trigger.recovery_id, err)
            return self._report(Outcome.ABORTED, f"audit log unavailable: {err}")
        try:
            outcome, reason = await self._attempts()
        except AuditWriteError as err:
            # Its start is on disk: its end is owed, whenever the log can take it again.
            self.log.warning("recovery %s aborted: %s", self.trigger.recovery_id, err)
            reason = f"audit log unavailable: {err}"
            self.e.audit.defer(self._finished(Outcome.ABORTED, reason))
            return self._report(Outcome.ABORTED, reason)
        except _Verdict as v:
            outcome, reason = v.outcome, v.reason
        except asyncio.CancelledError:
            await self._interrupted()
            raise
        if outcome == Outcome.EXHAUSTED:
            self.e.metrics.exhausted.labels(c.name).inc()
        report = self._report(outcome, reason)
        try:
            await self.e.audit.write(self._finished(outcome, reason))
        except AuditWriteError as err:
            self.log.warning("could not audit the end of recovery yet: %s", err)
            self.e.audit.defer(self._finished(outcome, reason))
        self.log.info("recovery %s: %s: %s", self.trigger.recovery_id, outcome, reason)
        return report

    def _finished(self, outcome: Outcome, reason: str) -> dict[str, Any]:
        """The recovery's terminal event; `result.outcome` says how it ended (CONTRACT.md)."""
        event = self._event(
            "recover",
            outcome in (Outcome.RECOVERED, Outcome.HEALTHY, Outcome.DRY_RUN),
            duration_seconds=time.monotonic() - self.started,
            phase="finished",
            outcome=outcome.value,
            reason=reason,
            recovery_level=self.level.label if self.level else None,
            attempts=len(self.steps),
        )
        event["result"]["outcome"] = outcome.value
        return event

    async def _interrupted(self) -> None:
        """The terminal event of a recovery cancelled by shutdown, whatever it was doing."""
        step = self.steps[-1] if self.steps else None
        reason = "the remediator shut down before this recovery ended"
        if step is not None and step.level is not None:
            reason += f" (during attempt {step.attempt}, {step.level.action.value})"
        try:
            await self.e.audit.write(self._finished(Outcome.INTERRUPTED, reason))
        except AuditWriteError as err:  # written at close, else found at the next start
            self.log.warning("could not audit the interruption of recovery: %s", err)
            self.e.audit.defer(self._finished(Outcome.INTERRUPTED, reason))
        self.log.warning("recovery %s: interrupted: %s", self.trigger.recovery_id, reason)

    def _alerts(self) -> list[dict[str, str]]:
        return [a.summary() for a in self.trigger.alerts]

    async def _attempts(self) -> tuple[Outcome, str]:
        """Up to max_attempts steps; a terminal outcome found on the way raises _Verdict."""
        c, s = self.control, self.e.settings
        if c.refusal:
            return Outcome.REFUSED, c.refusal
        if self.e.breaker.is_open(c.name):
            return Outcome.SUPPRESSED, "circuit breaker open: auto-recovery is off until reset"
        for attempt in range(1, s.max_attempts + 1):
            if attempt > 1 and await self._wait_or_resolved(s.retry_delay_seconds):
                return Outcome.RESOLVED, "every alert resolved: escalation stopped"
            if self.e.stopping.is_set():
                raise _Verdict(*self._stopped())
            if self.trigger.resolved.is_set():
                return Outcome.RESOLVED, "every alert resolved before acting"
            step = Step(attempt=attempt, level=None, state_before=None)
            self.steps.append(step)
            await self._attempt(step)
            if step.verified:
                return Outcome.RECOVERED, f"{step.level and step.level.label}: {step.reason}"
        last = self.steps[-1].reason if self.steps else "-"
        return Outcome.EXHAUSTED, f"{s.max_attempts} attempt(s) failed; last: {last}"

    def _stopped(self) -> tuple[Outcome, str]:
        done = f"after {len(self.steps)} attempt(s)" if self.steps else "before acting"
        return Outcome.INTERRUPTED, f"the remediator is shutting down: stopped {done}"

    async def _attempt(self, step: Step) -> None:
        """Look, decide, act, verify. Every attempt looks afresh (the unit's state, then PING):
        what the last one found may have changed since, and nothing acts on a healthy Redis."""
        c = self.control
        try:
            state = step.state_before = await self._settled_state(step)
            # PING as verification does (retried within the timeout): one PING on a connection
            # that a restart just closed fails although Redis answers (the chaos campaign's I2).
            if state in RUNNING and (await pong_within(c, self.e.ping_timeout_seconds)).ok:
                raise self._up()
            level = next_level(self.level, state)
            if level is None:
                raise _Verdict(Outcome.EXHAUSTED, f"unit state {state!r} is not in the runbook")
            self.level = step.level = level
            if c.dry_run:
                raise _Verdict(*await self._dry_run(step))
            await self._act(step)
        except CommandRejected as err:  # cannot happen with the config's validated unit
            step.reason = str(err)
            raise _Verdict(Outcome.EXHAUSTED, f"command refused: {err}") from None
        except HostKeyError as err:
            step.reason = str(err)
            await self._step_finished(step)
            raise _Verdict(Outcome.EXHAUSTED, f"host key refused, not retried: {err}") from None
        except SshError as err:
            step.reason = str(err)
            await self._step_finished(step)

    def _up(self) -> _Verdict:
        """Active and answering PING: recovered if an earlier attempt acted, else healthy."""
        if self.level is None:
            return _Verdict(Outcome.HEALTHY, "unit active and PING answers: nothing to do")
        if self.pong_after is None:
            self.pong_after = time.monotonic() - self.started
        return _Verdict(
            Outcome.RECOVERED,
            f"unit active and PING answers after the {self.level.label} step: nothing more to do",
        )

    async def _wait_or_resolved(self, seconds: float) -> bool:
        """Wait between attempts; True as soon as every alert has resolved, False after
        `seconds` or once shutdown begins. The flag is read again on waking: a firing alert
        that joined meanwhile has cleared it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.trigger.resolved.is_set() and not self.e.stopping.is_set():
            waits = [
                asyncio.ensure_future(self.trigger.resolved.wait()),
                asyncio.ensure_future(self.e.stopping.wait()),
            ]
            try:
                done, _ = await asyncio.wait(
                    waits,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for w in waits:
                    w.cancel()
            if not done:
                return False
        return self.trigger.resolved.is_set()

    async def _count_on_breaker(self) -> None:
        name = self.control.name
        try:
            state = await asyncio.to_thread(self.e.breaker.record_recovery, name)
        except BreakerStateError as err:
            raise _Verdict(Outcome.SUPPRESSED, f"circuit breaker state unusable: {err}") from None
        if state.open:
            await self.e.audit.write(
                audit_event(
                    "circuit_breaker",
                    service=name,
                    operation="open",
                    success=True,
                    source_ip=self.trigger.source_ip,
                    recovery_id=self.trigger.recovery_id,
                    reason=state.reason,
                    recoveries=len(state.recoveries),
                )
            )

    async def _state(self, step: Step) -> str:
        reading = await unit_state(
            self.control, source_ip=self.trigger.source_ip, context=self._context(step)
        )
        return reading.state

    async def _settled_state(self, step: Step) -> str:
        """`is-active`, re-checked while the unit is in transition, bounded."""
        reading = await settled_state(
            self.control,
            self.e.settings.transition_timeout_seconds,
            source_ip=self.trigger.source_ip,
            context=self._context(step),
        )
        return reading.state

    async def _dry_run(self, step: Step) -> tuple[Outcome, str]:
        assert step.level is not None
        action = step.level.action.value
        await self.e.audit.write(
            self._event(
                action,
                None,
                phase="decided",
                recovery_level=step.level.label,
                attempt=step.attempt,
                unit_state_before=step.state_before,
                command=" ".join(ServiceControl(step.level.action, self.control.unit).argv()),
            )
        )
        self.e.metrics.recoveries.labels(self.control.name, step.level.label, "dry_run").inc()
        return Outcome.DRY_RUN, f"dry run: would {action} (unit {step.state_before})"

    async def _act(self, step: Step) -> None:
        """Run the step's command and verify."""
        c = self.control
        assert step.level is not None
        if self.e.stopping.is_set():  # shutdown began while the state settled: do not act
            raise _Verdict(*self._stopped())
        command = ServiceControl(step.level.action, c.unit)
        await self.e.audit.write(
            self._event(
                command.name,
                None,
                phase="decided",
                recovery_level=step.level.label,
                attempt=step.attempt,
                unit_state_before=step.state_before,
                command=" ".join(command.argv()),
                risk_level=RISK[command.name],
            )
        )
        if not self.counted:  # once decided and audited: the breaker counts what runs
            await self._count_on_breaker()
            self.counted = True
        began = time.monotonic()
        try:
            result = await c.run(
                command, source_ip=self.trigger.source_ip, context=self._context(step)
            )
            step.exit_code = result.exit_code
            if not result.ok:
                step.reason = f"{command.name} exited {result.exit_code}"
            await self._verify(step)
        finally:
            step.duration_seconds = time.monotonic() - began
        await self._step_finished(step)

    async def _verify(self, step: Step) -> None:
        """PING within the timeout, unit active; after a hard recovery, stable too."""
        pong = await pong_within(self.control, self.e.ping_timeout_seconds)
        problem = None if pong.ok else pong.detail
        step.state_after = await self._settled_state(step)
        if problem is None and self.pong_after is None:
            self.pong_after = time.monotonic() - self.started
        if problem is not None:
            step.reason = "; ".join(filter(None, [step.reason, problem]))
            return
        if step.state_after not in RUNNING:
            step.reason = "; ".join(filter(None, [step.reason, f"unit is {step.state_after}"]))
            return
        stable = self.e.settings.stable_seconds
        if step.level == Level.HARD and stable > 0:
            kept = await stable_for(self.control, stable)
            problem = None if kept.ok else kept.detail
            if problem is None:
                step.state_after = await self._state(step)
                if step.state_after not in RUNNING:
                    problem = f"unit became {step.state_after}"
            if problem is not None:
                self.pong_after = None
                step.reason = f"not stable for {stable:g}s: {problem}"
                return
            step.reason = f"PONG and active, stable for {stable:g}s"
        else:
            step.reason = "PONG and active"
        step.verified = True

    async def _step_finished(self, step: Step) -> None:
        label = step.level.label if step.level else None
        if step.level is not None and step.exit_code is not None:
            result = "success" if step.verified else "failure"
            self.e.metrics.recoveries.labels(self.control.name, label, result).inc()
            self.e.metrics.recovery_duration.labels(self.control.name, label).observe(
                step.duration_seconds
            )
        await self.e.audit.write(
            self._event(
                step.level.action.value if step.level else "check",
                step.verified,
                duration_seconds=step.duration_seconds,
                exit_code=step.exit_code,
                phase="verified",
                recovery_level=label,
                attempt=step.attempt,
                unit_state_before=step.state_before,
                unit_state_after=step.state_after,
                reason=step.reason,
            )
        )
