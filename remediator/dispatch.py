"""From alerts to recoveries: which alert starts one, which joins one, which changes nothing.

One recovery per target at a time. A firing alert for a target with a recovery in progress
joins it; a firing alert already handled (same fingerprint and startsAt: a retried delivery,
the other replica of an HA pair, a `repeat_interval` repeat) changes nothing; alerts for
different targets recover in parallel. A resolved alert is recorded, and once every alert a
recovery serves has resolved, that recovery stops escalating; a firing alert that joins it
later re-arms it. If it ended `resolved` all the same (it had read "every alert resolved" just
before the new alert joined), that alert was not served: it is forgotten, so Alertmanager's
next delivery of it (a retry, the other replica, a `repeat_interval` repeat) starts a recovery.

Admission is in two phases so that nothing runs unless its audit event is on disk:
`admit()` decides synchronously (no await, so 50 identical posts at once cannot both see "new")
and reserves what it decided; the webhook writes the audit events; then `commit()` starts the
recoveries, or `abort()` gives the reservations back and the webhook answers 5xx.

Handled alerts are remembered for `SEEN_TTL_SECONDS`, in memory: after a restart of the
remediator, a repeat of an alert already handled may start a new recovery, which the persisted
circuit breaker still bounds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from remediator.events import AutoRecovery, Event
from remediator.recovery import Outcome, Report, Trigger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from remediator.alertmanager import Alert, AlertKey, Notification
    from remediator.breaker import BreakerStore
    from remediator.control import TargetControl
    from remediator.recovery import RecoveryEngine

log = logging.getLogger(__name__)

SEEN_TTL_SECONDS = 24 * 3600.0  # longer than Alertmanager's default repeat_interval (4h)
SEEN_MAX = 10_000
HISTORY_PER_TARGET = 20


class Disposition(StrEnum):
    """What became of one alert of a notification."""

    STARTED = "recovery_started"
    JOINED = "joined_running_recovery"
    DUPLICATE = "duplicate"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed_circuit_open"
    NOT_REMEDIABLE = "ignored_no_remediate_label"
    NO_TARGET = "ignored_no_target_label"
    UNKNOWN_TARGET = "ignored_unknown_target"
    NO_SSH = "refused_no_ssh"
    DISABLED = "ignored_auto_recovery_disabled"


@dataclass
class Job:
    """One target's recovery: admitted, then running, until its report is in."""

    target: str
    trigger: Trigger
    keys: set[AlertKey] = field(default_factory=set)
    resolved: set[AlertKey] = field(default_factory=set)
    task: asyncio.Task[Report | None] | None = None

    def add(self, alert: Alert) -> None:
        self.keys.add(alert.key)
        self.trigger.alerts.append(alert)

    def remove(self, alert: Alert) -> None:
        self.keys.discard(alert.key)
        with contextlib.suppress(ValueError):
            self.trigger.alerts.remove(alert)
        self.rearm()

    def resolve(self, key: AlertKey) -> None:
        self.resolved.add(key)
        self.rearm()

    def rearm(self) -> None:
        """Stop escalation while every alert served has resolved, resume it when one fires."""
        if self.keys <= self.resolved:
            self.trigger.resolved.set()
        else:
            self.trigger.resolved.clear()


