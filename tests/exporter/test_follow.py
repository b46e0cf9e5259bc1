"""exporter.follow against the test host: the journal stream sees each transition at once.

The followers push to a small Alertmanager API stand-in in the test's own loop, which records
every POST /api/v2/alerts and answers GET /-/ready. `resend_seconds` is an hour, so only the
stream can have woken the read that found a state: nothing is polled. Needs root (test hosts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import REGISTRY

from exporter.app import create_app
from exporter.follow import Followers, UnitFollower
from exporter.typedefs import FOLLOWERS
from redis_autoheal.config import Config, load_config
from redis_autoheal.rulefile import load_state_alerts
from redis_autoheal.sshpool import SshPool
from tests.exporter.samples import names, parse_samples, value
from tests.hostprocs import still_running
from tests.support import free_port, hang_guard

pytestmark = pytest.mark.root

JOURNALCTL = "/usr/bin/python3 /bin/journalctl -u redis-server -f"  # the stand-in, under sudo
RULES = Path(__file__).resolve().parents[2] / "alerts" / "rules" / "redis-autoheal.rules.yml"


class AlertsApi:
    """POST /api/v2/alerts on 127.0.0.1:`port`, each body kept with the time it came.

    GET /-/ready answers 200, or 503 while `ready` is False; `ready_asked` counts the GETs.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.posts: list[tuple[float, list[dict[str, Any]]]] = []
        self.ready = True
        self.ready_asked = 0
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts.append((time.time(), await request.json()))
        self.changed.set()
        return web.json_response({})

    async def _ready(self, _request: web.Request) -> web.Response:
        self.ready_asked += 1
        self.changed.set()
        return web.Response(status=200 if self.ready else 503, text="OK\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self._receive)
        app.router.add_get("/-/ready", self._ready)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def latest(self, alertname: str) -> dict[str, Any] | None:
        """The last state pushed of `alertname`, with `resolved` (endsAt not after the push)."""
        found = None
        for at, alerts in self.posts:
            for a in alerts:
                if a["labels"]["alertname"] == alertname:
                    ends = datetime.fromisoformat(a["endsAt"]).timestamp()
                    found = a | {"resolved": ends <= at}
        return found

    async def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        async with hang_guard(what):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def firing(api: AlertsApi, alertname: str) -> bool:
    latest = api.latest(alertname)
    return latest is not None and not latest["resolved"]


def resolved(api: AlertsApi, alertname: str) -> bool:
    latest = api.latest(alertname)
    return latest is not None and latest["resolved"]


def follow_config(tmp_path: Path, host, api_url: str, **ssh: float) -> Config:
    target = host.target("vm3")
    target["ssh"] |= {"connect_timeout_seconds": 1.5, **ssh}
    data = {
        "targets": [target],
        "exporter": {
            "follow": {
                "alertmanager_urls": [api_url],
                "rules_file": str(RULES),
                "resend_seconds": 3600,
                "reconnect_max_seconds": 2,
            }
        },
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path)


@pytest.fixture
async def api() -> AsyncIterator[AlertsApi]:
    server = AlertsApi(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def follow(tmp_path):
    """follow(host, api_url, **ssh) -> the running UnitFollower of the host's unit."""
    pool = SshPool()
    followers = Followers(pool)

    async def start(host, api_url: str, **ssh: float) -> UnitFollower:
        await followers.sync(follow_config(tmp_path, host, api_url, **ssh))
        (follower,) = followers.running()
        async with hang_guard("the first read of the unit's state"):
            while follower.state != "active":  # noqa: ASYNC110 - another task's state
                await asyncio.sleep(0.05)
        return follower

    yield start
    await followers.close()
    await pool.close()


async def test_kill9_stop_and_a_failing_start_are_pushed_from_the_stream(test_host, api, follow):
    await follow(test_host, api.url)
    (inactive, failed) = (load_state_alerts(RULES, "rules")[s] for s in ("inactive", "failed"))
    labels, annotations = failed.alert("vm3", test_host.unit)

    test_host.kill9()
    await api.wait_for("RedisServiceFailed", lambda: firing(api, "RedisServiceFailed"))
    pushed = api.latest("RedisServiceFailed")
    assert pushed is not None
    assert pushed["labels"] == labels  # the rule's alert: its labels, instance and unit
    assert pushed["labels"]["remediate"] == "true"
    assert pushed["annotations"] == annotations

    await asyncio.to_thread(test_host.start)
    await api.wait_for("its resolution", lambda: resolved(api, "RedisServiceFailed"))

    await asyncio.to_thread(test_host.stop)
    await api.wait_for("RedisServiceInactive", lambda: firing(api, "RedisServiceInactive"))
    assert api.latest("RedisServiceInactive")["labels"] == inactive.alert("vm3", "redis-server")[0]

    test_host.start_fails()
    await asyncio.to_thread(test_host.start)  # redis-server exits at once: the unit fails
    await api.wait_for(
        "the failed start",
        lambda: resolved(api, "RedisServiceInactive") and firing(api, "RedisServiceFailed"),
    )
    test_host.start_fails(False)
    await asyncio.to_thread(test_host.start)
    await api.wait_for("the good start", lambda: resolved(api, "RedisServiceFailed"))


async def test_a_transition_while_the_connection_is_down_is_found_on_reconnect(
    test_host, api, follow
):
    follower = await follow(test_host, api.url, keepalive_seconds=0.5)
    assert follower.up
    test_host.blackhole()  # new connections time out...
    await asyncio.to_thread(test_host.drop_ssh_connections)  # ...and the open one is gone
    async with hang_guard("the stream to be found lost (keepalives)"):
        while follower.up:  # noqa: ASYNC110 - another task's state
            await asyncio.sleep(0.05)
    test_host.kill9()  # the journal says so on the host, but nobody follows it now
    await asyncio.sleep(0)
    assert api.latest("RedisServiceFailed") is None
    test_host.unblackhole()
    await api.wait_for("the reconnect's read", lambda: firing(api, "RedisServiceFailed"))
    assert follower.up


async def test_alertmanager_down_then_back(test_host, follow):
    port = free_port()
    api = AlertsApi(port)

    def errors() -> float | None:
        return REGISTRY.get_sample_value(
            "redis_autoheal_exporter_alert_pushes_total", {"result": "error"}
        )

    before = errors()
    await follow(test_host, api.url)
    test_host.kill9()
    async with hang_guard("a push that nobody took"):
        while errors() == before:  # noqa: ASYNC110 - a metric
            await asyncio.sleep(0.05)
    await api.start()  # Alertmanager is back: the push is tried again within 5 s
    try:
        await api.wait_for("the retried push", lambda: firing(api, "RedisServiceFailed"))
    finally:
        await api.stop()


async def test_the_exporter_follows_from_its_start_until_a_reload_turns_it_off(
    test_host, api, tmp_path, aiohttp_client
):
    config = follow_config(tmp_path, test_host, api.url)
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/healthz")).status == 200
    test_host.kill9()
    await api.wait_for("RedisServiceFailed", lambda: firing(api, "RedisServiceFailed"))
    assert await still_running(test_host, JOURNALCTL, gone_within=0)

    data = yaml.safe_load(config.source.read_text())
    del data["exporter"]
    config.source.write_text(yaml.safe_dump(data))
    assert (await client.post("/-/reload")).status == 200
    assert await still_running(test_host, JOURNALCTL) == []
    assert REGISTRY.get_sample_value("redis_autoheal_exporter_followed_units") == 0
    response = await client.get("/probe", params={"target": "vm3", "module": "systemd"})
    samples = parse_samples(await response.text())
    assert "redis_systemd_unit_state" in names(samples)
    assert "redis_systemd_unit_followed" not in names(samples)  # not followed: not sent


async def _followed(client) -> float:
    """redis_systemd_unit_followed of a module=systemd probe of vm3."""
    response = await client.get("/probe", params={"target": "vm3", "module": "systemd"})
    assert response.status == 200
    return value(
        parse_samples(await response.text()), "redis_systemd_unit_followed", unit="redis-server"
    )


async def _probe_until(client, what: str, wanted: float) -> None:
    async with hang_guard(what):
        while await _followed(client) != wanted:  # noqa: ASYNC110 - probed, as Prometheus does
            await asyncio.sleep(0.2)


async def test_the_probe_says_whether_the_rule_may_stand_down(test_host, tmp_path, aiohttp_client):
    """redis_systemd_unit_followed: 1 while followed with pushes taken, else 0."""
    api = AlertsApi(free_port())
    await api.start()
    config = follow_config(tmp_path, test_host, api.url, keepalive_seconds=0.5)
    client = await aiohttp_client(create_app(config))
    try:
        await _probe_until(client, "the stream up, read, and Alertmanager ready", 1)
        (follower,) = client.app[FOLLOWERS].running()

        await api.stop()  # Alertmanager unreachable: the push of the kill -9 fails
        test_host.kill9()
        await _probe_until(client, "the failed push", 0)
        assert api.latest("RedisServiceFailed") is None

        await api.start()  # back: the push is retried within 5 s and taken
        await api.wait_for("the retried push", lambda: firing(api, "RedisServiceFailed"))
        await _probe_until(client, "the push taken", 1)

        test_host.blackhole()  # the stream is lost, and cannot be opened again
        await asyncio.to_thread(test_host.drop_ssh_connections)
        async with hang_guard("the stream to be found lost (keepalives)"):
            while follower.up:  # noqa: ASYNC110 - another task's state
                await asyncio.sleep(0.05)
        assert await _followed(client) == 0
        test_host.unblackhole()
        await _probe_until(client, "the stream back and reconciled", 1)
    finally:
        await api.stop()


async def test_before_any_push_the_unit_counts_as_followed_only_if_alertmanager_is_ready(
    test_host, tmp_path, aiohttp_client
):
    api = AlertsApi(free_port())
    api.ready = False
    await api.start()
    config = follow_config(tmp_path, test_host, api.url)
    client = await aiohttp_client(create_app(config))
    try:
        await api.wait_for("the follower to ask", lambda: api.ready_asked > 0)
        (follower,) = client.app[FOLLOWERS].running()
        assert follower.up
        assert follower.reconciled  # asked after the stream's first read
        assert await _followed(client) == 0

        test_host.kill9()  # this Alertmanager takes the push all the same
        await api.wait_for("RedisServiceFailed", lambda: firing(api, "RedisServiceFailed"))
        await _probe_until(client, "the push taken", 1)
    finally:
        await api.stop()
