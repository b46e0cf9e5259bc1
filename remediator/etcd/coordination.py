"""`EtcdCoordination`: replicas that each receive every notification start one recovery per
outage of a target.

The replica that starts one holds the target by a claim key attached to its lease, written in
one transaction with the target's duplicate memory (when its last recovery was claimed: an
alert that started before then is of an outage already handled, whichever Prometheus or
Alertmanager sent it) and compared with the breakers' key: a breaker opened or counted meanwhile
fails the claim. The claim's revision is its fence. The lease is kept alive while the replica
reaches a member with quorum; a replica that cannot is down (`up(0)`), and its `prepare`
raises CoordinationUnavailable. What stays in this process (the alerts reserved on a recovery,
their duplicate memory, the locks and start budgets) is LocalCoordination's.
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
from typing import TYPE_CHECKING

from remediator.breaker import BreakerState, parse_states
from remediator.coordination import LocalCoordination, Verdict
from remediator.errors import BreakerStateError, CoordinationUnavailable
from remediator.etcd import gateway as g
from remediator.etcd.breaker import KEY as BREAKER_KEY
from remediator.etcd.gateway import Gateway

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping

    from redis_autoheal.config import EtcdSettings
    from remediator.alertmanager import AlertKey
    from remediator.audit import AuditWriter
    from remediator.breaker import BreakerStore
    from remediator.coordination import Claim

log = logging.getLogger(__name__)

PREFIX = "/redis-autoheal/"
CLAIM_TRIES = 3  # a claim transaction that lost a race is decided again on a fresh read
FREE_TRIES = 10  # a claim that cannot be deleted yet is retried, then left to its lease


def claim_key(target: str) -> str:
    return f"{PREFIX}claim/{target}"


def seen_key(target: str) -> str:
    return f"{PREFIX}seen/{target}"


@dataclass(frozen=True)
class Arbitration:
    """What the store said about starting a recovery of one target."""

    verdict: Verdict | None  # None: this replica holds the target now (fence)
    fence: int = 0


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class EtcdCoordination(LocalCoordination):
    """One replica's part of the shared state; see the module docstring."""

    def __init__(  # noqa: PLR0913 -- what the app has for it
        self,
        targets: Iterable[str],
        audit: AuditWriter,
        breaker: BreakerStore,
        settings: EtcdSettings,
        *,
        up: Callable[[float], None],
        replica: str | None = None,
    ) -> None:
        super().__init__(targets, audit, breaker)
        self.replica = replica or replica_name()
        self.gateway = Gateway(settings)
        self._ttl = settings.lease_ttl_seconds
        self._up = up
        self.lease = 0
        self._lease_valid_until = 0.0  # monotonic: past it, the lease may have expired
        self._keeper: asyncio.Task[None] | None = None
        self._arbitrated: dict[str, Arbitration] = {}
        self.fences: dict[str, tuple[str, int]] = {}  # target: (recovery_id, fence)
        self._tasks: set[asyncio.Task[None]] = set()
        up(0)

    # Start-up, lease, shutdown.

    async def open(self) -> None:
        """The audit log must open; etcd may be down (the replica then answers 503 until it
        is back, and says so in `autoheal_coordination_up`)."""
        await asyncio.to_thread(self.audit.open)
        with contextlib.suppress(CoordinationUnavailable):
            await self._renew()
        self._keeper = asyncio.create_task(self._keep(), name="etcd-lease")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.lease:
            with contextlib.suppress(CoordinationUnavailable):
                await self.gateway.call("lease/revoke", {"ID": str(self.lease)})
        await self.gateway.close()
        await super().close()

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
                self._up(1)
                return
            log.error("etcd lease %x expired: the claims it held are gone", self.lease)
            self.lease = 0
        answer = await self.gateway.call("lease/grant", {"TTL": str(self._ttl)})
        self.lease = int(answer["ID"])
        self._lease_valid_until = sent + self._ttl
        self._up(1)

    async def _keep(self) -> None:
        while True:
            try:
                await self._renew()
            except CoordinationUnavailable as e:
                self._up(0)
                log.warning("etcd unreachable, nothing is admitted: %s", e)
            await asyncio.sleep(self._ttl / 3)

    # Admission.

    async def prepare(self, wanted: Mapping[str, Collection[AlertKey]]) -> None:
        if not self.live:
            raise CoordinationUnavailable("no live etcd lease")
        try:
            for target, keys in wanted.items():
                if target not in self._holds:
                    newest = max(k[1].timestamp() for k in keys)
                    self._arbitrated[target] = await self._arbitrate(target, newest)
        finally:
            # `admit` runs next, without awaiting: what it did not take is given back after.
            asyncio.get_running_loop().call_soon(self._drop_unused)

    async def _arbitrate(self, target: str, newest_start: float) -> Arbitration:
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
                        g.put(claim, json.dumps({"replica": self.replica, "at": now}), self.lease),
                        g.put(seen, json.dumps({"replica": self.replica, "at": now})),
                    ],
                ),
            )
            if answer.get("succeeded"):
                return Arbitration(None, g.revision(answer))
        return Arbitration(Verdict.DUPLICATE)

    def _own_stale(self, target: str, held: g.Json) -> bool:
        try:
            replica = json.loads(held["value"]).get("replica")
        except ValueError:
            return False
        return replica == self.replica and target not in self._holds and target not in self.fences

    def _refusal(self, target: str, recovery_id: str) -> Verdict | None:
        arbitration = self._arbitrated.pop(target, None)
        if arbitration is None:
            return Verdict.DUPLICATE  # not prepared: another request of ours is deciding it
        if arbitration.verdict is None:
            self.fences[target] = (recovery_id, arbitration.fence)
        return arbitration.verdict

    def _drop_unused(self) -> None:
        for target, arbitration in self._arbitrated.items():
            if arbitration.verdict is None:
                self._spawn(self._free(target, arbitration.fence, forget=True))
        self._arbitrated.clear()

    # The end of a hold.

    def release(self, claim: Claim) -> None:
        super().release(claim)
        self._ended(claim.target, claim.recovery_id, forget=True)

    def end(self, target: str, recovery_id: str, unserved: Iterable[AlertKey]) -> None:
        unserved = list(unserved)
        super().end(target, recovery_id, unserved)
        self._ended(target, recovery_id, forget=bool(unserved))

    def claim(self, target: str, recovery_id: str) -> bool:  # noqa: ARG002
        log.warning(
            "%s: not re-checked at start-up: with etcd, the next alert starts its recovery",
            target,
        )
        return False

    def _ended(self, target: str, recovery_id: str | None, *, forget: bool) -> None:
        """The hold of `recovery_id` is over here: free the claim, and if the recovery did not
        serve its alerts, forget that the outage was handled."""
        fence = self.fences.get(target)
        if fence is None or fence[0] != recovery_id or target in self._holds:
            return
        del self.fences[target]
        self._spawn(self._free(target, fence[1], forget=forget))

    async def _free(self, target: str, fence: int, *, forget: bool) -> None:
        requests = [(claim_key(target), "CREATE")]
        if forget:
            requests.append((seen_key(target), "MOD"))
        for key, by in requests:
            for attempt in range(FREE_TRIES):
                try:
                    await self.gateway.call(
                        "kv/txn", g.txn([g.compare(key, by, fence)], [g.delete(key)])
                    )
                    break
                except CoordinationUnavailable as e:
                    if attempt == FREE_TRIES - 1:
                        log.warning("%s: cannot delete %s (left to the lease): %s", target, key, e)
                    await asyncio.sleep(min(2.0**attempt * 0.1, self._ttl / 3))

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