@dataclass
class Admission:
    """The decisions about one notification, reserved until `commit()` or `abort()`."""

    dispatcher: Dispatcher
    decisions: list[tuple[Alert, Disposition]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    resolved_alerts: list[tuple[str, Alert]] = field(default_factory=list)
    _done: bool = False

    def settle(self, write: asyncio.Future[None]) -> None:
        """Commit if the audit write behind these decisions succeeded, else abort. Once."""
        if self._done or not write.done():
            return
        if write.cancelled() or write.exception() is not None:
            self.abort()
        else:
            self.commit()

    def commit(self) -> None:
        """Start the recoveries decided on (the audit events are on disk)."""
        assert not self._done
        self._done = True
        d = self.dispatcher
        for target, alert in self.resolved_alerts:
            job = d.running(target)
            if job is not None and alert.key in job.keys:
                job.resolve(alert.key)
            d.remember(alert.key)
        for job in self.jobs:
            if d.running(job.target) is not job:
                continue  # it ended meanwhile (its `_run` forgot what it did not serve)
            if job.task is None:
                d.start(job)
            else:
                job.rearm()  # a firing alert joined: escalation goes on, even if others resolved

    def abort(self) -> None:
        """Give back every reservation: nothing of this notification happens."""
        assert not self._done
        self._done = True
        for undo in reversed(self.undo):
            undo()


class Dispatcher:
    """Admits alerts and runs each target's recoveries; see the module docstring."""

    def __init__(
        self,
        controls: Mapping[str, TargetControl],
        engine: RecoveryEngine,
        breaker: BreakerStore,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controls = controls
        self.engine = engine
        self.breaker = breaker
        self.enabled = enabled
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._seen: collections.OrderedDict[AlertKey, float] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[Report | None]] = set()
        self._closed = False
        self._history: dict[str, collections.deque[Report]] = {
            name: collections.deque(maxlen=HISTORY_PER_TARGET) for name in controls
        }

    def running(self, target: str) -> Job | None:
        """The target's admitted or running recovery, if any."""
        return self._jobs.get(target)

    def history(self, target: str) -> list[Report]:
        """The target's last recoveries, oldest first."""
        return list(self._history.get(target, ()))

    def remember(self, key: AlertKey) -> None:
        now = self._clock()
        self._seen[key] = now + SEEN_TTL_SECONDS
        self._seen.move_to_end(key)
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now and len(self._seen) <= SEEN_MAX:
                break
            del self._seen[oldest]

    def _seen_recently(self, key: AlertKey) -> bool:
        expiry = self._seen.get(key)
        return expiry is not None and expiry > self._clock()

    def admit(self, notification: Notification, source_ip: str | None) -> Admission:
        """Decide about every alert, reserving what is decided; see the module docstring."""
        adm = Admission(self)
        for alert in notification.alerts:
            disposition = self._decide(adm, alert, source_ip)
            adm.decisions.append((alert, disposition))
        return adm

    def _decide(  # noqa: C901, PLR0911 -- the decision table, one return per row
        self, adm: Admission, alert: Alert, source_ip: str | None
    ) -> Disposition:
        if not alert.wants_remediation:
            return Disposition.NOT_REMEDIABLE
        name = alert.target_name
        if not name:
            return Disposition.NO_TARGET
        control = self.controls.get(name)
        if control is None:
            return Disposition.UNKNOWN_TARGET
        job = self._jobs.get(name)
        if alert.status == "resolved":
            adm.resolved_alerts.append((name, alert))
            return Disposition.RESOLVED
        if self._seen_recently(alert.key) or (job is not None and alert.key in job.keys):
            return Disposition.DUPLICATE
        if not self.enabled:
            return Disposition.DISABLED
        if control.refusal:
            return Disposition.NO_SSH
        if job is not None:
            self._reserve(adm, job, alert)
            return Disposition.JOINED
        if self.breaker.is_open(name):
            adm.events.append(
                AutoRecovery(
                    service=name,
                    operation="recover",
                    source_ip=source_ip,
                    success=False,
                    phase="suppressed",
                    outcome=Outcome.SUPPRESSED.value,
                    reason="circuit breaker open: auto-recovery is off until a person resets it",
                    alert_fingerprints=[alert.fingerprint],
                    alerts=[alert.summary()],
                )
            )
            return Disposition.SUPPRESSED
        job = Job(name, Trigger(uuid.uuid4().hex[:12], [], source_ip))
        self._jobs[name] = job

        def drop_job() -> None:
            if self._jobs.get(name) is job and job.task is None and not job.keys:
                del self._jobs[name]

        adm.undo.append(drop_job)
        self._reserve(adm, job, alert)
        return Disposition.STARTED

    def _reserve(self, adm: Admission, job: Job, alert: Alert) -> None:
        had = alert.key in self._seen
        job.add(alert)
        self.remember(alert.key)
        adm.jobs.append(job)

        def undo() -> None:
            job.remove(alert)
            if not had:
                self._seen.pop(alert.key, None)

        adm.undo.append(undo)

    def start(self, job: Job) -> None:
        if self._closed:  # an audit write that outlived the shutdown's grace committed late
            if self._jobs.get(job.target) is job:
                del self._jobs[job.target]
            log.error(
                "%s: recovery %s admitted after shutdown: not started",
                job.target,
                job.trigger.recovery_id,
            )
            return
        task = asyncio.create_task(self._run(job), name=f"recover-{job.target}")
        job.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> Report | None:
        try:
            report = await self.engine.recover(self.controls[job.target], job.trigger)
        except Exception:  # a bug: keep serving the other targets, and say so loudly
            log.exception("%s: recovery %s crashed", job.target, job.trigger.recovery_id)
            return None
        finally:
            if self._jobs.get(job.target) is job:
                del self._jobs[job.target]
        self._history[job.target].append(report)
        unserved: set[AlertKey] = set()
        if report.outcome == Outcome.ABORTED:
            unserved = job.keys  # it did nothing
        elif report.outcome == Outcome.RESOLVED:
            # It stopped for the alerts that resolved; one that joined as it stopped still
            # fires, and nothing healed it.
            unserved = job.keys - job.resolved
            if unserved:
                log.warning(
                    "%s: recovery %s ended resolved as %d more alert(s) joined: their next "
                    "delivery starts a recovery",
                    job.target,
                    job.trigger.recovery_id,
                    len(unserved),
                )
        for key in unserved:  # a later delivery of these alerts tries again
            self._seen.pop(key, None)
        return report

    async def wait_idle(self) -> None:
        """Wait until no recovery is running (for tests and the benchmark)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def resume(self, target: str, recovery_id: str) -> bool:
        """Start a recovery no alert asked for: the re-check of one that the last run of the
        remediator left unfinished (remediator.resume). False if the target is taken."""
        if target in self._jobs or target not in self.controls or self._closed:
            return False
        job = Job(target, Trigger(recovery_id, []))
        self._jobs[target] = job
        self.start(job)
        return True

    def in_progress(self) -> set[asyncio.Task[Report | None]]:
        """The recoveries running now."""
        return set(self._tasks)

    async def close(self) -> None:
        """Cancel the recoveries in progress (each audits its interruption) and wait for them
        to end; admit none after."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
