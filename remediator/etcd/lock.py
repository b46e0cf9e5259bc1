"""The target's lock and start budget across replicas (`coordination.backend: etcd`).

A manual operation holds the target by its `lock` key, on its replica's lease, taken only if no
recovery claims the target and no other operation holds it (`take`); a recovery, holding its
claim, waits before acting until no other replica's operation holds the lock. One of either at
a time, then, whichever replica runs it. The start budget's start times live in the target's
`budget` key: read afresh, and a start recorded by a transaction that also checks the hold
(the recovery's claim, the operation's lock), so starts on every replica count against it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from typing import TYPE_CHECKING, Literal, Protocol

from remediator.control import StartBudget, TargetLock
from remediator.errors import CoordinationUnavailable, Fenced
from remediator.etcd import gateway as g
from remediator.etcd.keys import budget_key, claim_key, lock_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    from remediator.etcd.gateway import Gateway

POLL_SECONDS = 0.2  # how often a recovery looks whether another replica's operation ended
LET_GO_TRIES = 5  # an operation's lock that cannot be deleted is then left to the lease


class _Fence(Protocol):
    @property
    def fence(self) -> int: ...


class Replica(Protocol):
    """What the lock and the budget need of their replica's coordination."""

    replica: str
    gateway: Gateway
    lease: int

    @property
    def live(self) -> bool: ...
    @property
    def fences(self) -> Mapping[str, _Fence]: ...
    async def idle(self) -> None: ...


def _holder(kv: g.Json) -> tuple[str, str]:
    """(replica, what) of a claim or lock key's value."""
    try:
        value = json.loads(kv["value"])
        return str(value.get("replica")), str(value.get("holder", "recovery"))
    except (ValueError, AttributeError):
        return "?", "?"


class EtcdTargetLock(TargetLock):
    """This process's lock on a target, and the target's `lock` key; see the module docstring."""

    def __init__(self, replica: Replica, target: str) -> None:
        super().__init__()
        self._replica = replica
        self.target = target
        self.revision = 0  # the lock key's create revision, while an operation here holds it
        self._letting_go: asyncio.Task[None] | None = None

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        if self.target in self._replica.fences:  # a recovery of ours, holding the claim
            try:
                await self._clear()
            except BaseException:
                super().release()
                raise
        return True

    async def _clear(self) -> None:
        """Until no other replica's operation holds the target; or until this replica's lease
        may have expired (the recovery's first command is then fenced)."""
        r = self._replica
        await self._let_go_done()
        while r.live:
            with contextlib.suppress(CoordinationUnavailable):
                answer = await r.gateway.call("kv/txn", g.txn([], [g.get(lock_key(self.target))]))
                held = g.ranged(answer, 0)
                if held is None or _holder(held)[0] == r.replica:
                    return
            await asyncio.sleep(POLL_SECONDS)

    async def take(self, holder: str) -> str | None:
        r = self._replica
        if not r.live:
            raise CoordinationUnavailable("no live etcd lease")
        await self._let_go_done()
        await r.idle()  # this replica's claims given back are deleted first
        claim, lock = claim_key(self.target), lock_key(self.target)
        answer = await r.gateway.call(
            "kv/txn",
            g.txn(
                [g.compare(claim, "CREATE", 0), g.compare(lock, "CREATE", 0)],
                [g.put(lock, json.dumps({"replica": r.replica, "holder": holder}), r.lease)],
                [g.get(claim), g.get(lock)],
            ),
        )
        if answer.get("succeeded"):
            self.revision = g.revision(answer)
            return None
        recovering, operating = g.ranged(answer, 0), g.ranged(answer, 1)
        if recovering is not None:
            return f"a recovery is running on replica {_holder(recovering)[0]}"
        replica, what = _holder(operating or {})
        return f"a manual {what} is running on replica {replica}"

    def release(self) -> None:
        if self.revision:
            self._letting_go = asyncio.create_task(self._let_go(self.revision))
            self.revision = 0
        super().release()

    async def confirm(self) -> None:
        """Fenced if an operation of ours holds no more the target's lock (its lease expired)."""
        if not self.revision:
            return
        if not self._replica.live:
            raise Fenced("this replica's etcd lease may have expired: its lock on the target too")
        try:
            answer = await self._replica.gateway.call("kv/txn", g.txn([self.compare()], []))
        except CoordinationUnavailable as e:
            raise Fenced(f"cannot confirm the lock on the target with etcd: {e}") from None
        if not answer.get("succeeded"):
            raise Fenced("this replica no longer holds the lock on the target")

    def compare(self) -> g.Json:
        return g.compare(lock_key(self.target), "CREATE", self.revision)

    async def _let_go(self, revision: int) -> None:
        lock = lock_key(self.target)
        body = g.txn([g.compare(lock, "CREATE", revision)], [g.delete(lock)])
        for attempt in range(LET_GO_TRIES):
            with contextlib.suppress(CoordinationUnavailable):
                await self._replica.gateway.call("kv/txn", body)
                return
            await asyncio.sleep(0.1 * 2**attempt)

    async def _let_go_done(self) -> None:
        if self._letting_go is not None:
            await asyncio.shield(self._letting_go)
            self._letting_go = None


class EtcdStartBudget(StartBudget):
    """The target's start budget in its `budget` key; see the module docstring."""

    def __init__(self, replica: Replica, target: str, lock: EtcdTargetLock) -> None:
        super().__init__(clock=time.time)  # the replicas' clocks, unlike their monotonic ones
        self._replica = replica
        self._lock = lock
        self.target = target
        self._revision = 0

    async def refresh(self) -> None:
        answer = await self._replica.gateway.call(
            "kv/txn", g.txn([], [g.get(budget_key(self.target))])
        )
        kv = g.ranged(answer, 0)
        self._revision = 0 if kv is None else kv["mod_revision"]
        starts = [] if kv is None else json.loads(kv["value"])
        self._starts = collections.deque(sorted(float(t) for t in starts))

    def _hold(self) -> g.Json:
        """The comparison that says this replica still holds the target."""
        held = self._replica.fences.get(self.target)
        if held is not None:
            return g.compare(claim_key(self.target), "CREATE", held.fence)
        if self._lock.revision:
            return self._lock.compare()
        raise Fenced("this replica holds no claim or lock on the target: start not recorded")

    async def acquire(self) -> float:
        """Take a slot, waiting as long as needed, recorded in etcd while the target is held
        here; Fenced if it is not, or cannot be recorded."""
        began = self._clock()
        try:
            while True:
                await self.refresh()
                now = self._clock()
                self._expire(now)
                if len(self._starts) >= self.burst:
                    await self._sleep(self._starts[0] + self.interval - now)
                    continue
                key, hold = budget_key(self.target), self._hold()
                starts = json.dumps([*self._starts, now])
                answer = await self._replica.gateway.call(
                    "kv/txn",
                    g.txn([g.compare(key, "MOD", self._revision), hold], [g.put(key, starts)]),
                )
                if answer.get("succeeded"):
                    self._starts.append(now)
                    return now - began
                held = await self._replica.gateway.call("kv/txn", g.txn([hold], []))
                if not held.get("succeeded"):
                    raise Fenced("this replica no longer holds the target: start not recorded")
        except CoordinationUnavailable as e:
            raise Fenced(f"cannot record the start in etcd: {e}") from None
