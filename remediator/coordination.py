"""What remediator replicas would have to share, behind one interface: `Coordination`.

That is: which recovery holds each target and which alerts were handled (admission), the
per-target lock, the start budget, the circuit breaker and the audit trail. `admit` decides
about one firing alert in one step (duplicate memory, the target's holder, the breaker), so
that a shared store can make it one transaction; what it reserves stands once `commit`ted and
is given back by `release`. A shared store answers over the network, so `prepare` (awaited
just before `admit`) asks it which targets this process may start a recovery of. The
`LocalCoordination` is the one process's own: in memory, with the breaker's state file and the
audit log on local disk; remediator.etcd has the replicas' (`coordination.backend: etcd`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from remediator.audit import AuditWriter
from remediator.breaker import BreakerStore
from remediator.control import StartBudget, TargetLock

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from redis_autoheal.config import Config
    from remediator.alertmanager import AlertKey
    from remediator.recovery import Progress

    # Dispatcher.resume: start a recovery of the target with this id, continuing from the
    # progress of the one it takes over, if any; False if the target is taken.
    Resume = Callable[[str, str, Progress | None], bool]

SEEN_TTL_SECONDS = 24 * 3600.0  # longer than Alertmanager's default repeat_interval (4h)
SEEN_MAX = 10_000


class Verdict(StrEnum):
    """What `admit` decided about one firing alert for a target."""

    DUPLICATE = "duplicate"  # handled already, or being handled: nothing reserved
    DECLINED = "declined"  # new, but the caller may not act on it: nothing reserved
    SUPPRESSED = "suppressed"  # the target's breaker is open: nothing reserved
    JOINED = "joined"  # reserved on the recovery that holds the target
    STARTED = "started"  # the target is now held for a new recovery, serving this alert


@dataclass(frozen=True)
class Claim:
    """`admit`'s answer about one alert; a JOINED or STARTED one holds a reservation."""

    verdict: Verdict
    target: str
    key: AlertKey
    recovery_id: str | None = None  # the recovery that serves the alert, if one does

    @property
    def reserved(self) -> bool:
        return self.verdict in (Verdict.JOINED, Verdict.STARTED)


class Coordination(Protocol):
    """Everything several remediators acting as one would share; see the module docstring."""

    @property
    def audit(self) -> AuditWriter: ...
    @property
    def breaker(self) -> BreakerStore: ...
    @property
    def up(self) -> bool:
        """This process may decide and act (`autoheal_coordination_up`)."""

    async def open(self) -> None:
        """Make sure the shared state can be read and written: a failure stops start-up."""

    async def close(self) -> None: ...

    async def prepare(self, wanted: Mapping[str, Collection[AlertKey]]) -> None:
        """Just before `admit`, for the targets its firing alerts may start a recovery of:
        settle with the other replicas which of them this one may start. CoordinationUnavailable
        if that cannot be known: nothing is admitted (the webhook answers 503)."""

    async def check_fence(self, target: str, step: Mapping[str, Any]) -> int | None:
        """Before each state-changing command: Fenced if this process held the target for a
        recovery and holds it no more (another replica took over); else that recovery's fence
        (None if it holds none), and the step (its audit ids: `attempt`, `recovery_level`) is
        the recovery's progress, for a replica that takes it over."""

    def adopt(self, resume: Resume) -> None:
        """The way to start a recovery no alert asked for (`Dispatcher.resume`): a replica
        uses it to take over the recovery of one whose lease expired."""

    def lock(self, target: str) -> TargetLock:
        """One recovery or manual operation on the target at a time."""

    def start_budget(self, target: str) -> StartBudget:
        """Our starts of the target's unit, kept below systemd's start limit."""

    def admit(self, target: str, key: AlertKey, *, recovery_id: str, may_act: bool) -> Claim:
        """Decide about a firing alert: a duplicate; else, if the caller may act, join the
        target's recovery, or hold the target for a new one (`recovery_id`, unless `prepare`
        named it: the Claim's says) unless its breaker is open. Whatever is reserved counts
        at once (a second delivery is a duplicate)."""

    def commit(self, claim: Claim) -> None:
        """The claim's audit event is on disk: its recovery runs, the target stays held."""

    def release(self, claim: Claim) -> None:
        """The claim's audit event could not be written: give back what it reserved."""

    def claim(self, target: str, recovery_id: str) -> bool:
        """Hold a free target for a recovery no alert asked for; False if it is held."""

    def end(self, target: str, recovery_id: str, unserved: Iterable[AlertKey]) -> None:
        """The recovery ended: the target is free, and the `unserved` alerts (those it did not
        serve, or all when it left the target healthy) are forgotten, so their next delivery
        starts a recovery."""

    def remember(self, key: AlertKey) -> None:
        """An alert is handled: its repeats are duplicates until `end` forgets it."""


@dataclass
class _Hold:
    """A target held by one recovery, and the alerts reserved on it."""

    recovery_id: str
    keys: set[AlertKey] = field(default_factory=set)
    committed: bool = False


