"""Auto-recovery: the runbook's decision table and escalation, for one target at a time.

    unit state (systemctl is-active)   level       command
    active, but PING fails             soft        sudo systemctl reload UNIT
    inactive                           standard    sudo systemctl start UNIT
    failed                             hard        sudo systemctl restart UNIT
    activating / deactivating          wait and re-check, at most transition_timeout_seconds;
                                       still in transition then: hard
    active and PING answers            nothing to do (the alert is stale)

This module is the runbook's escalation policy: which level next (`next_level`), at most
`max_attempts` attempts `retry_delay_seconds` apart, the stable window after a hard step, the
circuit breaker counted before the first command. Each attempt looks afresh (state, then PING)
and returns what it found (`Ended`, or None to escalate); the loop in `_Run._attempts` owns the
attempts. A recovery taken over from another replica goes on from its next attempt and level
(`Progress`). Commands and their verification go through remediator.act, as manual operations do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis_autoheal.commands import Action, ServiceControl
from redis_autoheal.errors import CommandRejected, HostKeyError, SshError
from redis_autoheal.logs import target_logger
from redis_autoheal.units import RUNNING, TRANSITIONS, UnitState
from remediator import events
from remediator.act import Acting, Expect, Target, breaker_opened, write_or_owe
from remediator.audit import AUTOHEAL, AuditWriter
from remediator.control import RISK
from remediator.errors import AuditWriteError, BreakerStateError, Fenced
from remediator.ranked import Ranked
from remediator.verify import pong_within, stable_for

if TYPE_CHECKING:
    from redis_autoheal.config import AutoRecovery
    from remediator.act import Found
    from remediator.alertmanager import Alert
    from remediator.breaker import BreakerState, BreakerStore
    from remediator.metrics import Metrics

log = logging.getLogger(__name__)


class Level(Ranked):
    """The recovery levels, in escalation order."""

    SOFT = 1
    STANDARD = 2
    HARD = 3

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
    FENCED = "fenced"  # this replica lost the target to another (remediator.etcd)


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


Controls = Target  # what the engine needs of a target


@dataclass(frozen=True)
class Progress:
    """How far the recovery of a replica that lost its claim had got: its last attempt that
    sent a command, and that attempt's level. The one taking over goes on from the next."""

    attempt: int
    level: Level


@dataclass
class Trigger:
    """Why a recovery runs: the alerts it serves (more may join it) and who delivered them."""

    recovery_id: str
    alerts: list[Alert]
    source_ip: str | None = None
    resolved: asyncio.Event = field(default_factory=asyncio.Event)
    after: Progress | None = None  # taken over from another replica: where it had got to

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


