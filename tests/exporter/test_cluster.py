"""Cluster mode on a real 3-master Redis cluster on loopback: CLUSTER INFO's families."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable

import pytest

from exporter.app import create_app
from tests.exporter.redis_servers import RedisServer, redis_target
from tests.exporter.samples import parse_samples, value, values_with
from tests.exporter.test_infometrics import wait_until
from tests.exporter.test_redis_exporter_parity import (
    MORE_LABELS,
    NOT_SENT,
    OTHER_TYPE,
    scrape_theirs,
    shape,
)
from tests.support import free_port, require_binary

NODE_TIMEOUT_MS = 1000
BUS_OFFSET = 10000  # Redis listens for its cluster bus on port + 10000


def _port_with_free_bus() -> int:
    for _ in range(100):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise AssertionError("no port whose cluster-bus port is free too")


@pytest.fixture
def cluster(redis_server_factory) -> list[RedisServer]:
    """Three masters sharing the 16384 slots, state ok on every node."""
    redis_cli = require_binary("redis-cli")
    nodes = []
    for _ in range(3):
        port = _port_with_free_bus()
        nodes.append(
            redis_server_factory(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                port=port,
            )
        )
    subprocess.run(
        [
            redis_cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in nodes),
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for node in nodes:
        with node.client() as c:
            wait_until(lambda c=c: c.cluster("info")["cluster_state"] == "ok", "cluster ok")
    return nodes


@pytest.fixture
async def probe_nodes(aiohttp_client, make_config, cluster) -> Callable:
    config = make_config([redis_target(f"n{i}", node) for i, node in enumerate(cluster)])
    client = await aiohttp_client(create_app(config))

    async def get(i: int, *, text: bool = False, module: str = "performance"):
        response = await client.get("/probe", params={"target": f"n{i}", "module": module})
        assert response.status == 200
        body = await response.text()
        return body if text else parse_samples(body)

    return get


async def test_a_healthy_cluster_reports_state_slots_nodes_and_size(cluster, probe_nodes):
    for i in range(3):
        samples = await probe_nodes(i)
        assert value(samples, "redis_cluster_enabled") == 1
        assert value(samples, "redis_cluster_state") == 1
        assert value(samples, "redis_cluster_slots_assigned") == 16384
        assert value(samples, "redis_cluster_slots_ok") == 16384
        assert value(samples, "redis_cluster_slots_pfail") == 0
        assert value(samples, "redis_cluster_slots_fail") == 0
        assert value(samples, "redis_cluster_known_nodes") == 3
        assert value(samples, "redis_cluster_size") == 3
        assert value(samples, "redis_cluster_messages_sent_total") > 0
        assert value(samples, "redis_cluster_messages_received_total") > 0
        assert values_with(samples, "redis_db_keys") == [0]  # a cluster node has db0 only
        assert values_with(samples, "redis_instance_info", redis_mode="cluster") == [1]


async def test_a_node_gone_shows_as_failed_slots_and_state_fail(cluster, probe_nodes):
    cluster[2].kill()
    with cluster[0].client() as c:
        # The survivors mark it failing after the node timeout, then failed by agreement.
        wait_until(lambda: c.cluster("info")["cluster_state"] == "fail", "cluster state fail")
        expected = c.cluster("info")
    samples = await probe_nodes(0)
    assert value(samples, "redis_cluster_state") == 0
    assert value(samples, "redis_cluster_slots_ok") == int(expected["cluster_slots_ok"]) < 16384
    lost = value(samples, "redis_cluster_slots_pfail") + value(samples, "redis_cluster_slots_fail")
    assert lost == 16384 - int(expected["cluster_slots_ok"])


async def test_a_cluster_node_has_every_family_of_redis_exporter(
    cluster, probe_nodes, redis_exporter
):
    theirs = shape(scrape_theirs(redis_exporter, cluster[0]))
    assert "redis_cluster_slots_ok" in theirs
    ours = shape(await probe_nodes(0, text=True, module="all"))
    assert sorted(theirs.keys() - ours.keys() - NOT_SENT) == []
    for family, (kind, label_sets) in theirs.items():
        if family not in NOT_SENT:
            assert (kind, ours[family][0]) == OTHER_TYPE.get(family, (kind, kind)), family
            extra = MORE_LABELS.get(family, set())
            assert {labels - extra for labels in ours[family][1]} == label_sets, family
