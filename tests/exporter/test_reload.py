"""Config reload: POST /-/reload and SIGHUP; a bad file is refused and the old config kept; a
scrape in flight during a reload finishes on its connections."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from exporter.app import create_app
from exporter.typedefs import STATE
from redis_autoheal.config import load_config
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value
from tests.exporter.test_infometrics import wait_until
from tests.support import free_port, service_argv

RELOAD_METRIC = "redis_autoheal_exporter_config_last_reload_successful"


def write_config(path, targets, **extra) -> None:
    path.write_text(yaml.safe_dump({"targets": targets, **extra}), encoding="utf-8")


async def reload_metric(client) -> float:
    text = await (await client.get("/metrics")).text()
    return value(parse_samples(text), RELOAD_METRIC)


@pytest.fixture
async def exporter(aiohttp_client, tmp_path, redis_server):
    """A client of an exporter whose config file (tmp_path/config.yml) has target `a`."""
    path = tmp_path / "config.yml"
    write_config(path, [redis_target("a", redis_server)])
    return await aiohttp_client(create_app(load_config(path)))


async def test_a_good_config_takes_effect_and_kept_targets_keep_their_connections(
    exporter, tmp_path, redis_server_factory, redis_server, caplog
):
    other = redis_server_factory()
    assert (await exporter.get("/probe", params={"target": "a"})).status == 200
    with redis_server.client() as c:
        connections = c.info("stats")["total_connections_received"]
    write_config(
        tmp_path / "config.yml", [redis_target("a", redis_server), redis_target("b", other)]
    )
    caplog.set_level("INFO", logger="exporter")
    response = await exporter.post("/-/reload")
    assert (response.status, await response.text()) == (200, "config reloaded\n")
    assert "config reloaded from" in caplog.text
    assert "2 target(s)" in caplog.text

    response = await exporter.get("/probe", params={"target": "b"})
    assert value(parse_samples(await response.text()), "redis_up") == 1
    assert (await exporter.get("/probe", params={"target": "a"})).status == 200
    with redis_server.client() as c:  # a's kept connections were reused: only ours is new
        assert c.info("stats")["total_connections_received"] == connections + 1
    assert await reload_metric(exporter) == 1


async def test_a_removed_target_is_refused_and_its_connections_closed(
    exporter, tmp_path, redis_server_factory, redis_server
):
    other = redis_server_factory()
    assert (await exporter.get("/probe", params={"target": "a"})).status == 200
    write_config(tmp_path / "config.yml", [redis_target("b", other)])
    assert (await exporter.post("/-/reload")).status == 200
    response = await exporter.get("/probe", params={"target": "a"})
    assert response.status == 400
    with redis_server.client() as c:
        wait_until(
            lambda: not [x for x in c.client_list() if x["name"] == "redis-autoheal"],
            "the removed target's connections closed",
        )


@pytest.mark.parametrize(
    "content",
    [
        "targets: [\n",  # not YAML
        "targets: []\n",  # valid YAML, invalid config
        "targets:\n  - name: a\n    redis: {port: 70000}\n",
    ],
)
async def test_a_bad_config_is_refused_and_the_old_one_kept(exporter, tmp_path, caplog, content):
    (tmp_path / "config.yml").write_text(content)
    response = await exporter.post("/-/reload")
    assert response.status == 500
    assert (await response.text()).startswith("config reload refused: ")
    assert "config reload refused, the old config stays in force" in caplog.text
    assert await reload_metric(exporter) == 0
    assert (await exporter.get("/probe", params={"target": "a"})).status == 200
    # Fixed again: the metric says so.
    write_config(tmp_path / "config.yml", [{"name": "a"}])
    assert (await exporter.post("/-/reload")).status == 200
    assert await reload_metric(exporter) == 1


async def test_a_scrape_in_flight_during_a_reload_finishes(exporter, tmp_path, redis_server):
    assert (await exporter.get("/probe", params={"target": "a"})).status == 200
    prober = exporter.app[STATE].directory.probers["a"]
    with redis_server.client() as c:
        connections = c.info("stats")["total_connections_received"]
    redis_server.stop_signal(signal.SIGSTOP)  # the next scrape waits on Redis
    try:
        scrape = asyncio.ensure_future(
            exporter.get("/probe", params={"target": "a", "module": "performance"})
        )
        deadline = time.monotonic() + 10
        while prober.running == 0:  # the probe is running on the old prober's connection
            assert time.monotonic() < deadline, "the scrape did not start"
            await asyncio.sleep(0.01)
        write_config(tmp_path / "config.yml", [{"name": "z"}])  # target a removed
        assert (await exporter.post("/-/reload")).status == 200
        assert not scrape.done()
    finally:
        redis_server.stop_signal(signal.SIGCONT)
    response = await scrape
    assert response.status == 200
    samples = parse_samples(await response.text())
    assert value(samples, "redis_probe_success", layer="performance") == 1
    with redis_server.client() as c:  # on its kept connection: no other opened but this one
        assert c.info("stats")["total_connections_received"] == connections + 1
    assert prober.closed  # and closed once it was done


def test_sighup_reloads_the_running_process(tmp_path, redis_server, redis_server_factory):
    other = redis_server_factory()
    config = tmp_path / "config.yml"
    write_config(config, [redis_target("a", redis_server)])
    port = free_port()
    log = tmp_path / "exporter.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            service_argv("exporter", config, f"127.0.0.1:{port}"),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: "listening on" in log.read_text(), "the exporter serving")

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/probe?target=b")[0] == 400
        write_config(config, [redis_target("a", redis_server), redis_target("b", other)])
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded from" in log.read_text(), "reload logged")
        assert get("/probe?target=b")[0] == 200

        config.write_text("targets: nope\n")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reload refused" in log.read_text(), "refusal logged")
        assert value(parse_samples(get("/metrics")[1]), RELOAD_METRIC) == 0
        assert get("/probe?target=b")[0] == 200  # the old config is still in force
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