class LocalCoordination:
    """One remediator's shared state; see the module docstring."""

    def __init__(
        self,
        targets: Iterable[str],
        audit: AuditWriter,
        breaker: BreakerStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.breaker = breaker
        self._clock = clock
        self._locks: dict[str, TargetLock] = {name: TargetLock() for name in targets}
        self._budgets = {name: StartBudget() for name in self._locks}
        self._holds: dict[str, _Hold] = {}
        self._seen: collections.OrderedDict[AlertKey, float] = collections.OrderedDict()

    async def open(self) -> None:
        await asyncio.to_thread(self.audit.open)
        try:
            await asyncio.to_thread(self.breaker.check)
        except BaseException:
            await self.audit.close()
            raise

    async def close(self) -> None:
        await self.audit.close()

    @property
    def up(self) -> bool:
        return True

    async def prepare(self, wanted: Mapping[str, Collection[AlertKey]]) -> None:  # noqa: ARG002
        return None  # one process: `admit` decides alone

    async def check_fence(self, target: str, step: Mapping[str, Any]) -> int | None:  # noqa: ARG002
        return None  # nobody else could take the target

    def adopt(self, resume: Resume) -> None:  # noqa: ARG002
        return None  # nobody else to take over from

    def lock(self, target: str) -> TargetLock:
        return self._locks[target]

    def start_budget(self, target: str) -> StartBudget:
        return self._budgets[target]

    def admit(self, target: str, key: AlertKey, *, recovery_id: str, may_act: bool) -> Claim:
        hold = self._holds.get(target)
        if self._seen_recently(key) or (hold is not None and key in hold.keys):
            return Claim(Verdict.DUPLICATE, target, key)
        if not may_act:
            return Claim(Verdict.DECLINED, target, key)
        verdict = Verdict.JOINED
        if hold is None:
            refusal = self._refusal(target, recovery_id)
            if refusal is not None:
                return Claim(refusal, target, key)
            hold = self._holds[target] = _Hold(recovery_id)
            verdict = Verdict.STARTED
        hold.keys.add(key)
        self.remember(key)
        return Claim(verdict, target, key, hold.recovery_id)

    def commit(self, claim: Claim) -> None:
        hold = self._held_by(claim)
        if hold is not None:
            hold.committed = True

    def release(self, claim: Claim) -> None:
        if not claim.reserved:
            return
        hold = self._held_by(claim)
        if hold is not None:
            hold.keys.discard(claim.key)
            if not hold.committed and not hold.keys:
                del self._holds[claim.target]
        self._seen.pop(claim.key, None)  # admitted only if not seen: it was not

    def claim(self, target: str, recovery_id: str) -> bool:
        if target in self._holds:
            return False
        self._holds[target] = _Hold(recovery_id, committed=True)
        return True

    def end(self, target: str, recovery_id: str, unserved: Iterable[AlertKey]) -> None:
        hold = self._holds.get(target)
        if hold is not None and hold.recovery_id == recovery_id:
            del self._holds[target]
        for key in unserved:
            self._seen.pop(key, None)

    def remember(self, key: AlertKey) -> None:
        now = self._clock()
        self._seen[key] = now + SEEN_TTL_SECONDS
        self._seen.move_to_end(key)
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now and len(self._seen) <= SEEN_MAX:
                break
            del self._seen[oldest]

    def _refusal(self, target: str, recovery_id: str) -> Verdict | None:  # noqa: ARG002
        """Why a new recovery of the target may not start, if it may not."""
        return Verdict.SUPPRESSED if self.breaker.is_open(target) else None

    def _seen_recently(self, key: AlertKey) -> bool:
        expiry = self._seen.get(key)
        return expiry is not None and expiry > self._clock()

    def _held_by(self, claim: Claim) -> _Hold | None:
        """The target's hold, if it is still the one the claim reserved on."""
        hold = self._holds.get(claim.target)
        if claim.reserved and hold is not None and hold.recovery_id == claim.recovery_id:
            return hold
        return None


def breaker_store(config: Config, trail: str | None = None) -> BreakerStore:
    """The breakers of the configured backend: the state file, or the replicas' etcd key (with
    `trail`, the name its changes' audit events are committed with them under, in etcd)."""
    if config.coordination.backend == "etcd":
        from remediator.etcd.breaker import EtcdBreakerStore  # noqa: PLC0415 -- etcd only
        from remediator.etcd.gateway import SyncGateway  # noqa: PLC0415

        etcd = config.coordination.etcd
        # Read and saved in threads (a scrape, a recovery's first look, its count, the API): a
        # member that does not answer is given up on within a third of the lease, then
        # skipped for a lease.
        gateway = SyncGateway(etcd, min(2.0, etcd.lease_ttl_seconds / 3), etcd.lease_ttl_seconds)
        store = EtcdBreakerStore(gateway, config.circuit_breaker)
        store.replica = trail
        return store
    return BreakerStore(config.remediator.state_dir, config.circuit_breaker)


def audit_writer(config: Config, on_error: Callable[[], None]) -> AuditWriter:
    """The audit log's writer; with etcd, one that also publishes to the replicas' trail."""
    if config.coordination.backend == "etcd":
        from remediator.etcd.audit import PublishingAuditWriter  # noqa: PLC0415 -- etcd only

        return PublishingAuditWriter(config.audit, on_error)
    return AuditWriter(config.audit, on_error)


def coordination_for(config: Config, audit: AuditWriter, breaker: BreakerStore) -> Coordination:
    """The configured backend's coordination."""
    names = [t.name for t in config.targets]
    if config.coordination.backend == "etcd":
        from remediator.etcd.coordination import EtcdCoordination  # noqa: PLC0415 -- etcd only

        return EtcdCoordination(names, audit, breaker, config.coordination.etcd)
    return LocalCoordination(names, audit, breaker)
