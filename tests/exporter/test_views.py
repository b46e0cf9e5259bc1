"""The HTTP contract: /probe parameters, timeouts, /metrics, /healthz; many targets at once."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from exporter.app import create_app
from exporter.views import scrape_budget
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value
from tests.support import HANG, free_port, hang_guard


@pytest.fixture
async def client(aiohttp_client, make_config, redis_server):
    config = make_config([redis_target("redis", redis_server), redis_target("other", 1)])
    return await aiohttp_client(create_app(config))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing target: use /probe?target=NAME&module=MODULE"),
        ("?target=", "missing target: use /probe?target=NAME&module=MODULE"),
        ("?module=all", "missing target: use /probe?target=NAME&module=MODULE"),
        ("?target=nope", "unknown target 'nope': not in the config file"),
        ("?target=REDIS", "unknown target 'REDIS': not in the config file"),
        (
            "?target=redis&module=ping",
            "unknown module 'ping': use one of connectivity, systemd, performance, all",
        ),
        (
            "?target=redis&module=ALL",
            "unknown module 'ALL': use one of connectivity, systemd, performance, all",
        ),
        ("?target=redis&target=other", "target is given 2 times"),
        ("?target=redis&module=all&module=systemd", "module is given 2 times"),
    ],
)
async def test_bad_probe_requests_answer_400_with_one_line(client, query, reason):
    response = await client.get("/probe" + query)
    assert response.status == 400
    assert await response.text() == reason + "\n"


async def test_an_unknown_name_is_cut_in_the_reason(client):
    response = await client.get("/probe", params={"target": "x" * 5000})
    assert response.status == 400
    text = await response.text()
    assert text.count("\n") == 1
    assert len(text) < 200


async def test_module_defaults_to_all(client):
    response = await client.get("/probe", params={"target": "redis"})
    assert response.status == 200
    samples = parse_samples(await response.text())
    layers = {dict(k[1])["layer"] for k in samples if k[0] == "redis_probe_success"}
    assert layers == {"connectivity", "systemd", "performance"}


async def test_probe_answers_the_prometheus_text_format(client):
    response = await client.get("/probe", params={"target": "redis", "module": "connectivity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize("header", ["abc", "0", "-1", "nan", "inf", ""])
async def test_a_bad_scrape_timeout_header_answers_400(client, header):
    response = await client.get(
        "/probe",
        params={"target": "redis"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": header},
    )
    assert response.status == 400
    text = await response.text()
    assert text.startswith("X-Prometheus-Scrape-Timeout-Seconds must be a positive number")
    assert text.count("\n") == 1


@pytest.mark.parametrize(
    ("header", "budget"),
    [(None, None), ("10", 9.5), ("1.5", 1.0), ("1", 0.5), ("0.5", 0.25), ("0.002", 0.001)],
)
def test_scrape_budget_answers_before_the_scraper_gives_up(header, budget):
    assert scrape_budget(header) == budget


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.text() == "ok\n"


async def test_metrics_count_probes_by_module_and_result_and_bad_requests(client):
    def own(samples, name, **labels):
        return value(samples, "redis_autoheal_exporter_" + name, **labels)

    before = parse_samples(await (await client.get("/metrics")).text())
    await client.get("/probe", params={"target": "redis", "module": "connectivity"})
    await client.get("/probe", params={"target": "other", "module": "performance"})
    await client.get("/probe", params={"target": "nope"})
    response = await client.get("/metrics")
    assert response.status == 200
    after = parse_samples(await response.text())

    def delta(name, **labels):
        return own(after, name, **labels) - own(before, name, **labels)

    assert delta("probes_total", module="connectivity", result="success") == 1
    assert delta("probes_total", module="performance", result="failure") == 1
    assert delta("probes_total", module="all", result="success") == 0
    assert delta("layer_failures_total", layer="performance", reason="refused") == 1
    assert delta("bad_requests_total", reason="unknown_target") == 1
    assert delta("probe_duration_seconds_count", module="connectivity") == 1
    assert own(after, "targets") == 2
    # Every label set exists from the start, at 0 until it happens.
    assert own(before, "layer_failures_total", layer="systemd", reason="host_key") >= 0
    assert own(before, "bad_requests_total", reason="bad_scrape_timeout") >= 0


async def test_the_scrape_timeout_header_caps_a_hung_probe(
    aiohttp_client, make_config, redis_server
):
    # Layer timeouts longer than the hang guard: only the header's budget can end the probe.
    config = make_config(
        [redis_target("redis", redis_server)],
        ping_timeout_seconds=2 * HANG,
        performance_timeout_seconds=2 * HANG,
    )
    client = await aiohttp_client(create_app(config))
    redis_server.stop_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        async with hang_guard("a probe with a 2 s scrape timeout"):
            response = await client.get(
                "/probe",
                params={"target": "redis", "module": "all"},
                headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"},
            )
        elapsed = time.monotonic() - started
    finally:
        redis_server.stop_signal(signal.SIGCONT)
    assert response.status == 200
    samples = parse_samples(await response.text())
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_probe_error", layer="connectivity", reason="timeout") == 1
    assert value(samples, "redis_probe_error", layer="performance", reason="timeout") == 1
    # The budget is 2 s less the 0.5 s offset: the probe used it (a budget cannot end early).
    assert elapsed >= 1.4
    assert value(samples, "redis_probe_duration_seconds", layer="performance") >= 1.4


async def test_two_hundred_targets_probed_at_once_all_answer(
    aiohttp_client, make_config, redis_server_factory
):
    servers = [redis_server_factory() for _ in range(3)]
    hung = redis_server_factory()
    down = free_port()
    targets = [redis_target(f"up-{i}", servers[i % 3]) for i in range(150)]
    targets += [redis_target(f"hung-{i}", hung) for i in range(25)]
    targets += [redis_target(f"down-{i}", down) for i in range(25)]
    config = make_config(targets, ping_timeout_seconds=3, performance_timeout_seconds=3)
    client = await aiohttp_client(create_app(config))
    hung.stop_signal(signal.SIGSTOP)
    try:
        async with hang_guard("200 probes at once"):
            responses = await asyncio.gather(
                *(
                    client.get("/probe", params={"target": t["name"], "module": "all"})
                    for t in targets
                )
            )
            texts = [await r.text() for r in responses]
    finally:
        hung.stop_signal(signal.SIGCONT)
    assert [r.status for r in responses] == [200] * 200
    ups = [value(parse_samples(t), "redis_up") for t in texts]
    assert ups == [1] * 150 + [0] * 50
    for t in texts[150:175]:
        assert value(parse_samples(t), "redis_probe_error", layer="connectivity", reason="timeout")
    for t in texts[175:]:
        assert value(parse_samples(t), "redis_probe_error", layer="connectivity", reason="refused")
    # How long they take is bench/exporter_bench.py's business (100 and 1000 targets).
