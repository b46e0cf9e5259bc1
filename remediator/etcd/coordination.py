"""`EtcdCoordination`: replicas that each receive every notification start one recovery per
outage of a target.

The replica that starts one holds the target by a claim key attached to its lease, written in
one transaction with the target's duplicate memory (when its last recovery was claimed: an
alert that started before then is of an outage already handled, whichever Prometheus or
Alertmanager sent it) and the claim's audit event (then written to the local log, or the claim
is given back), and compared with the breakers' key: a breaker opened or counted meanwhile
fails the claim. The claim's revision is its fence, checked before each state-changing command
(`check_fence`) and in the transaction that counts the recovery on the breaker. The lease is
kept alive while the replica reaches a member with quorum; a replica whose lease may have
expired is down (not `up`): its `prepare` raises CoordinationUnavailable (the webhook answers
503) and its recoveries are fenced. A recovery still running (its `seen` key says so) whose
claim is gone is taken over by another replica, as a new recovery that looks afresh at the unit
and goes on from the attempt after the last one its holder acted in (each fence check writes
that attempt and its level to `seen`, in its transaction; remediator.recovery). What stays in
this process (the alerts reserved on a recovery, their duplicate memory) is
LocalCoordination's; the locks and start budgets are shared (remediator.etcd.lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediator.breaker import BreakerState, parse_states
from remediator.coordination import LocalCoordination, Verdict
from remediator.errors import AuditWriteError, BreakerStateError, CoordinationUnavailable, Fenced
from remediator.etcd import gateway as g
from remediator.etcd.audit import AuditTrail, PublishingAuditWriter, entry
from remediator.etcd.breaker import EtcdBreakerStore
from remediator.etcd.gateway import Gateway
from remediator.etcd.keys import BREAKER as BREAKER_KEY
from remediator.etcd.keys import claim_key, seen_key
from remediator.etcd.lock import EtcdStartBudget, EtcdTargetLock
from remediator.events import AutoRecovery
from remediator.recovery import Level, Progress

if TYPE_CHECKING:
    from collections.abc import Collection, Coroutine, Iterable, Mapping

    from redis_autoheal.config import EtcdSettings
    from remediator.alertmanager import AlertKey
    from remediator.audit import AuditWriter
    from remediator.breaker import BreakerStore
    from remediator.coordination import Claim, Resume

log = logging.getLogger(__name__)

CLAIM_TRIES = 3  # a claim transaction that lost a race is decided again on a fresh read
TRAIL_SECONDS = 1.0  # how often the audit trail is published and copied
FREE_TRIES = 10  # a claim that cannot be deleted yet is retried, then left to its lease


@dataclass(frozen=True)
class Arbitration:
    """What the store said about starting a recovery of one target."""

    verdict: Verdict | None  # None: this replica holds the target now (fence)
    fence: int = 0
    at: float = 0.0  # when the outage's recovery was first claimed
    recovery_id: str = ""  # the claimed recovery's, named in the claim's audit event
    event: AutoRecovery | None = None  # that event, committed with the claim


@dataclass(frozen=True)
class Held:
    """A target this replica holds for a recovery."""

    recovery_id: str
    fence: int
    at: float


def seen_value(replica: str, at: float, *, running: bool, **progress: str | int) -> str:
    """`progress`: the running recovery's last step (`attempt`, `level`), once it acts."""
    return json.dumps({"replica": replica, "at": at, "running": running, **progress})


