"""EtcdCoordination's admission against a real 3-member etcd cluster, without a test host:
replicas deciding the same alerts at once start exactly one recovery per outage, over many
rounds; an outage already handled is a duplicate on every replica; a breaker open in etcd
suppresses everywhere; each new claim has a higher fence, and its audit event is committed
with it (a claim that failed leaves neither); a recovery whose holder's lease ended is taken
over with its progress, again and again; a manual operation holds the target against every
replica's recoveries and operations."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest

from redis_autoheal.config import CircuitBreaker, EtcdSettings
from remediator.audit import read_events
from remediator.coordination import Verdict
from remediator.errors import Fenced
from remediator.etcd import gateway as g
from remediator.etcd.audit import AUDIT_END, AUDIT_PREFIX, PublishingAuditWriter
from remediator.etcd.breaker import EtcdBreakerStore
from remediator.etcd.coordination import EtcdCoordination
from remediator.etcd.gateway import SyncGateway
from remediator.etcd.keys import claim_key, lock_key, seen_key
from remediator.etcd.lock import POLL_SECONDS
from remediator.recovery import Level, Progress
from tests.remediator.configs import write_config
from tests.support import HANG

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path
    from typing import Any

    from remediator.alertmanager import AlertKey
    from tests.etcd_cluster import EtcdCluster

ROUNDS = 50


@pytest.fixture
async def replicas(tmp_path: Path, etcd: EtcdCluster) -> AsyncIterator[list[EtcdCoordination]]:
    settings = EtcdSettings(endpoints=tuple(etcd.endpoints), lease_ttl_seconds=5)
    made = []
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        config = write_config(tmp_path / f"r{i}", {})
        breaker = EtcdBreakerStore(SyncGateway(settings), CircuitBreaker(max_recoveries=100))
        audit = PublishingAuditWriter(config.audit)
        made.append(EtcdCoordination(["redis"], audit, breaker, settings))
    for c in made:
        await c.open()
    yield made
    for c in made:
        await c.close()


async def decide(c: EtcdCoordination, key: AlertKey, recovery_id: str) -> Verdict:
    """What one replica decides about the alert: prepare, then admit (as the webhook does)."""
    await c.prepare({"redis": [key]})
    return c.admit("redis", key, recovery_id=recovery_id, may_act=True).verdict


def outage(fingerprint: str) -> AlertKey:
    return (fingerprint, dt.datetime.now(dt.UTC))


async def test_replicas_deciding_at_once_start_one_recovery_per_outage(
    replicas: list[EtcdCoordination],
) -> None:
    fences = []
    for n in range(ROUNDS):
        key = outage(f"f{n}")
        verdicts = await asyncio.gather(
            *(decide(c, key, f"r{n}-{i}") for i, c in enumerate(replicas))
        )
        assert sorted(verdicts) == [Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.STARTED], n
        winner = replicas[verdicts.index(Verdict.STARTED)]
        fences.append(winner.fences["redis"].fence)
        recovery_id = winner.fences["redis"].recovery_id
        # A repeat from the other Prometheus (another fingerprint, an earlier startsAt) while
        # it runs, and after it ended: a duplicate everywhere.
        repeat = ("other", key[1] - dt.timedelta(seconds=1))
        others = [c for c in replicas if c is not winner]
        assert [await decide(c, repeat, "x") for c in others] == [Verdict.DUPLICATE] * 2
        winner.end("redis", recovery_id, [])
        await winner.idle()
        assert [await decide(c, repeat, "y") for c in replicas] == [Verdict.DUPLICATE] * 3
    assert fences == sorted(fences)
    assert len(set(fences)) == ROUNDS


async def test_an_unserved_outage_is_forgotten_and_an_open_breaker_suppresses_everywhere(
    replicas: list[EtcdCoordination],
) -> None:
    key = outage("a")
    verdicts = await asyncio.gather(*(decide(c, key, f"r{i}") for i, c in enumerate(replicas)))
    winner = replicas[verdicts.index(Verdict.STARTED)]
    winner.end("redis", winner.fences["redis"].recovery_id, [key])  # it did nothing for it
    await winner.idle()
    assert await decide(replicas[0], key, "again") == Verdict.STARTED  # the next delivery
    replicas[0].end("redis", replicas[0].fences["redis"].recovery_id, [])
    await replicas[0].idle()

    replicas[1].breaker.trip("redis", "stopped by a person")
    later = outage("b")
    verdicts = await asyncio.gather(*(decide(c, later, f"s{i}") for i, c in enumerate(replicas)))
    assert verdicts == [Verdict.SUPPRESSED] * 3


async def revoke(c: EtcdCoordination) -> None:
    """The replica's lease ends (as when it is paused past its TTL): its claims are gone."""
    await c.gateway.call("lease/revoke", {"ID": str(c.lease)})


