"""Every metric of docs/reference.md, with the value the server has, read through /probe."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from exporter.app import create_app
from exporter.collector import ProbeCollector
from redis_autoheal.probe import Layer, Reason, SystemdResult
from tests import contract
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import names, parse_samples, value, values_with
from tests.support import HANG

CONTRACT_CONNECTIVITY = contract.CONNECTIVITY
CONTRACT_PERFORMANCE = contract.PERFORMANCE


@pytest.fixture
async def scrape(aiohttp_client, make_config, redis_server):
    """scrape(module) -> samples of /probe?target=redis&module=module, against redis_server."""
    config = make_config([redis_target("redis", redis_server)])
    client = await aiohttp_client(create_app(config))

    async def get(module: str = "performance"):
        response = await client.get("/probe", params={"target": "redis", "module": module})
        assert response.status == 200
        return parse_samples(await response.text())

    return get


async def test_every_contract_metric_is_present(scrape, redis_server):
    samples = await scrape("all")
    assert names(samples) >= CONTRACT_CONNECTIVITY | CONTRACT_PERFORMANCE
    for layer in ("connectivity", "systemd", "performance"):
        assert ("redis_probe_duration_seconds", (("layer", layer),)) in samples
    assert value(samples, "redis_probe_success", layer="connectivity") == 1
    assert value(samples, "redis_probe_success", layer="performance") == 1
    assert value(samples, "redis_up") == 1
    assert 0 < value(samples, "redis_ping_latency_seconds") < 1
    version = redis_server.client().info("server")["redis_version"]
    assert values_with(samples, "redis_instance_info", role="master", redis_version=version) == [1]
    assert value(samples, "redis_rdb_last_bgsave_status") == 1
    assert value(samples, "redis_aof_enabled") == 0
    assert value(samples, "redis_memory_max_bytes") == 0
    assert value(samples, "redis_config_maxclients") == 10000
    assert value(samples, "redis_uptime_in_seconds") >= 0
    assert value(samples, "redis_rejected_connections_total") == 0


async def test_each_module_sends_its_layers_only(scrape):
    connectivity = names(await scrape("connectivity"))
    assert "redis_up" in connectivity
    assert not connectivity & CONTRACT_PERFORMANCE
    performance = names(await scrape("performance"))
    assert performance >= CONTRACT_PERFORMANCE
    assert "redis_up" not in performance
    systemd = names(await scrape("systemd"))
    assert "redis_ssh_up" in systemd
    assert not systemd & (CONTRACT_PERFORMANCE | CONTRACT_CONNECTIVITY)


async def test_fifty_more_clients_raise_connected_clients_by_fifty(scrape, redis_server):
    before = value(await scrape(), "redis_connected_clients")
    sockets = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", redis_server.port), timeout=5)
            s.sendall(b"PING\r\n")
            assert s.recv(16) == b"+PONG\r\n"  # accepted and registered as a client
            sockets.append(s)
        during = value(await scrape(), "redis_connected_clients")
    finally:
        for s in sockets:
            s.close()
    assert during - before == 50


async def test_ten_megabytes_written_raise_memory_used(scrape, redis_server):
    before = value(await scrape(), "redis_memory_used_bytes")
    with redis_server.client() as c:
        for i in range(10):
            c.set(f"blob:{i}", b"x" * 1_000_000)
    after = value(await scrape(), "redis_memory_used_bytes")
    assert after - before >= 10_000_000
    assert value(await scrape(), "redis_db_keys", db="db0") == 10


async def test_config_set_maxmemory_and_maxclients_show(scrape, redis_server):
    with redis_server.client() as c:
        c.config_set("maxmemory", 100 * 1024 * 1024)
        c.config_set("maxclients", 1234)
    samples = await scrape()
    assert value(samples, "redis_memory_max_bytes") == 100 * 1024 * 1024
    assert value(samples, "redis_config_maxclients") == 1234


async def test_appendonly_shows_in_aof_enabled(scrape, redis_server):
    with redis_server.client() as c:
        c.config_set("appendonly", "yes")
    assert value(await scrape(), "redis_aof_enabled") == 1


async def test_bgsave_moves_last_save_and_resets_changes(scrape, redis_server):
    with redis_server.client() as c:
        c.set("a", 1)
        c.set("b", 2)
        before = await scrape()
        assert value(before, "redis_rdb_changes_since_last_save") == 2
        last = c.lastsave()
        # LASTSAVE counts whole seconds: save once Redis's own clock is past that second.
        deadline = time.monotonic() + HANG
        while c.time()[0] <= last.timestamp():
            assert time.monotonic() < deadline, "Redis's clock did not move"
            await asyncio.sleep(0.05)
        c.bgsave()
        while c.lastsave() == last:
            assert time.monotonic() < deadline, "BGSAVE did not finish (a hang)"
            await asyncio.sleep(0.05)
    after = await scrape()
    assert value(after, "redis_rdb_last_save_timestamp_seconds") > value(
        before, "redis_rdb_last_save_timestamp_seconds"
    )
    assert value(after, "redis_rdb_changes_since_last_save") == 0
    assert value(after, "redis_rdb_last_bgsave_status") == 1


async def test_load_gives_ops_per_second(scrape, redis_server):
    stop = threading.Event()

    def load() -> None:  # bounded: stops when told, or after HANG seconds, whichever first
        with redis_server.client() as c:
            deadline = time.monotonic() + HANG
            while not stop.is_set() and time.monotonic() < deadline:
                pipe = c.pipeline(transaction=False)
                for _ in range(100):
                    pipe.ping()
                pipe.execute()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        ops = 0.0
        deadline = time.monotonic() + HANG
        while ops == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # Redis samples ops/s every 100 ms
            ops = value(await scrape(), "redis_instantaneous_ops_per_sec")
    finally:
        stop.set()
        worker.join()
    assert ops > 0
    assert value(await scrape(), "redis_commands_processed_total") > 100


async def test_rejected_connections_counted(scrape, redis_server):
    await scrape()  # the exporter's connection is open before the limit drops
    with redis_server.client() as c:
        clients = int(c.info("clients")["connected_clients"])
        c.config_set("maxclients", clients)
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as s:
            assert s.recv(100).startswith(b"-ERR max number of clients reached")
        c.config_set("maxclients", 10000)
    assert value(await scrape(), "redis_rejected_connections_total") == 1


def _unit_states(samples):
    """redis_systemd_unit_state's value for each state."""
    return {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "redis_systemd_unit_state"
    }


