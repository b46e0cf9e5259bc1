"""The breakers in etcd (`coordination.backend: etcd`), against a real 3-member cluster: one
state for every replica and the `breaker` command, counted exactly under contention, and open
(fail closed) while etcd cannot be read."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import pytest

from redis_autoheal.cli import main
from remediator.audit import read_events
from remediator.coordination import breaker_store
from remediator.errors import BreakerStateError
from tests.remediator.configs import write_config

if TYPE_CHECKING:
    from pathlib import Path

    from redis_autoheal.config import Config
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
