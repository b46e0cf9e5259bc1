"""Remediator replicas on a real 3-member etcd cluster (`coordination.backend: etcd`), each
receiving every notification, against the real test host: one recovery per outage, a breaker
counted once and reset from any replica.

The host's own record of systemctl calls says what ran, whichever replica ran it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from remediator.keys import BREAKER, METRICS
from tests.remediator.configs import ADMIN
from tests.remediator.notifications import alert, notification
from tests.remediator.test_integration import AUTH, host_config, make_client, settle, verbs

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp.test_utils import TestClient

    from redis_autoheal.config import Config
    from testhost.host import TestHost
    from tests.etcd_cluster import EtcdCluster
    from tests.remediator.test_integration import MakeClient

pytestmark = pytest.mark.root
__all__ = ["make_client"]  # the fixture, shared with test_integration.py

LEASE_TTL = 3


def replica_configs(
    tmp_path: Path, host: TestHost, etcd: EtcdCluster, n: int = 3, **sections: Any
) -> list[Config]:
    """N replicas' configs: each its own state and audit files, one etcd cluster."""
    coordination = {
        "backend": "etcd",
        "etcd": {"endpoints": etcd.endpoints, "lease_ttl_seconds": LEASE_TTL},
    }
    configs = []
    for i in range(n):
        (tmp_path / f"r{i}").mkdir()
        configs.append(
            host_config(tmp_path / f"r{i}", {"vm3": host}, coordination=coordination, **sections)
        )
    return configs


def now() -> str:
    """An alert's startsAt for an outage that starts now."""
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


async def post_all(clients: list[TestClient], *alerts: dict[str, Any]) -> list[list[str]]:
    """The same notification to every replica at once, as each Alertmanager peer sends it."""

    async def post(client: TestClient) -> list[str]:
        response = await client.post("/webhook", json=notification(*alerts), headers=AUTH)
        assert response.status == 200, await response.text()
        return [a["disposition"] for a in (await response.json())["alerts"]]

    return list(await asyncio.gather(*(post(c) for c in clients)))


async def settle_all(clients: list[TestClient]) -> None:
    for client in clients:
        await settle(client)


async def outage(host: TestHost) -> str:
    """Redis killed, its unit failed; the startsAt of the alert that says so."""
    host.kill9()
    await asyncio.to_thread(host.wait_state, "failed", 10)
    return now()


async def test_each_outage_is_recovered_once_by_one_of_three_replicas(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(tmp_path, test_host, etcd, circuit_breaker={"max_recoveries": 100})
    clients = [await make_client(c) for c in configs]
    for client in clients:
        assert client.app[METRICS].registry.get_sample_value("autoheal_coordination_up") == 1
    rounds = 5
    for done in range(rounds):
        starts_at = await outage(test_host)
        body = alert("vm3", starts_at=starts_at)
        answers = await post_all(clients, body)
        assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
        await settle_all(clients)
        assert verbs(test_host) == ["restart"] * (done + 1)
        assert test_host.ping()
        # Alertmanager's repeats, from every peer: the outage was handled.
        assert await post_all(clients, body) == [["duplicate"]] * 3
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * rounds


async def test_the_breaker_is_counted_once_and_reset_from_any_replica(
    test_host: TestHost, make_client: MakeClient, etcd: EtcdCluster, tmp_path: Path
) -> None:
    configs = replica_configs(
        tmp_path, test_host, etcd, circuit_breaker={"max_recoveries": 2, "window_seconds": 600}
    )
    clients = [await make_client(c) for c in configs]
    for _ in range(2):
        await post_all(clients, alert("vm3", starts_at=await outage(test_host)))
        await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2
    state = clients[2].app[BREAKER].state("vm3")
    assert state.open
    assert len(state.recoveries) == 2  # counted by the one replica that recovered
    body = alert("vm3", starts_at=await outage(test_host))
    assert await post_all(clients, body) == [["suppressed_circuit_open"]] * 3
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 2

    reset = await clients[1].post("/api/services/vm3/reset-circuit-breaker", headers=ADMIN)
    assert reset.status == 200, await reset.text()
    assert not clients[0].app[BREAKER].state("vm3").open
    answers = await post_all(clients, alert("vm3", starts_at=now()))
    assert sorted(answers) == [["duplicate"], ["duplicate"], ["recovery_started"]]
    await settle_all(clients)
    assert verbs(test_host) == ["restart"] * 3
    assert test_host.ping()
