"""The layers against the test host (VM3 in a box): real sshd, systemctl, faults. Needs root."""

from __future__ import annotations

import asyncio
import threading
import time

import asyncssh
import pytest

from exporter.app import create_app
from exporter.typedefs import STATE
from redis_autoheal.units import UNIT_STATES
from tests.conftest import HANG, hang_guard
from tests.exporter.conftest import parse_samples, value

pytestmark = pytest.mark.root  # every test here uses a test host

# Short layer timeouts so that the fault tests are quick; the SSH connect timeout is shorter
# than the systemd layer's so that an unreachable sshd shows as ssh_timeout, not timeout.
TIMEOUTS = {
    "ping_timeout_seconds": 1.5,
    "systemd_timeout_seconds": 4,
    "performance_timeout_seconds": 2,
}


def _target(host, **ssh):
    target = host.target("vm3")
    target["ssh"] |= {"connect_timeout_seconds": 1.5, **ssh}
    return target


@pytest.fixture
async def probe_host(aiohttp_client, make_config):
    """probe_host(host, module, headers, timeouts, **ssh) -> (samples, client).

    Each call builds a new exporter (no kept connections) for the host's target, with `ssh`
    overriding keys of its ssh section and `timeouts` the layer timeouts (TIMEOUTS).
    """

    async def probe(host, module="all", headers=None, timeouts=TIMEOUTS, **ssh):
        config = make_config([_target(host, **ssh)], **timeouts)
        client = await aiohttp_client(create_app(config))
        samples = await scrape(client, module, headers)
        return samples, client

    return probe


async def scrape(client, module="all", headers=None):
    """One probe; a hang (a timeout not applied) fails it, slowness does not."""
    async with hang_guard(f"a probe of module {module}"):
        response = await client.get(
            "/probe", params={"target": "vm3", "module": module}, headers=headers or {}
        )
        assert response.status == 200
        return parse_samples(await response.text())


def unit_states(samples):
    return {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "redis_systemd_unit_state" and dict(labels)["unit"] == "redis-server"
    }


def expect_state(samples, state):
    states = unit_states(samples)
    assert states == {s: float(s == state) for s in UNIT_STATES}
    assert value(samples, "redis_ssh_up") == 1


async def test_a_healthy_host_passes_every_layer(test_host, probe_host):
    samples, client = await probe_host(test_host)
    for layer in ("connectivity", "systemd", "performance"):
        assert value(samples, "redis_probe_success", layer=layer) == 1
    expect_state(samples, "active")
    assert value(samples, "redis_up") == 1
    assert value(samples, "redis_connected_clients") >= 1
    assert not any(name == "redis_probe_error" for name, _ in samples)
    # The SSH connection is kept and reused: five more probes, still one connection.
    for _ in range(5):
        samples = await scrape(client, "systemd")
        expect_state(samples, "active")
    assert client.app[STATE].directory.probers["vm3"].ssh.connections_opened == 1


async def test_inactive(test_host, probe_host):
    test_host.stop()
    samples, _ = await probe_host(test_host)
    expect_state(samples, "inactive")
    assert value(samples, "redis_probe_success", layer="systemd") == 0
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_probe_error", layer="connectivity", reason="refused") == 1


async def test_failed(test_host, probe_host):
    test_host.kill9()
    test_host.wait_state("failed")
    samples, _ = await probe_host(test_host, "systemd")
    expect_state(samples, "failed")
    assert value(samples, "redis_probe_success", layer="systemd") == 0


async def test_activating(test_host, probe_host):
    test_host.stop()
    test_host.slow_start(60)
    starting = threading.Thread(target=test_host.start)
    starting.start()
    try:
        test_host.wait_state("activating")
        samples, _ = await probe_host(test_host, "systemd")
    finally:
        test_host.stop()  # cancels the start job
        starting.join(30)
    expect_state(samples, "activating")
    assert value(samples, "redis_probe_success", layer="systemd") == 0


@pytest.mark.parametrize(("state", "success"), [("reloading", 1), ("deactivating", 0)])
async def test_transient_states(test_host, probe_host, state, success):
    # A reload of the stand-in lasts a kill -HUP and a stop a SIGTERM: too short to catch,
    # so the stand-in's state is set directly; systemctl is-active then prints it over SSH.
    with test_host._unit().updating() as unit:
        unit.active = state
    try:
        samples, _ = await probe_host(test_host, "systemd")
    finally:
        with test_host._unit().updating() as unit:
            unit.active = "active"
    expect_state(samples, state)
    assert value(samples, "redis_probe_success", layer="systemd") == success