async def test_a_recovery_is_taken_over_with_its_progress_each_time_a_holder_is_lost(
    replicas: list[EtcdCoordination],
) -> None:
    taken: asyncio.Queue[tuple[EtcdCoordination, Progress | None]] = asyncio.Queue()
    for c in replicas:

        def resume(
            target: str, recovery_id: str, after: Progress | None, c: EtcdCoordination = c
        ) -> bool:
            taken.put_nowait((c, after))
            return c.claim(target, recovery_id)  # as Dispatcher.resume does

        c.adopt(resume)
    holder = replicas[0]
    assert await decide(holder, outage("a"), "r0") == Verdict.STARTED
    step = {"attempt": 1, "recovery_level": "standard"}
    fence = await holder.check_fence("redis", step)
    assert fence == holder.fences["redis"].fence

    lost = [holder]
    for _ in range(2):  # the holder's lease ends; then the lease of the one that took over
        await revoke(lost[-1])
        async with asyncio.timeout(HANG):
            replica, after = await taken.get()
        assert replica not in lost
        assert after == Progress(1, Level.STANDARD)  # still the first holder's last step
        assert replica.fences["redis"].fence > fence
        with pytest.raises(Fenced):
            await lost[-1].check_fence("redis", {"attempt": 2, "recovery_level": "hard"})
        lost.append(replica)
    assert taken.empty()


async def test_a_manual_operation_holds_the_target_against_every_replica(
    replicas: list[EtcdCoordination],
) -> None:
    a, b, c = replicas
    lock = a.lock("redis")
    await lock.acquire()
    assert await lock.take("restart by user-123") is None
    other = b.lock("redis")
    await other.acquire()
    busy = await other.take("stop by user-456")
    assert busy == f"a manual restart by user-123 is running on replica {a.replica}"
    other.release()
    # A recovery claimed meanwhile on another replica waits for the operation to end.
    assert await decide(c, outage("f"), "rec") == Verdict.STARTED
    recovery = asyncio.create_task(c.lock("redis").acquire())
    await asyncio.sleep(POLL_SECONDS * 3)
    assert not recovery.done()
    lock.release()
    async with asyncio.timeout(10):
        await recovery
    # And while it holds the target, no replica's operation may take it.
    await other.acquire()
    busy = await other.take("restart by user-456")
    assert busy == f"a recovery is running on replica {c.replica}"
    other.release()
    c.lock("redis").release()


def in_etcd(c: EtcdCoordination, phase: str) -> list[tuple[int, dict[str, Any]]]:
    """The audit events of the phase in etcd's trail: (revision, event)."""
    answer = g.SyncGateway(EtcdSettings(endpoints=tuple(c.gateway.endpoints))).call(
        "kv/range", {"key": g.b64(AUDIT_PREFIX), "range_end": g.b64(AUDIT_END)}
    )
    events = [
        (int(kv["mod_revision"]), json.loads(g.unb64(kv["value"]))) for kv in answer.get("kvs", [])
    ]
    return [(r, e) for r, e in events if e.get("phase") == phase]


def claims_in_etcd(c: EtcdCoordination) -> list[tuple[int, dict[str, Any]]]:
    return in_etcd(c, "claimed")


