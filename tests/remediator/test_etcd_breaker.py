"""The breakers in etcd (`coordination.backend: etcd`), against a real 3-member cluster: one
state for every replica and the `breaker` command, counted exactly under contention, open
(fail closed) while etcd cannot be read, and each change's audit event committed with it."""

from __future__ import annotations

import concurrent.futures
import json
from typing import TYPE_CHECKING, Any

import pytest

from redis_autoheal.cli import main
from remediator.act import breaker_opened
from remediator.audit import AUTOHEAL, read_events
from remediator.coordination import breaker_store
from remediator.errors import BreakerStateError, Fenced
from remediator.etcd import gateway as g
from remediator.etcd.audit import AUDIT_END, AUDIT_PREFIX
from remediator.etcd.breaker import KEY, EtcdBreakerStore
from remediator.events import CircuitBreaker
from tests.remediator.configs import write_config

if TYPE_CHECKING:
    from pathlib import Path

    from redis_autoheal.config import Config
    from remediator.breaker import BreakerState
    from remediator.events import Event
    from tests.etcd_cluster import EtcdCluster


def replica(tmp_path: Path, etcd: EtcdCluster, name: str, **breaker: int) -> Config:
    (tmp_path / name).mkdir()
    return write_config(
        tmp_path / name,
        {
            "coordination": {"backend": "etcd", "etcd": {"endpoints": etcd.endpoints}},
            "circuit_breaker": {"max_recoveries": 100, **breaker},
        },
    )


def test_one_breaker_for_every_replica_and_the_command(
    tmp_path: Path, etcd: EtcdCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = (replica(tmp_path, etcd, n, max_recoveries=2) for n in ("a", "b"))
    store_a, store_b = breaker_store(a), breaker_store(b)
    store_a.record_recovery("redis")
    assert not store_b.is_open("redis")
    store_b.record_recovery("redis")
    assert store_a.is_open("redis")
    assert not (tmp_path / "a" / "state").exists()  # nothing on local disk
    assert main(["breaker", "status", "--config", str(b.source)]) == 0
    assert "redis: OPEN since" in capsys.readouterr().out
    assert main(["breaker", "reset", "--config", str(a.source), "--target", "redis"]) == 0
    assert "redis: circuit breaker reset (was open)" in capsys.readouterr().out
    assert not store_b.is_open("redis")
    (event,) = read_events(a.audit)
    assert (event["operation"], event["was_open"]) == ("reset", True)


def test_contending_replicas_count_every_recovery(tmp_path: Path, etcd: EtcdCluster) -> None:
    stores = [breaker_store(replica(tmp_path, etcd, f"r{i}")) for i in range(3)]

    def count(i: int) -> None:
        for _ in range(4):
            stores[i].record_recovery("redis")

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(count, range(3)))
    assert len(stores[0].state("redis").recoveries) == 12


def test_while_etcd_cannot_be_read_the_breaker_is_open(tmp_path: Path, etcd: EtcdCluster) -> None:
    store = breaker_store(replica(tmp_path, etcd, "a"))
    assert not store.is_open("redis")
    etcd.close()
    assert store.is_open("redis")
    with pytest.raises(BreakerStateError, match="cannot read the breakers in etcd"):
        store.state("redis")


def trail(store: EtcdBreakerStore) -> list[tuple[int, dict[str, Any]]]:
    """The audit trail in etcd: (revision, event), in order."""
    answer = store._gateway.call(
        "kv/range", {"key": g.b64(AUDIT_PREFIX), "range_end": g.b64(AUDIT_END)}
    )
    return sorted(
        (int(kv["mod_revision"]), json.loads(g.unb64(kv["value"]))) for kv in answer.get("kvs", [])
    )


def breakers_revision(store: EtcdBreakerStore) -> int:
    kv = g.ranged(store._gateway.call("kv/txn", g.txn([], [g.get(KEY)])), 0)
    assert kv is not None
    return int(kv["mod_revision"])


def test_each_change_is_committed_with_its_audit_event(
    tmp_path: Path, etcd: EtcdCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    config = replica(tmp_path, etcd, "a", max_recoveries=2)
    store = breaker_store(config, trail="r1")
    assert isinstance(store, EtcdBreakerStore)
    committed: list[Event] = []
    store.committed = committed.extend

    def opened(state: BreakerState) -> CircuitBreaker:
        return breaker_opened("redis", actor=AUTOHEAL, source_ip=None, reason=state.reason)

    store.record_recovery("redis", opened)  # counted, not opened: nothing to record
    assert trail(store) == []
    store.record_recovery("redis", opened)  # opened: its event in the same transaction
    ((revision, event),) = trail(store)
    assert revision == breakers_revision(store)
    assert (event["operation"], event["reason"]) == ("open", "2 recoveries within 300s")
    assert [e.operation for e in committed] == ["open"]

    # The command's reset, from another host's point of view: the same.
    assert main(["breaker", "reset", "--config", str(config.source), "--target", "redis"]) == 0
    capsys.readouterr()
    revision, event = trail(store)[-1]
    assert revision == breakers_revision(store)
    assert (event["operation"], event["was_open"]) == ("reset", True)
    assert read_events(config.audit) == [event]  # and in the local log, once

    # A count refused (its replica no longer holds the target) leaves neither.
    store.fence_of = lambda _target: 1
    before = breakers_revision(store)
    with pytest.raises(Fenced):
        store.record_recovery("redis", opened)
    assert breakers_revision(store) == before
    assert len(trail(store)) == 2