@dataclass(frozen=True)
class Ended:
    """How a recovery ends, as an attempt (or the look before one) found it."""

    outcome: Outcome
    reason: str


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
        after = trigger.after
        self.level: Level | None = None if after is None else after.level
        self.first_attempt = 1 if after is None else after.attempt + 1
        self.counted = after is not None  # on the circuit breaker: the same outage's recovery
        self.log = target_logger(log, control.name)
        self.acting = Acting(
            control,
            AUTOHEAL,
            trigger.source_ip,
            {},
            engine.settings.transition_timeout_seconds,
            engine.ping_timeout_seconds,
        )

    def _event(self, operation: str, success: bool | None, **extra: Any) -> events.AutoRecovery:  # noqa: ANN401
        return events.AutoRecovery(
            service=self.control.name,
            operation=operation,
            source_ip=self.trigger.source_ip,
            success=success,
            recovery_id=self.trigger.recovery_id,
            alert_fingerprints=self.trigger.fingerprints,
            dry_run=self.control.dry_run,
            **extra,
        )

    def _on(self, step: Step) -> Acting:
        """Acting for this attempt: its commands' events carry the recovery, level and attempt."""
        return self.acting.at(
            recovery_id=self.trigger.recovery_id,
            recovery_level=step.level.label if step.level else None,
            attempt=step.attempt,
        )

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
            ended = await self._precluded() or await self._attempts()
        except AuditWriteError as err:
            # Its start is on disk: its end is owed, whenever the log can take it again.
            self.log.warning("recovery %s aborted: %s", self.trigger.recovery_id, err)
            reason = f"audit log unavailable: {err}"
            self.e.audit.defer(self._finished(Outcome.ABORTED, reason))
            return self._report(Outcome.ABORTED, reason)
        except asyncio.CancelledError:
            await self._interrupted()
            raise
        outcome, reason = ended.outcome, ended.reason
        if outcome == Outcome.EXHAUSTED:
            self.e.metrics.exhausted.labels(c.name).inc()
        report = self._report(outcome, reason)
        try:
            await write_or_owe(self.e.audit, self._finished(outcome, reason))
        except AuditWriteError as err:
            self.log.warning("could not audit the end of recovery yet: %s", err)
        self.log.info("recovery %s: %s: %s", self.trigger.recovery_id, outcome, reason)
        return report

    def _finished(self, outcome: Outcome, reason: str) -> events.AutoRecovery:
        """The recovery's terminal event; `result.outcome` says how it ended (docs/reference.md)."""
        return self._event(
            "recover",
            outcome in (Outcome.RECOVERED, Outcome.HEALTHY, Outcome.DRY_RUN),
            duration_seconds=time.monotonic() - self.started,
            phase="finished",
            outcome=outcome.value,
            reason=reason,
            recovery_level=self.level.label if self.level else None,
            attempts=len(self.steps),
        )

    async def _interrupted(self) -> None:
        """The terminal event of a recovery cancelled by shutdown, whatever it was doing."""
        step = self.steps[-1] if self.steps else None
        reason = "the remediator shut down before this recovery ended"
        if step is not None and step.level is not None:
            reason += f" (during attempt {step.attempt}, {step.level.action.value})"
        try:  # if not now, written at close, else found at the next start
            await write_or_owe(self.e.audit, self._finished(Outcome.INTERRUPTED, reason))
        except AuditWriteError as err:
            self.log.warning("could not audit the interruption of recovery: %s", err)
        self.log.warning("recovery %s: interrupted: %s", self.trigger.recovery_id, reason)

    def _alerts(self) -> list[dict[str, str]]:
        return [a.summary() for a in self.trigger.alerts]

    async def _precluded(self) -> Ended | None:
        """The end of a recovery that may not act at all."""
        c = self.control
        if c.refusal:
            return Ended(Outcome.REFUSED, c.refusal)
        if await asyncio.to_thread(self.e.breaker.is_open, c.name):  # a file, or etcd
            return Ended(
                Outcome.SUPPRESSED, "circuit breaker open: auto-recovery is off until reset"
            )
        return None

    async def _attempts(self) -> Ended:
        """Up to max_attempts attempts; the first that finds an end ends the recovery."""
        s = self.e.settings
        first = self.first_attempt
        if first > s.max_attempts:
            return await self._last_look()
        for attempt in range(first, s.max_attempts + 1):
            if attempt > first and await self._wait_or_resolved(s.retry_delay_seconds):
                return Ended(Outcome.RESOLVED, "every alert resolved: escalation stopped")
            if self.e.stopping.is_set():
                return self._stopped()
            if self.trigger.resolved.is_set():
                return Ended(Outcome.RESOLVED, "every alert resolved before acting")
            step = Step(attempt=attempt, level=None, state_before=None)
            self.steps.append(step)
            ended = await self._attempt(step)
            if ended is not None:
                return ended
        last = self.steps[-1].reason if self.steps else "-"
        return Ended(Outcome.EXHAUSTED, f"{s.max_attempts} attempt(s) failed; last: {last}")

    async def _last_look(self) -> Ended:
        """Taken over after the replica it had ran every attempt: whether its last worked."""
        last = f"{self.e.settings.max_attempts} attempt(s) ran on the replica it took over from"
        try:
            state = await self.acting.settled()
            if (
                state in RUNNING
                and (await pong_within(self.control, self.e.ping_timeout_seconds)).ok
            ):
                return self._up()
        except SshError as err:
            return Ended(Outcome.EXHAUSTED, f"{last}; the host cannot be reached: {err}")
        return Ended(Outcome.EXHAUSTED, f"{last}; the unit is {state}, not answering PING")

    def _stopped(self) -> Ended:
        done = f"after {len(self.steps)} attempt(s)" if self.steps else "before acting"
        return Ended(Outcome.INTERRUPTED, f"the remediator is shutting down: stopped {done}")

    async def _attempt(self, step: Step) -> Ended | None:  # noqa: PLR0911 -- one per end
        """Look, decide, act, verify; the recovery's end if this attempt found it, None to go
        on. Every attempt looks afresh (the unit's state, then PING): what the last one found
        may have changed since, and nothing acts on a healthy Redis."""
        c = self.control
        try:
            state = step.state_before = await self._on(step).settled()
            # PING as verification does (retried within the timeout): one PING on a connection
            # that a restart just closed fails although Redis answers (the chaos campaign's I2).
            if state in RUNNING and (await pong_within(c, self.e.ping_timeout_seconds)).ok:
                return self._up()
            level = next_level(self.level, state)
            if level is None:
                return Ended(Outcome.EXHAUSTED, f"unit state {state!r} is not in the runbook")
            self.level = step.level = level
            if c.dry_run:
                return await self._dry_run(step)
            return await self._act(step)
        except CommandRejected as err:  # cannot happen with the config's validated unit
            step.reason = str(err)
            return Ended(Outcome.EXHAUSTED, f"command refused: {err}")
        except Fenced as err:  # nothing ran: another replica holds the target now
            step.reason = str(err)
            return Ended(Outcome.FENCED, str(err))
        except SshError as err:
            return await self._unreachable(step, err)

    async def _unreachable(self, step: Step, err: SshError) -> Ended | None:
        """An attempt the host's SSH failed: audited; a refused host key is not retried."""
        step.reason = str(err)
        await self._step_finished(step)
        if isinstance(err, HostKeyError):
            return Ended(Outcome.EXHAUSTED, f"host key refused, not retried: {err}")
        return None

    def _up(self) -> Ended:
        """Active and answering PING: recovered if an earlier attempt acted, else healthy."""
        if self.level is None:
            return Ended(Outcome.HEALTHY, "unit active and PING answers: nothing to do")
        if self.pong_after is None:
            self.pong_after = time.monotonic() - self.started
        return Ended(
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

    async def _count_on_breaker(self) -> Ended | None:
        """Count this recovery on the breaker; its end (suppressed) if the state is unusable."""
        name = self.control.name
        now = events.utc_timestamp()

        def opened(state: BreakerState) -> events.CircuitBreaker:
            """The opening's event: the same, whether the store commits it or this writes it."""
            event = breaker_opened(
                name,
                actor=AUTOHEAL,
                source_ip=self.trigger.source_ip,
                reason=state.reason,
                recovery_id=self.trigger.recovery_id,
                recoveries=len(state.recoveries),
            )
            return replace(event, timestamp=now)

        try:
            state = await asyncio.to_thread(self.e.breaker.record_recovery, name, opened)
        except BreakerStateError as err:
            return Ended(Outcome.SUPPRESSED, f"circuit breaker state unusable: {err}")
        if state.open:  # written after the count, which the store may have committed it with
            await self.e.audit.write(opened(state))
        return None

    async def _dry_run(self, step: Step) -> Ended:
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
        return Ended(Outcome.DRY_RUN, f"dry run: would {action} (unit {step.state_before})")

    async def _act(self, step: Step) -> Ended | None:
        """Run the step's command and judge what it left."""
        c = self.control
        assert step.level is not None
        if self.e.stopping.is_set():  # shutdown began while the state settled: do not act
            return self._stopped()
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
            ended = await self._count_on_breaker()
            if ended is not None:
                return ended
            self.counted = True
        began = time.monotonic()
        found = await self._on(step).act(command, Expect.RUNNING)
        step.exit_code, step.reason = found.exit_code, found.failed
        error = found.error
        if error is None:
            try:
                await self._judge(step, found)
            except SshError as err:  # the stable window's last look at the unit
                error = err
        step.duration_seconds = time.monotonic() - began
        if error is not None:
            return await self._unreachable(step, error)
        await self._step_finished(step)
        if step.verified:
            return Ended(Outcome.RECOVERED, f"{step.level.label}: {step.reason}")
        return None

    async def _judge(self, step: Step, found: Found) -> None:
        """PING within the timeout, unit active; after a hard recovery, stable too."""
        step.state_after = found.state_after
        problem = found.ping_problem
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
                step.state_after = await self._on(step).state()
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
