"""From alerts to recoveries: each alert of a notification starts a target's recovery, joins
the one in progress, is a duplicate, or is ignored; the recoveries then run here.

Nothing runs unless its audit event is on disk: `admit()` decides without awaiting (so two
identical posts cannot both see a new alert) and reserves through the coordination
(remediator.coordination); the webhook writes the audit events; then `commit()` starts the
recoveries, or `release()` gives the reservations back. An alert a recovery did not serve (it
aborted, or ended resolved just as the alert joined) is forgotten, so its next delivery starts one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from remediator.coordination import Claim, Verdict
from remediator.events import AutoRecovery, Event
from remediator.recovery import Outcome, Report, Trigger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from remediator.alertmanager import Alert, AlertKey, Notification
    from remediator.control import TargetControl
    from remediator.coordination import Coordination
    from remediator.recovery import Progress, RecoveryEngine

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, eq=False)
class Admission:
    """The decisions about one notification, for the webhook to audit; the dispatcher then
    commits what they reserved, or releases it if the audit write failed."""

    decisions: tuple[tuple[Alert, Disposition], ...]
    events: tuple[Event, ...]  # what the decisions add to the audit log
    claims: tuple[tuple[Alert, Claim], ...]  # the reservations
    resolved: tuple[tuple[str, Alert], ...]  # (target, alert): applied on commit


_DISPOSITIONS = {
    Verdict.DUPLICATE: Disposition.DUPLICATE,
    Verdict.SUPPRESSED: Disposition.SUPPRESSED,
    Verdict.JOINED: Disposition.JOINED,
    Verdict.STARTED: Disposition.STARTED,
}


def _suppressed(name: str, alert: Alert, source_ip: str | None) -> AutoRecovery:
    """The audit event of an alert not acted on because its target's breaker is open."""
    return AutoRecovery(
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


def _unserved(job: Job, report: Report) -> set[AlertKey]:
    """The alerts whose later delivery starts a recovery again (which looks at the unit first):
    those a recovery that ended did nothing for, and every one of a recovery that left the
    target healthy."""
    if report.outcome == Outcome.ABORTED:
        return job.keys  # it did nothing
    if report.outcome in (Outcome.RECOVERED, Outcome.HEALTHY):
        # The outage is over. A later delivery of the same alert is either a repeat (the new
        # recovery finds the target healthy and does nothing) or a new failure under an alert
        # Alertmanager still holds: it merges a new firing alert into one of the same labels
        # it has not yet let go of, keeping its startsAt, so nothing else tells them apart.
        return job.keys
    if report.outcome != Outcome.RESOLVED:
        return set()
    # It stopped for the alerts that resolved; one that joined as it stopped still fires, and
    # nothing healed it.
    unserved = job.keys - job.resolved
    if unserved:
        log.warning(
            "%s: recovery %s ended resolved as %d more alert(s) joined: their next delivery "
            "starts a recovery",
            job.target,
            job.trigger.recovery_id,
            len(unserved),
        )
    return unserved


class Dispatcher:
    """Admits alerts and runs each target's recoveries; see the module docstring."""

    def __init__(
        self,
        controls: Mapping[str, TargetControl],
        engine: RecoveryEngine,
        coordination: Coordination,
        *,
        enabled: bool = True,
    ) -> None:
        self.controls = controls
        self.engine = engine
        self.coordination = coordination
        self.enabled = enabled
        self._jobs: dict[str, Job] = {}
        self._unsettled: set[Admission] = set()
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

    async def prepare(self, notification: Notification) -> None:
        """Just before `admit`: the coordination settles, with the other replicas if any,
        which targets without a recovery here this notification may start one of."""
        wanted: dict[str, list[AlertKey]] = {}
        for alert in notification.alerts:
            name = alert.target_name
            control = self.controls.get(name or "")
            if (
                control is not None
                and alert.wants_remediation
                and alert.status != "resolved"
                and self.enabled
                and not control.refusal
                and name not in self._jobs
            ):
                wanted.setdefault(control.name, []).append(alert.key)
        if wanted:
            await self.coordination.prepare(wanted)

    def admit(self, notification: Notification, source_ip: str | None) -> Admission:
        """Decide about every alert, reserving what is decided; see the module docstring."""
        decisions: list[tuple[Alert, Disposition]] = []
        events: list[Event] = []
        claims: list[tuple[Alert, Claim]] = []
        resolved: list[tuple[str, Alert]] = []
        for alert in notification.alerts:
            disposition, claim = self._decide(alert, source_ip)
            decisions.append((alert, disposition))
            if claim is not None and claim.reserved:
                claims.append((alert, claim))
            elif claim is not None and claim.verdict == Verdict.SUPPRESSED:
                events.append(_suppressed(claim.target, alert, source_ip))
            elif disposition == Disposition.RESOLVED and alert.target_name:
                resolved.append((alert.target_name, alert))
        admission = Admission(tuple(decisions), tuple(events), tuple(claims), tuple(resolved))
        self._unsettled.add(admission)
        return admission

    def _decide(self, alert: Alert, source_ip: str | None) -> tuple[Disposition, Claim | None]:
        if not alert.wants_remediation:
            return Disposition.NOT_REMEDIABLE, None
        name = alert.target_name
        if not name:
            return Disposition.NO_TARGET, None
        control = self.controls.get(name)
        if control is None:
            return Disposition.UNKNOWN_TARGET, None
        if alert.status == "resolved":
            return Disposition.RESOLVED, None
        recovery_id = uuid.uuid4().hex[:12]  # if it starts one
        may_act = self.enabled and not control.refusal
        claim = self.coordination.admit(name, alert.key, recovery_id=recovery_id, may_act=may_act)
        if claim.verdict == Verdict.DECLINED:
            return (Disposition.NO_SSH if self.enabled else Disposition.DISABLED), claim
        if claim.verdict == Verdict.STARTED:
            self._jobs[name] = Job(name, Trigger(claim.recovery_id or recovery_id, [], source_ip))
        if claim.reserved:
            self._jobs[name].add(alert)
        return _DISPOSITIONS[claim.verdict], claim

    def settle(self, admission: Admission, write: asyncio.Future[None]) -> None:
        """Commit if the audit write behind the admission succeeded, else release. Once."""
        if admission not in self._unsettled or not write.done():
            return
        if write.cancelled() or write.exception() is not None:
            self.release(admission)
        else:
            self.commit(admission)

    def commit(self, admission: Admission) -> None:
        """Start the recoveries decided on (the audit events are on disk)."""
        self._unsettled.remove(admission)
        for target, alert in admission.resolved:
            job = self._jobs.get(target)
            if job is not None and alert.key in job.keys:
                job.resolve(alert.key)
            # Not remembered: a firing copy delivered after it (a peer's late delivery, or a
            # new failure Alertmanager merged into the alert) starts a recovery that looks first.
        for _, claim in admission.claims:
            self.coordination.commit(claim)
            job = self._job_of(claim)
            if job is None:
                continue  # it ended meanwhile (and forgot what it did not serve)
            if job.task is None:
                self.start(job)
            else:
                job.rearm()  # a firing alert joined: escalation goes on, even if others resolved

    def release(self, admission: Admission) -> None:
        """Give back every reservation: nothing of this notification happens."""
        self._unsettled.remove(admission)
        for alert, claim in reversed(admission.claims):
            self.coordination.release(claim)
            job = self._job_of(claim)
            if job is None:
                continue
            job.remove(alert)
            if job.task is None and not job.keys:
                del self._jobs[job.target]

    def _job_of(self, claim: Claim) -> Job | None:
        """The recovery the claim reserved on, while it is still admitted or running."""
        job = self._jobs.get(claim.target)
        if job is None or job.trigger.recovery_id != claim.recovery_id:
            return None
        return job

    def start(self, job: Job) -> None:
        if self._closed:  # an audit write that outlived the shutdown's grace committed late
            self._end(job, job.keys)
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
        report: Report | None = None
        cut = False
        try:
            report = await self.engine.recover(self.controls[job.target], job.trigger)
        except asyncio.CancelledError:
            cut = True
            raise
        except Exception:  # a bug: keep serving the other targets, and say so loudly
            log.exception("%s: recovery %s crashed", job.target, job.trigger.recovery_id)
        finally:
            if cut:
                # The shutdown cut it (audited `interrupted`): the target stays held until this
                # process lets go of everything, so that with etcd the claim goes with the lease
                # and another replica takes the recovery over; one remediator re-checks it at
                # its next start (remediator.resume).
                self._drop(job)
            else:
                self._end(job, set() if report is None else _unserved(job, report))
        if report is not None:
            self._history[job.target].append(report)
        return report

    def _end(self, job: Job, unserved: set[AlertKey]) -> None:
        """The recovery is over: its target is free, the `unserved` alerts forgotten."""
        self._drop(job)
        self.coordination.end(job.target, job.trigger.recovery_id, unserved)

    def _drop(self, job: Job) -> None:
        if self._jobs.get(job.target) is job:
            del self._jobs[job.target]

    async def wait_idle(self) -> None:
        """Wait until no recovery is running (for tests and the benchmark)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def resume(self, target: str, recovery_id: str, after: Progress | None = None) -> bool:
        """Start a recovery no alert asked for: the re-check of one that the last run of the
        remediator left unfinished (remediator.resume), or one taken over from another replica
        (going on `after` its progress). False if the target is taken."""
        if target not in self.controls or self._closed:
            return False
        if not self.coordination.claim(target, recovery_id):
            return False
        job = Job(target, Trigger(recovery_id, [], after=after))
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
