"""POST /webhook on the real app: bad requests get a clear 4xx and change nothing; an audit log
that cannot be written gets a 503 and runs nothing; duplicates coalesce.

The targets here have no `ssh` section, so no command could run whatever happened; the same
requests against the real test host are in test_integration.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from redis_autoheal.errors import ConfigError
from remediator.app import create_app
from remediator.audit import read_events
from remediator.errors import AuditWriteError
from remediator.keys import DISPATCHER, METRICS
from tests.remediator.configs import TOKEN, unreachable_config, write_config
from tests.remediator.notifications import alert, notification

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> TestClient:
    return await aiohttp_client(create_app(config))


def sample(client: TestClient, name: str, **labels: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def test_healthz_and_metrics(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    text = await (await client.get("/metrics")).text()
    for line in [
        'autoheal_recoveries_total{level="hard",result="success",target="redis"} 0.0',
        'autoheal_recovery_duration_seconds_count{level="soft",target="cache"} 0.0',
        'autoheal_circuit_breaker_open{target="redis"} 0.0',
        'autoheal_recovery_exhausted_total{target="cache"} 0.0',
        'autoheal_operations_total{operation="restart",result="success",target="redis"} 0.0',
        'autoheal_ssh_commands_total{command="is-active",result="success",target="redis"} 0.0',
        'autoheal_webhook_requests_total{code="200"} 0.0',
        'autoheal_security_violations_total{reason="invalid_token"} 0.0',
        "autoheal_audit_write_errors_total 0.0",
    ]:
        assert line in text, line


async def test_a_good_notification_is_accepted_and_audited(
    client: TestClient, config: Config
) -> None:
    body = notification(
        alert("redis", fingerprint="aa01"),
        alert("nosuch", fingerprint="aa02"),
        alert("redis", fingerprint="aa03", remediate=False),
        alert(None, fingerprint="aa04"),
    )
    response = await client.post("/webhook", json=body, headers=AUTH)
    assert response.status == 200
    answer = await response.json()
    assert [a["disposition"] for a in answer["alerts"]] == [
        "refused_no_ssh",
        "ignored_unknown_target",
        "ignored_no_remediate_label",
        "ignored_no_target_label",
    ]
    (event,) = read_events(config.audit)
    assert event["event_type"] == "webhook"
    assert event["source_ip"] == "127.0.0.1"
    assert [a["fingerprint"] for a in event["alerts"]] == ["aa01", "aa02", "aa03", "aa04"]
    assert event["alerts"][1]["disposition"] == "ignored_unknown_target"
    assert sample(client, "autoheal_webhook_requests_total", code="200") == 1


def _oversized(config: Config) -> io.BytesIO:
    pad = "x" * config.remediator.max_body_bytes
    return io.BytesIO(json.dumps({**notification(alert()), "pad": pad}).encode())


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({}, b"{}", 401, "a bearer token is required"),
        ({"Authorization": "Bearer wrong"}, b"{}", 401, "invalid bearer token"),
        ({"Authorization": f"Basic {TOKEN}"}, b"{}", 401, "a bearer token is required"),
        ({**AUTH, "Content-Type": "text/plain"}, b"{}", 415, "Content-Type must be"),
        ({**AUTH, "Content-Type": "application/json"}, b"{not json", 400, "malformed JSON"),
        ({**AUTH, "Content-Type": "application/json"}, b"\xff\xfe", 400, "malformed JSON"),
        ({**AUTH, "Content-Type": "application/json"}, b"[]", 422, "body: must be an object"),
        (
            {**AUTH, "Content-Type": "application/json"},
            json.dumps({**notification(alert()), "version": "3"}).encode(),
            422,
            "version: must be '4'",
        ),
        (
            {**AUTH, "Content-Type": "application/json"},
            "oversized",
            413,
            "Maximum request body size",
        ),
    ],
)
async def test_a_bad_request_is_refused_and_changes_nothing(  # noqa: PLR0917 -- one case a row
    client: TestClient,
    config: Config,
    headers: dict[str, str],
    body: bytes | str,
    status: int,
    reason: str,
) -> None:
    data = _oversized(config) if body == "oversized" else body
    response = await client.post("/webhook", data=data, headers=headers)
    assert response.status == status
    assert reason in await response.text()
    assert sample(client, "autoheal_webhook_requests_total", code=str(status)) == 1
    assert client.app[DISPATCHER].running("redis") is None
    events = read_events(config.audit)
    if status == 401:  # a refused token is a security violation, and audited as one
        (event,) = events
        assert event["event_type"] == "security_violation"
        assert event["result"]["success"] is False
    else:
        assert events == []
    assert (await client.get("/healthz")).status == 200  # still serving


async def test_a_body_without_length_over_the_limit_is_413(
    client: TestClient, config: Config
) -> None:
    data = _oversized(config).getvalue()

    async def chunks() -> Any:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/webhook", data=chunks(), headers=headers)
    assert response.status == 413


async def test_token_violations_are_counted(client: TestClient) -> None:
    await client.post("/webhook", json={})
    await client.post("/webhook", json={}, headers={"Authorization": "Bearer nope"})
    assert sample(client, "autoheal_security_violations_total", reason="missing_token") == 1
    assert sample(client, "autoheal_security_violations_total", reason="invalid_token") == 1


async def test_an_address_outside_allowed_networks_is_403(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"remediator": {"allowed_networks": ["10.9.9.0/24"]}})
    client = await aiohttp_client(create_app(config))
    response = await client.post("/webhook", json=notification(alert()), headers=AUTH)
    assert response.status == 403
    assert sample(client, "autoheal_security_violations_total", reason="address_not_allowed") == 1
    assert (await client.get("/metrics")).status == 200  # the scraper's paths stay open


async def test_unwritable_audit_log_is_503_and_counted(client: TestClient, config: Config) -> None:
    path = config.audit.path
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/full")
    response = await client.post("/webhook", json=notification(alert("redis")), headers=AUTH)
    assert response.status == 503
    assert "audit log unavailable" in await response.text()
    assert sample(client, "autoheal_audit_write_errors_total") >= 1
    assert sample(client, "autoheal_webhook_requests_total", code="503") == 1


async def test_an_audit_path_that_cannot_be_opened_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("not a directory")
    runner = web.AppRunner(create_app(write_config(tmp_path, {})))
    with pytest.raises(AuditWriteError, match="cannot create"):
        await runner.setup()
    await runner.cleanup()


async def test_a_missing_token_file_stops_create_app(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    config.remediator.webhook_token_file.unlink()
    with pytest.raises(ConfigError, match="webhook_token_file: cannot read"):
        create_app(config)


@pytest.fixture
def unreachable(tmp_path: Path) -> Config:
    """Targets whose SSH port is closed: recoveries start, find nothing, end exhausted."""
    return unreachable_config(tmp_path, retry_delay_seconds=0.01, max_attempts=2)


async def test_fifty_identical_posts_at_once_start_one_recovery(
    aiohttp_client: Any, unreachable: Config
) -> None:
    client = await aiohttp_client(create_app(unreachable))
    body = notification(alert("redis", fingerprint="beef"))
    responses = await asyncio.gather(
        *(client.post("/webhook", json=body, headers=AUTH) for _ in range(50))
    )
    assert {r.status for r in responses} == {200}
    dispositions = [(await r.json())["alerts"][0]["disposition"] for r in responses]
    assert dispositions.count("recovery_started") == 1
    assert dispositions.count("duplicate") == 49
    await client.app[DISPATCHER].wait_idle()
    for _ in range(5):  # the same notification again, after the recovery: still nothing new
        response = await client.post("/webhook", json=body, headers=AUTH)
        assert (await response.json())["alerts"][0]["disposition"] == "duplicate"
    (report,) = client.app[DISPATCHER].history("redis")
    assert report.outcome == "exhausted"
    started = [
        e
        for e in read_events(unreachable.audit)
        if e.get("phase") == "started" and e["event_type"] == "auto_recovery"
    ]
    assert len(started) == 1


async def test_alerts_of_one_target_join_its_recovery(
    aiohttp_client: Any, unreachable: Config
) -> None:
    client = await aiohttp_client(create_app(unreachable))
    first = notification(alert("redis", fingerprint="b1"), alert("cache", fingerprint="c1"))
    second = notification(alert("redis", fingerprint="b2", name="RedisServiceFailed"))
    r1 = await client.post("/webhook", json=first, headers=AUTH)
    r2 = await client.post("/webhook", json=second, headers=AUTH)
    assert [a["disposition"] for a in (await r1.json())["alerts"]] == ["recovery_started"] * 2
    assert (await r2.json())["alerts"][0]["disposition"] == "joined_running_recovery"
    await client.app[DISPATCHER].wait_idle()
    assert len(client.app[DISPATCHER].history("redis")) == 1
    assert len(client.app[DISPATCHER].history("cache")) == 1


async def test_a_failed_audit_write_gives_the_alert_back(
    aiohttp_client: Any, unreachable: Config
) -> None:
    """After a 503, Alertmanager's retry of the same alert must still start a recovery."""
    client = await aiohttp_client(create_app(unreachable))
    path = unreachable.audit.path
    body = notification(alert("redis", fingerprint="d1"))
    path.unlink()
    path.symlink_to("/dev/full")
    assert (await client.post("/webhook", json=body, headers=AUTH)).status == 503
    assert client.app[DISPATCHER].running("redis") is None
    path.unlink()
    response = await client.post("/webhook", json=body, headers=AUTH)
    assert (await response.json())["alerts"][0]["disposition"] == "recovery_started"
    await client.app[DISPATCHER].wait_idle()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed JSON: nested too deeply"),
        (
            json.dumps(notification(alert(starts_at="0001-01-01T00:00:00+01:00"))).encode(),
            422,
            "alerts[0].startsAt: not a valid time",
        ),
        (
            json.dumps(notification(alert(starts_at="9999-12-31T23:59:59-01:00"))).encode(),
            422,
            "alerts[0].startsAt: not a valid time",
        ),
    ],
)
async def test_a_body_python_cannot_take_is_a_4xx_not_a_500(
    client: TestClient, config: Config, body: bytes, status: int, reason: str
) -> None:
    """A 5xx would be retried by Alertmanager for ever; these will never succeed."""
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == status
    assert reason in await response.text()
    assert sample(client, "autoheal_webhook_requests_total", code=str(status)) == 1
    assert client.app[DISPATCHER].running("redis") is None
    assert read_events(config.audit) == []
    assert (await client.get("/healthz")).status == 200