async def test_a_hung_redis_is_down_while_its_unit_is_active(test_host, probe_host):
    _, client = await probe_host(test_host)  # connections are open before the hang
    test_host.sigstop()
    try:
        samples = await scrape(client)
    finally:
        test_host.sigcont()
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_probe_error", layer="connectivity", reason="timeout") == 1
    assert value(samples, "redis_probe_error", layer="performance", reason="timeout") == 1
    expect_state(samples, "active")
    samples = await scrape(client)
    assert value(samples, "redis_up") == 1  # and recovered once it runs again


async def test_ssh_refused(test_host, probe_host):
    samples, _ = await probe_host(test_host, "systemd", port=1)
    assert value(samples, "redis_ssh_up") == 0
    assert value(samples, "redis_probe_error", layer="systemd", reason="ssh_refused") == 1
    assert not unit_states(samples)


async def test_ssh_key_refused(test_host, probe_host, tmp_path):
    key = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    key.chmod(0o600)
    samples, _ = await probe_host(test_host, "systemd", key_file=str(key))
    assert value(samples, "redis_ssh_up") == 0
    assert value(samples, "redis_probe_error", layer="systemd", reason="ssh_auth") == 1


async def test_changed_host_key_is_refused(test_host, probe_host):
    test_host.change_host_key()
    samples, _ = await probe_host(test_host, "all")
    assert value(samples, "redis_ssh_up") == 0
    assert value(samples, "redis_probe_error", layer="systemd", reason="host_key") == 1
    assert value(samples, "redis_up") == 1  # Redis itself is fine


@pytest.mark.parametrize("fault", ["link_down", "blackhole"])
async def test_an_unreachable_host_answers_within_the_timeouts_and_recovers(
    test_host, probe_host, fault
):
    _, client = await probe_host(test_host)
    getattr(test_host, fault)()
    try:
        samples = await scrape(client)
    finally:
        getattr(test_host, "link_up" if fault == "link_down" else "unblackhole")()
    assert value(samples, "redis_up") == 0
    errors = {
        dict(labels)["layer"]: dict(labels)["reason"]
        for (name, labels), _ in samples.items()
        if name == "redis_probe_error"
    }
    assert errors["connectivity"] in ("timeout", "unreachable")
    assert errors["performance"] in ("timeout", "unreachable")

    # A fresh scrape sees SSH down too (the kept connection has been dropped or is new).
    getattr(test_host, fault)()
    try:
        fresh = await probe_host(test_host, "systemd")
    finally:
        getattr(test_host, "link_up" if fault == "link_down" else "unblackhole")()
    samples = fresh[0]
    assert value(samples, "redis_ssh_up") == 0
    reason = next(
        dict(labels)["reason"]
        for (name, labels), _ in samples.items()
        if name == "redis_probe_error"
    )
    assert reason in ("ssh_timeout", "ssh_unreachable")

    # Back on the network, the same exporter recovers both connections.
    deadline = time.monotonic() + HANG
    while True:
        samples = await scrape(client)
        if value(samples, "redis_up") == 1 and value(samples, "redis_ssh_up") == 1:
            break
        assert time.monotonic() < deadline, f"not recovered: {samples}"
        await asyncio.sleep(0.2)
    expect_state(samples, "active")


async def test_the_scrape_timeout_header_bounds_a_probe_of_an_unreachable_host(
    test_host, probe_host
):
    # Every timeout longer than the hang guard: only the header's budget can end the probe.
    long = 2 * HANG
    timeouts = dict.fromkeys(TIMEOUTS, long)
    test_host.blackhole()
    try:
        samples, _ = await probe_host(
            test_host,
            "all",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
            timeouts=timeouts,
            connect_timeout_seconds=long,
        )
    finally:
        test_host.unblackhole()
    for layer in ("connectivity", "systemd", "performance"):
        assert value(samples, "redis_probe_success", layer=layer) == 0


@pytest.mark.parametrize("test_host", [{"password": "vm3-secret"}], indirect=True)
async def test_requirepass_on_the_host(test_host, probe_host):
    samples, _ = await probe_host(test_host)
    assert value(samples, "redis_up") == 1
    assert value(samples, "redis_probe_success", layer="performance") == 1