def progress_of(seen: Mapping[str, Any]) -> Progress | None:
    """The progress a running recovery left in its `seen` value, if it had acted."""
    attempt, level = seen.get("attempt"), seen.get("level")
    if type(attempt) is not int or level not in {lv.label for lv in Level}:
        return None
    return Progress(attempt, Level[str(level).upper()])


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class EtcdCoordination(LocalCoordination):
    """One replica's part of the shared state; see the module docstring."""

    def __init__(
        self,
        targets: Iterable[str],
        audit: AuditWriter,
        breaker: BreakerStore,
        settings: EtcdSettings,
        *,
        replica: str | None = None,
    ) -> None:
        super().__init__(targets, audit, breaker)
        self.replica = replica or replica_name()
        self._ttl = settings.lease_ttl_seconds
        # A member that does not answer within a third of the lease is skipped for the next.
        self.gateway = Gateway(settings, min(g.REQUEST_TIMEOUT_SECONDS, self._ttl / 3))
        self.lease = 0
        self._lease_valid_until = 0.0  # monotonic: past it, the lease may have expired
        self._keeper: asyncio.Task[None] | None = None
        self.trail: AuditTrail | None = None
        self._trail: asyncio.Task[None] | None = None
        self._arbitrated: dict[str, Arbitration] = {}
        self._taken: dict[str, Arbitration] = {}  # taken over, until its recovery starts
        self.fences: dict[str, Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resume: Resume | None = None
        self.locks = {name: EtcdTargetLock(self, name) for name in self._locks}
        self._locks = dict(self.locks)
        self._budgets = {name: EtcdStartBudget(self, name, self.locks[name]) for name in self.locks}
        if isinstance(breaker, EtcdBreakerStore):
            breaker.fence_of = self._fence_of
            if isinstance(audit, PublishingAuditWriter):  # its changes' events: with them
                breaker.replica, breaker.committed = self.replica, audit.mark_published

    def _fence_of(self, target: str) -> int | None:
        held = self.fences.get(target)
        return None if held is None else held.fence

    def adopt(self, resume: Resume) -> None:
        self._resume = resume

    # Start-up, lease, shutdown.

    async def open(self) -> None:
        """The audit log must open; etcd may be down (the replica then answers 503 until it
        is back, and says so in `autoheal_coordination_up`)."""
        await asyncio.to_thread(self.audit.open)
        with contextlib.suppress(CoordinationUnavailable):
            await self._renew()
        self._keeper = asyncio.create_task(self._keep(), name="etcd-lease")
        if isinstance(self.audit, PublishingAuditWriter):
            self.trail = AuditTrail(self.audit, self.gateway, self.replica)
            self._trail = asyncio.create_task(self.trail.run(TRAIL_SECONDS), name="etcd-audit")

    async def close(self) -> None:
        for task in (self._keeper, self._trail):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.trail is not None:  # what the last events of this run published, if etcd can
            with contextlib.suppress(CoordinationUnavailable, TimeoutError):
                async with asyncio.timeout(self._ttl):
                    await self.trail.sync()
        if self.lease:
            with contextlib.suppress(CoordinationUnavailable):
                await self.gateway.call("lease/revoke", {"ID": str(self.lease)})
        await self.gateway.close()
        await super().close()

    @property
    def up(self) -> bool:
        return self.live

    @property
    def live(self) -> bool:
        """The lease is certainly alive: this replica's claims stand."""
        return bool(self.lease) and time.monotonic() < self._lease_valid_until

    async def _renew(self) -> None:
        """Keep the lease alive, or grant a new one if it expired (its claims are gone)."""
        sent = time.monotonic()
        if self.lease:
            answer = await self.gateway.call("lease/keepalive", {"ID": str(self.lease)})
            if int(answer.get("result", {}).get("TTL", 0)) > 0:
                self._lease_valid_until = sent + self._ttl
                return
            log.error("etcd lease %x expired: the claims it held are gone", self.lease)
            self.lease = 0
        answer = await self.gateway.call("lease/grant", {"TTL": str(self._ttl)})
        self.lease = int(answer["ID"])
        self._lease_valid_until = sent + self._ttl

    async def _keep(self) -> None:
        while True:
            try:
                await self._renew()
                for target in self._locks:
                    await self._take_over(target)
            except CoordinationUnavailable as e:
                log.warning("etcd unreachable, nothing is admitted: %s", e)
            await asyncio.sleep(self._ttl / 3)

    # Admission.

    async def prepare(self, wanted: Mapping[str, Collection[AlertKey]]) -> None:
        if not self.live:
            raise CoordinationUnavailable("no live etcd lease")
        try:
            for target, keys in wanted.items():
                if target not in self._holds:
                    self._arbitrated[target] = await self._arbitrate(target, keys)
        finally:
            # `admit` runs next, without awaiting: what it did not take is given back after.
            asyncio.get_running_loop().call_soon(self._drop_unused)

    async def _arbitrate(self, target: str, keys: Collection[AlertKey]) -> Arbitration:
        arbitration = await self._claim(target, keys)
        if arbitration.event is None:
            return arbitration
        try:  # committed with the claim: now in the log too, or the claim is given back
            await self._published(arbitration.event)
        except AuditWriteError:
            self._spawn(
                self._free(target, Held("", arbitration.fence, arbitration.at), forget=True)
            )
            raise
        return arbitration

    async def _claim(self, target: str, keys: Collection[AlertKey]) -> Arbitration:
        newest_start = max(k[1].timestamp() for k in keys)
        claim, seen = claim_key(target), seen_key(target)
        for _ in range(CLAIM_TRIES):
            read = await self.gateway.call(
                "kv/txn", g.txn([], [g.get(claim), g.get(seen), g.get(BREAKER_KEY)])
            )
            held, handled, breakers = g.ranged(read, 0), g.ranged(read, 1), g.ranged(read, 2)
            stale = 0  # a claim of ours that nothing here holds any more: taken back
            if held is not None:
                if not self._own_stale(target, held):
                    return Arbitration(Verdict.DUPLICATE)
                stale = held["create_revision"]
            if handled is not None and newest_start <= json.loads(handled["value"])["at"]:
                return Arbitration(Verdict.DUPLICATE)
            if _breaker_open(breakers, target):
                return Arbitration(Verdict.SUPPRESSED)
            now = time.time()
            recovery_id = uuid.uuid4().hex[:12]
            claimed = AutoRecovery(
                service=target,
                operation="recover",
                success=None,
                phase="claimed",
                recovery_id=recovery_id,
                alert_fingerprints=sorted({k[0] for k in keys}),
                reason=f"claimed by replica {self.replica}: its recovery serves the outage",
            )
            answer = await self.gateway.call(
                "kv/txn",
                g.txn(
                    [
                        g.compare(claim, "CREATE", stale),
                        g.compare(seen, "MOD", 0 if handled is None else handled["mod_revision"]),
                        g.compare(
                            BREAKER_KEY, "MOD", 0 if breakers is None else breakers["mod_revision"]
                        ),
                    ],
                    [
                        *([g.delete(claim)] if stale else []),
                        g.put(claim, self._claim_value(), self.lease),
                        g.put(seen, seen_value(self.replica, now, running=True)),
                        *self._entries(claimed),
                    ],
                ),
            )
            if answer.get("succeeded"):
                return Arbitration(None, g.revision(answer), now, recovery_id, claimed)
        return Arbitration(Verdict.DUPLICATE)

    def _entries(self, event: AutoRecovery) -> list[g.Json]:
        """The event's put into the audit trail, in the transaction of the change it records."""
        return [entry(self.replica, event)] if isinstance(self.audit, PublishingAuditWriter) else []

    async def _published(self, event: AutoRecovery) -> None:
        """The event the change's transaction put into etcd, written to the log (fail closed)."""
        if isinstance(self.audit, PublishingAuditWriter):
            await self.audit.write_published(event)
        else:
            await self.audit.write(event)

    def admit(self, target: str, key: AlertKey, *, recovery_id: str, may_act: bool) -> Claim:
        arbitration = self._arbitrated.get(target)
        if arbitration is not None and arbitration.recovery_id:
            recovery_id = arbitration.recovery_id  # as the claim's audit event names it
        return super().admit(target, key, recovery_id=recovery_id, may_act=may_act)

    def _claim_value(self) -> str:
        return json.dumps({"replica": self.replica, "at": time.time()})

    def _own_stale(self, target: str, held: g.Json) -> bool:
        try:
            replica = json.loads(held["value"]).get("replica")
        except ValueError:
            return False
        mine = replica == self.replica
        return mine and not any(target in d for d in (self._holds, self.fences, self._taken))

    def _refusal(self, target: str, recovery_id: str) -> Verdict | None:
        arbitration = self._arbitrated.pop(target, None)
        if arbitration is None:
            return Verdict.DUPLICATE  # not prepared: another request of ours is deciding it
        if arbitration.verdict is None:
            self.fences[target] = Held(recovery_id, arbitration.fence, arbitration.at)
        return arbitration.verdict

    def _drop_unused(self) -> None:
        for target, arbitration in self._arbitrated.items():
            if arbitration.verdict is None:
                held = Held("", arbitration.fence, arbitration.at)
                self._spawn(self._free(target, held, forget=True))
        self._arbitrated.clear()

    # Fencing and takeover.

    async def check_fence(self, target: str, step: Mapping[str, Any]) -> int | None:
        held = self.fences.get(target)
        if held is None:
            await self.locks[target].confirm()  # a manual operation's hold, if it has one
            return None
        if not self.live:
            raise Fenced(f"fence {held.fence}: this replica's etcd lease may have expired")
        attempt, level = step.get("attempt"), step.get("recovery_level")
        progress = (
            [g.put(seen_key(target), self._progress(held, attempt, level))]
            if isinstance(attempt, int) and isinstance(level, str)
            else []
        )
        try:
            answer = await self.gateway.call(
                "kv/txn", g.txn([g.compare(claim_key(target), "CREATE", held.fence)], progress)
            )
        except CoordinationUnavailable as e:
            raise Fenced(f"fence {held.fence}: cannot confirm it with etcd: {e}") from None
        if not answer.get("succeeded"):
            raise Fenced(f"fence {held.fence}: another replica holds the target now")
        return held.fence

    def _progress(self, held: Held, attempt: int, level: str) -> str:
        return seen_value(self.replica, held.at, running=True, attempt=attempt, level=level)

    async def _take_over(self, target: str) -> None:
        """A recovery still running whose replica's claim is gone: continue it here."""
        if self._resume is None or not self.live or target in self._holds:
            return
        claim, seen = claim_key(target), seen_key(target)
        read = await self.gateway.call("kv/txn", g.txn([], [g.get(claim), g.get(seen)]))
        held, handled = g.ranged(read, 0), g.ranged(read, 1)
        if held is not None or handled is None:
            return
        info = json.loads(handled["value"])
        if not info.get("running") or target in self._holds:
            return
        after = progress_of(info)  # kept in `seen`, for a replica that takes over from this one
        kept: dict[str, str | int] = (
            {} if after is None else {"attempt": after.attempt, "level": after.level.label}
        )
        went = (
            "before it acted"
            if after is None
            else f"after its attempt {after.attempt} ({after.level.label}): going on from the next"
        )
        recovery_id = uuid.uuid4().hex[:12]
        resumed = AutoRecovery(  # committed with the takeover: its revision is the fence
            service=target,
            operation="resume",
            success=None,
            phase="resumed",
            recovery_id=recovery_id,
            resumed_ids=[],
            reason=(
                f"taking over from replica {info.get('replica')}, whose etcd lease expired "
                f"during its recovery, {went}"
            ),
        )
        answer = await self.gateway.call(
            "kv/txn",
            g.txn(
                [g.compare(claim, "CREATE", 0), g.compare(seen, "MOD", handled["mod_revision"])],
                [
                    g.put(claim, self._claim_value(), self.lease),
                    g.put(seen, seen_value(self.replica, info["at"], running=True, **kept)),
                    *self._entries(resumed),
                ],
            ),
        )
        if not answer.get("succeeded"):
            return
        taken = Arbitration(None, g.revision(answer), info["at"])
        self._taken[target] = taken
        try:
            await self._published(resumed)
            started = self._resume(target, recovery_id, after)
        except AuditWriteError as e:
            log.warning("%s: cannot audit the takeover, not taken over: %s", target, e)
            started = False
        if self._taken.pop(target, None) is not None or not started:
            self._spawn(self._free(target, Held("", taken.fence, taken.at), forget=False))
            return
        log.warning("%s: took over a cut recovery as %s", target, recovery_id)

    # The end of a hold.

    def release(self, claim: Claim) -> None:
        super().release(claim)
        self._ended(claim.target, claim.recovery_id, forget=True)

    def end(self, target: str, recovery_id: str, unserved: Iterable[AlertKey]) -> None:
        unserved = list(unserved)
        super().end(target, recovery_id, unserved)
        self._ended(target, recovery_id, forget=bool(unserved))

    def claim(self, target: str, recovery_id: str) -> bool:
        taken = self._taken.pop(target, None)
        if taken is None:  # the start-up's re-check: another replica may be running it
            log.warning("%s: not re-checked at start-up: the replicas take over cut ones", target)
            return False
        if not super().claim(target, recovery_id):
            self._taken[target] = taken  # given back by _take_over
            return False
        self.fences[target] = Held(recovery_id, taken.fence, taken.at)
        return True

    def _ended(self, target: str, recovery_id: str | None, *, forget: bool) -> None:
        """The hold of `recovery_id` is over here: free the claim, and if the recovery did not
        serve its alerts, forget that the outage was handled."""
        held = self.fences.get(target)
        if held is None or held.recovery_id != recovery_id or target in self._holds:
            return
        del self.fences[target]
        self._spawn(self._free(target, held, forget=forget))

    async def _free(self, target: str, held: Held, *, forget: bool) -> None:
        """While the claim is still ours: delete it, and mark the outage handled (its
        recovery no longer running), or forget it."""
        claim, seen = claim_key(target), seen_key(target)
        ended = (
            g.delete(seen)
            if forget
            else g.put(seen, seen_value(self.replica, held.at, running=False))
        )
        body = g.txn([g.compare(claim, "CREATE", held.fence)], [g.delete(claim), ended])
        for attempt in range(FREE_TRIES):
            try:
                await self.gateway.call("kv/txn", body)
            except CoordinationUnavailable as e:
                if attempt == FREE_TRIES - 1:
                    log.warning("%s: cannot free the claim (left to the lease): %s", target, e)
                    return
            else:
                return
            await asyncio.sleep(min(2.0**attempt * 0.1, self._ttl / 3))

    async def idle(self) -> None:
        """Until the claims given back are freed in etcd (for tests and the benchmark)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _breaker_open(kv: g.Json | None, target: str) -> bool:
    """The target's breaker in the breakers' key; open if that cannot be read."""
    if kv is None:
        return False
    try:
        states = parse_states(kv["value"], Path(f"etcd:{BREAKER_KEY}"))
    except BreakerStateError:
        return True
    return states.get(target, BreakerState()).open