def test_unit_state_series_one_for_the_current_state():
    result = SystemdResult(
        layer=Layer.SYSTEMD,
        success=False,
        duration_seconds=0.1,
        unit="redis-server",
        ssh_up=True,
        state="failed",
    )
    samples = _collect(result)
    states = _unit_states(samples)
    assert states == {
        "active": 0,
        "reloading": 0,
        "inactive": 0,
        "failed": 1,
        "activating": 0,
        "deactivating": 0,
    }
    assert value(samples, "redis_ssh_up") == 1


def test_unknown_unit_state_is_all_six_zero_plus_unknown():
    result = SystemdResult(
        layer=Layer.SYSTEMD,
        success=False,
        duration_seconds=0.1,
        reason=Reason.UNKNOWN_STATE,
        message="maintenance",
        unit="redis-server",
        ssh_up=True,
        state="unknown",
    )
    samples = _collect(result)
    states = _unit_states(samples)
    assert states.pop("unknown") == 1
    assert set(states.values()) == {0}
    assert len(states) == 6
    assert value(samples, "redis_probe_error", layer="systemd", reason="unknown_state") == 1


def test_no_unit_state_series_when_the_state_was_not_read():
    result = SystemdResult(
        layer=Layer.SYSTEMD,
        success=False,
        duration_seconds=0.1,
        reason=Reason.SSH_REFUSED,
        message="refused",
        unit="redis-server",
    )
    samples = _collect(result)
    assert "redis_systemd_unit_state" not in names(samples)
    assert value(samples, "redis_ssh_up") == 0
    assert value(samples, "redis_probe_success", layer="systemd") == 0


def _collect(result, followed=None):
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

    registry = CollectorRegistry(auto_describe=False)
    # One probe result yields Metric families alone, which is what a registry takes.
    registry.register(ProbeCollector([result], followed))  # type: ignore[arg-type]
    return parse_samples(generate_latest(registry).decode())


async def test_a_wrong_password_gives_redis_up_0_and_an_auth_error(
    aiohttp_client, make_config, redis_server_factory, tmp_path
):
    server = redis_server_factory(password="right")
    (tmp_path / "pw").write_text("wrong\n")
    (tmp_path / "pw").chmod(0o600)  # a password file is its owner's only
    config = make_config([redis_target("redis", server, password_file=str(tmp_path / "pw"))])
    client = await aiohttp_client(create_app(config))
    response = await client.get("/probe", params={"target": "redis", "module": "all"})
    assert response.status == 200
    samples = parse_samples(await response.text())
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_probe_error", layer="connectivity", reason="auth") == 1
    assert value(samples, "redis_probe_error", layer="performance", reason="auth") == 1
    assert not names(samples) & CONTRACT_PERFORMANCE


@pytest.mark.parametrize(("followed", "sent"), [(True, 1), (False, 0), (None, None)])
def test_followed_is_sent_with_the_systemd_layer_when_the_unit_is_to_be_followed(followed, sent):
    result = SystemdResult(
        layer=Layer.SYSTEMD,
        success=True,
        duration_seconds=0.1,
        unit="redis-server",
        ssh_up=True,
        state="inactive",
    )
    samples = _collect(result, followed)
    assert value(samples, "redis_ssh_up") == 1
    if sent is None:
        assert "redis_systemd_unit_followed" not in names(samples)
    else:
        assert value(samples, "redis_systemd_unit_followed", unit="redis-server") == sent