async def test_a_claims_audit_event_is_committed_with_it_and_a_failed_claim_leaves_neither(
    replicas: list[EtcdCoordination],
) -> None:
    key = outage("f")
    verdicts = await asyncio.gather(*(decide(c, key, f"r{i}") for i, c in enumerate(replicas)))
    winner = replicas[verdicts.index(Verdict.STARTED)]
    held = winner.fences["redis"]
    read = await winner.gateway.call("kv/txn", g.txn([], [g.get(claim_key("redis"))]))
    claim = g.ranged(read, 0)
    assert claim is not None
    assert claim["create_revision"] == held.fence
    ((revision, event),) = claims_in_etcd(winner)
    assert revision == held.fence  # one transaction
    assert (event["recovery_id"], event["alert_fingerprints"]) == (held.recovery_id, ["f"])
    assert winner.replica in event["reason"]
    for c in replicas:  # each replica's own log: only the winner claimed
        logged = [e for e in read_events(c.audit.settings) if e.get("phase") == "claimed"]
        assert logged == ([event] if c is winner else [])
    winner.end("redis", held.recovery_id, [key])  # unserved: the outage is not handled
    await winner.idle()

    # Another replica marks the outage handled between a replica's read and its claim: the
    # claim's transaction fails, and leaves neither a claim nor its event.
    late = replicas[0]
    call = late.gateway.call

    async def racing(path: str, body: g.Json) -> g.Json:
        if path == "kv/txn" and body["success"] and body["compare"]:
            late.gateway.call = call  # type: ignore[method-assign]
            await call(
                "kv/put",
                {
                    "key": g.b64(seen_key("redis")),
                    "value": g.b64(
                        json.dumps(
                            {"replica": "elsewhere", "at": key[1].timestamp() + 1, "running": False}
                        )
                    ),
                },
            )
        return await call(path, body)

    late.gateway.call = racing  # type: ignore[method-assign]
    assert await decide(late, key, "late") == Verdict.DUPLICATE
    assert late.gateway.call == call  # the race ran
    read = await late.gateway.call("kv/txn", g.txn([], [g.get(claim_key("redis"))]))
    assert g.ranged(read, 0) is None
    assert len(claims_in_etcd(late)) == 1
    logged = [e for e in read_events(late.audit.settings) if e.get("phase") == "claimed"]
    assert len(logged) == (1 if late is winner else 0)


async def test_an_operation_whose_hold_is_gone_runs_no_further_command(
    replicas: list[EtcdCoordination],
) -> None:
    a = replicas[0]
    lock = a.lock("redis")
    await lock.acquire()
    assert await lock.take("restart by user-123") is None
    assert await a.check_fence("redis", {}) is None  # held: its commands run (no fence)
    await a.gateway.call("kv/deleterange", {"key": g.b64(lock_key("redis"))})  # as its lease
    with pytest.raises(Fenced, match="no longer holds the lock"):
        await a.check_fence("redis", {})
    lock.release()


async def test_a_takeover_is_committed_with_its_audit_event(
    replicas: list[EtcdCoordination],
) -> None:
    a, b, _ = replicas
    assert await decide(a, outage("t"), "cut") == Verdict.STARTED
    b.adopt(lambda target, recovery_id, _after: b.claim(target, recovery_id))  # as Dispatcher
    await a.gateway.call("lease/revoke", {"ID": str(a.lease)})  # as if it expired
    async with asyncio.timeout(HANG):
        while "redis" not in b.fences:  # noqa: ASYNC110 -- its keeper takes over on its own
            await asyncio.sleep(0.1)
    held = b.fences["redis"]
    ((revision, event),) = in_etcd(b, "resumed")
    assert revision == held.fence
    assert (event["recovery_id"], event["operation"]) == (held.recovery_id, "resume")
    assert a.replica in event["reason"]
    logged = [e for e in read_events(b.audit.settings) if e.get("phase") == "resumed"]
    assert logged == [event]
    b.end("redis", held.recovery_id, [])
    await b.idle()
