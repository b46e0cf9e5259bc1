"""What the exporter costs each Redis, seen from the Redis side (CLIENT LIST): at most one
connection per target, idle ones closed after exporter.redis_connections.idle_close_seconds,
at most max_per_host open to one host, and a Redis at maxclients is a clear probe error."""

from __future__ import annotations

import asyncio

import pytest
import redis

from exporter.app import create_app
from redis_autoheal.config import load_config
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value
from tests.exporter.test_infometrics import wait_until
from tests.exporter.test_reload import write_config
from tests.support import hang_guard


def ours(server) -> int:
    """Connections the server has from clients named redis-autoheal."""
    with server.client() as c:
        return sum(c.get("name") == "redis-autoheal" for c in c.client_list())


@pytest.fixture
def exporter_for(aiohttp_client, tmp_path):
    """exporter_for(targets, **redis_connections) -> a client of an exporter of them."""

    async def make(targets, **limits):
        path = tmp_path / "config.yml"
        write_config(path, targets, exporter={"redis_connections": limits})
        return await aiohttp_client(create_app(load_config(path)))

    return make


async def probe(client, name, module="all"):
    response = await client.get("/probe", params={"target": name, "module": module})
    assert response.status == 200
    return parse_samples(await response.text())


async def test_a_target_holds_one_connection_whatever_the_probes_at_once(
    exporter_for, redis_server
):
    names = ["a", "b", "c"]
    client = await exporter_for([redis_target(n, redis_server) for n in names])
    for _ in range(3):  # PING and INFO of module=all, five probes of each target at once
        results = await asyncio.gather(*(probe(client, n) for n in names * 5))
        for samples in results:
            assert value(samples, "redis_probe_success", layer="connectivity") == 1
            assert value(samples, "redis_probe_success", layer="performance") == 1
    assert await asyncio.to_thread(ours, redis_server) == len(names)


async def test_an_idle_connection_is_closed_after_the_configured_time(exporter_for, redis_server):
    client = await exporter_for([redis_target("a", redis_server)], idle_close_seconds=1)
    await probe(client, "a")
    assert await asyncio.to_thread(ours, redis_server) == 1
    await asyncio.to_thread(
        wait_until, lambda: ours(redis_server) == 0, "the idle connection closed"
    )
    samples = await probe(client, "a")  # and the next probe opens one again
    assert value(samples, "redis_up") == 1
    assert await asyncio.to_thread(ours, redis_server) == 1


async def test_no_more_connections_to_a_host_than_its_cap(exporter_for, redis_server):
    names = ["a", "b", "c", "d"]
    client = await exporter_for([redis_target(n, redis_server) for n in names], max_per_host=2)
    for n in names:  # one after the other: the longest idle makes room
        assert value(await probe(client, n), "redis_up") == 1
        assert await asyncio.to_thread(ours, redis_server) <= 2
    results = await asyncio.gather(*(probe(client, n) for n in names * 3))  # all at once
    assert all(value(s, "redis_up") == 1 for s in results)
    assert await asyncio.to_thread(ours, redis_server) <= 2
    with redis_server.client() as c:
        assert c.config_get("maxclients")  # the server is fine


async def test_a_redis_at_maxclients_is_a_clear_probe_error(exporter_for, redis_server):
    client = await exporter_for([redis_target("a", redis_server)], idle_close_seconds=1)
    holder = redis.Redis(port=redis_server.port, socket_timeout=5)
    try:
        holder.config_set("maxclients", 1)  # the holder is the one client Redis takes
        async with hang_guard("a probe of a full Redis"):
            samples = await probe(client, "a", "connectivity")
        assert value(samples, "redis_up") == 0
        assert value(samples, "redis_probe_error", layer="connectivity", reason="max_clients") == 1
    finally:
        holder.config_set("maxclients", 10000)
        holder.close()
    assert value(await probe(client, "a", "connectivity"), "redis_up") == 1
