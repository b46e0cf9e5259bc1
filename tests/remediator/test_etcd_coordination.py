"""EtcdCoordination's admission against a real 3-member etcd cluster, without a test host:
replicas deciding the same alerts at once start exactly one recovery per outage, over many
rounds; an outage already handled is a duplicate on every replica; a breaker open in etcd
suppresses everywhere; each new claim has a higher fence; a manual operation holds the target
against every replica's recoveries and operations."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING

import pytest

from redis_autoheal.config import CircuitBreaker, EtcdSettings
from remediator.audit import AuditWriter
from remediator.coordination import Verdict
from remediator.etcd.breaker import EtcdBreakerStore
from remediator.etcd.coordination import EtcdCoordination
from remediator.etcd.gateway import SyncGateway
from remediator.etcd.lock import POLL_SECONDS
from tests.remediator.configs import write_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

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
        made.append(EtcdCoordination(["redis"], AuditWriter(config.audit), breaker, settings))
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
    replicas[0].end("redis", "again", [])
    await replicas[0].idle()

    replicas[1].breaker.trip("redis", "stopped by a person")
    later = outage("b")
    verdicts = await asyncio.gather(*(decide(c, later, f"s{i}") for i, c in enumerate(replicas)))
    assert verdicts == [Verdict.SUPPRESSED] * 3


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
