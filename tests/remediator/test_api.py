"""The operator API on the real app, with targets that have no `ssh` section (no root needed):
who gets 401, 403 or through; refusals run nothing and are audited; bad parameters; errors as
problem documents; and no token in any log line or audit event.

The same matrix against the real test host, where allowed operations really run, is in
test_operations.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.breaker import BreakerStore
from remediator.keys import METRICS, OPENAPI, VIOLATIONS
from tests.remediator.apidoc import TEMPLATE, call, check_answer
from tests.remediator.configs import ADMIN, OPERATOR, SECRETS, TOKEN, write_config
from tests.remediator.matrix import (
    ADMIN_ONLY,
    ENDPOINTS,
    IDENTITIES,
    PERMITTED_NO_SSH,
    expected,
    violation_reason,
)


def fast(tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "targets": [{"name": "redis"}, {"name": "cache"}],
        "health_check": {"ping_timeout_seconds": 0.3, "performance_timeout_seconds": 0.3},
        **sections,
    }
    return write_config(tmp_path, data)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await aiohttp_client(create_app(fast(tmp_path)))


def sample(client: TestClient, name: str, **labels: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


@pytest.mark.parametrize(("method", "endpoint"), ENDPOINTS)
async def test_who_may_call_what(client: TestClient, method: str, endpoint: str) -> None:
    permitted = PERMITTED_NO_SSH.get(endpoint, 409)  # an operation: refused, no ssh section
    for who, headers in IDENTITIES.items():
        status, body = await call(client, method, endpoint, headers)
        want = expected(endpoint, who, permitted)
        assert status == want, (who, body)
        reason = violation_reason(who, status)
        if reason is not None:
            assert body["reason"] == reason
    refused = {
        r: sample(client, "autoheal_security_violations_total", reason=r)
        for r in ("missing_token", "invalid_token", "forbidden_role")
    }
    admin_only = endpoint in ADMIN_ONLY
    assert refused == {"missing_token": 3, "invalid_token": 2, "forbidden_role": int(admin_only)}


async def test_every_refusal_is_audited(aiohttp_client: Any, tmp_path: Path) -> None:
    config = fast(tmp_path, circuit_breaker={"max_recoveries": 1})
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)
    store.check()
    store.record_recovery("redis")  # open: a reset would change something
    client = await aiohttp_client(create_app(config))
    for who in ("none", "wrong", "webhook", "operator"):
        status, _ = await call(client, "POST", "reset-circuit-breaker", IDENTITIES[who])
        assert status in (401, 403)
        status, _ = await call(client, "POST", "stop", IDENTITIES[who])
        assert status in (401, 403)
    assert store.is_open("redis")
    events = read_events(config.audit)
    assert {e["event_type"] for e in events} == {"security_violation"}
    # Without a valid token, the first refusal is audited in full and the five others are
    # counted for their source's summary (remediator.violations); a token holder's, each time.
    assert len(events) == 3
    assert client.app[VIOLATIONS].pending == 5
    forbidden = [e for e in events if e["reason"] == "forbidden_role"]
    assert [(e["operation"], e["service"]) for e in forbidden] == [
        ("POST /api/services/redis/reset-circuit-breaker", "redis"),
        ("POST /api/services/redis/stop", "redis"),
    ]
    for e in forbidden:
        assert e["user"] == {
            "id": "user-456",
            "email": "operator@autobot.local",
            "role": "operator",
        }
        assert e["source_ip"] == "127.0.0.1"
        assert e["result"]["success"] is False
        assert e["security"] == {
            "command_validated": False,
            "risk_level": "high",
            "ssh_key_used": False,
        }
    status, body = await call(client, "POST", "reset-circuit-breaker", ADMIN)
    assert status == 200
    assert body["was_open"] is True
    assert body["circuit_breaker"]["open"] is False
    assert not store.is_open("redis")
    reset = read_events(config.audit)[-1]
    assert (reset["event_type"], reset["operation"], reset["user"]["id"]) == (
        "circuit_breaker",
        "reset",
        "user-123",
    )
    await client.close()
    summary = read_events(config.audit)[-1]
    assert (summary["event_type"], summary["count"]) == ("security_violation_summary", 5)


async def test_a_webhook_token_is_no_user_token_and_a_user_token_no_webhook_token(
    client: TestClient,
) -> None:
    status, body = await call(client, "GET", "health", {"Authorization": f"Bearer {TOKEN}"})
    assert (status, body["reason"]) == (401, "invalid_token")
    response = await client.post("/webhook", json={}, headers=ADMIN)
    assert response.status == 401


@pytest.mark.parametrize(
    "value",
    ["0", "1001", "-1", "+5", " 5", "5 ", "1e3", "1.5", "abc", "", "0x10", "5_0", "99999999999"],
)
async def test_lines_outside_1_to_1000_or_not_a_number_is_400(
    client: TestClient, value: str
) -> None:
    response = await client.get(
        "/api/services/redis/logs", params={"lines": value}, headers=OPERATOR
    )
    body = await response.json()
    assert (response.status, body["reason"]) == (400, "bad_lines"), body
    check_answer(
        client.app[OPENAPI],
        "GET",
        f"{TEMPLATE}/logs",
        status=400,
        content_type=response.content_type,
        body=body,
    )


async def test_lines_given_twice_is_400(client: TestClient) -> None:
    response = await client.get("/api/services/redis/logs?lines=5&lines=6", headers=OPERATOR)
    assert response.status == 400


async def test_unknown_target_unknown_route_and_wrong_method(client: TestClient) -> None:
    status, body = await call(client, "GET", "health", ADMIN, target="nosuch")
    assert (status, body["reason"]) == (404, "unknown_target")
    status, body = await call(client, "POST", "restart", ADMIN, target="nosuch")
    assert (status, body["reason"]) == (404, "unknown_target")
    # Without a valid token the answer is 401 whether or not the target exists.
    status, _ = await call(client, "POST", "restart", {}, target="nosuch")
    assert status == 401
    response = await client.get("/api/services/redis/nothing", headers=ADMIN)
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    response = await client.delete("/api/services/redis/health", headers=ADMIN)
    assert response.status == 405
    assert response.headers["Allow"]
    assert (await response.json())["reason"] == "method_not_allowed"
    response = await client.get("/api/services/redis/restart", headers=ADMIN)
    assert response.status == 405


async def test_only_allowed_networks_reach_the_api(aiohttp_client: Any, tmp_path: Path) -> None:
    config = fast(tmp_path, remediator={"allowed_networks": ["10.0.0.0/8", "::2/128"]})
    client = await aiohttp_client(create_app(config))
    for method, endpoint in ENDPOINTS:
        for who in ("none", "admin"):
            status, body = await call(client, method, endpoint, IDENTITIES[who])
            assert (status, body["reason"]) == (403, "forbidden")
    response = await client.get("/api/openapi.json")
    assert response.status == 403
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    assert sample(client, "autoheal_security_violations_total", reason="address_not_allowed") == 15
    await client.close()
    first, summary = read_events(config.audit)
    assert (first["event_type"], first["reason"]) == ("security_violation", "address_not_allowed")
    assert summary["event_type"] == "security_violation_summary"
    assert (summary["count"], summary["reasons"]) == (14, {"address_not_allowed": 14})


async def test_dry_run_refuses_operations_and_audits_the_refusal(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        {
            "targets": [{"name": "redis", "ssh": _fake_ssh(tmp_path)}],
            "remediator": {"dry_run": True},
        },
    )
    client = await aiohttp_client(create_app(config))
    status, body = await call(client, "POST", "restart", OPERATOR)
    assert (status, body["reason"]) == (409, "dry_run")
    (event,) = read_events(config.audit)
    assert (event["event_type"], event["phase"], event["reason"]) == (
        "service_operation",
        "refused",
        "dry_run",
    )
    assert event["user"]["id"] == "user-456"
    assert event["security"]["risk_level"] == "moderate"


def _fake_ssh(tmp_path: Path) -> dict[str, Any]:
    """An ssh section whose files exist; nothing ever connects (dry run, or refused first)."""
    key = tmp_path / "id_ed25519"
    key.write_text("not a key\n")
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text("")
    return {"host": "127.0.0.1", "port": 1, "key_file": str(key), "known_hosts": str(known)}


async def test_no_token_reaches_a_log_line_or_an_audit_event(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = fast(tmp_path, audit={"max_bytes": 1024, "backup_count": 50})
    client = await aiohttp_client(create_app(config))
    for method, endpoint in ENDPOINTS:
        for headers in IDENTITIES.values():
            await client.request(method, f"/api/services/redis/{endpoint}", headers=headers)
            await client.request(method, f"/api/services/nosuch/{endpoint}", headers=headers)
    for headers in IDENTITIES.values():
        await client.post("/webhook", json={}, headers=headers)
    await client.close()
    files = sorted(config.audit.path.parent.iterdir())
    assert any(f.name.endswith(".gz") for f in files), "rotated backups were written"
    texts = [caplog.text]
    for f in files:
        data = f.read_bytes()
        texts.append((gzip.decompress(data) if f.name.endswith(".gz") else data).decode())
    events = [json.loads(line) for text in texts[1:] for line in text.splitlines()]
    refused = [e for e in events if e["event_type"] == "security_violation"]
    summaries = [e for e in events if e["event_type"] == "security_violation_summary"]
    assert len(refused) + sum(s["count"] for s in summaries) > 50
    for secret in SECRETS:
        for text in texts:
            assert secret not in text


async def test_the_document_describes_every_route(client: TestClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc == client.app[OPENAPI]
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    routes.discard(("post", "/webhook"))  # Alertmanager's format: remediator/README.md
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert described == routes
    assert doc["components"]["parameters"]["target"]["schema"]["enum"] == ["redis", "cache"]
    roles = {p: ops["post"]["x-roles"] for p, ops in doc["paths"].items() if "post" in ops}
    assert roles == {
        f"{TEMPLATE}/start": ["admin", "operator"],
        f"{TEMPLATE}/stop": ["admin"],
        f"{TEMPLATE}/restart": ["admin", "operator"],
        f"{TEMPLATE}/reload": ["admin", "operator"],
        f"{TEMPLATE}/reset-circuit-breaker": ["admin"],
    }


async def test_permissions_come_from_the_config(aiohttp_client: Any, tmp_path: Path) -> None:
    config = fast(tmp_path, permissions={"stop": ["admin", "operator"], "restart": ["admin"]})
    client = await aiohttp_client(create_app(config))
    status, body = await call(client, "POST", "restart", OPERATOR)
    assert (status, body["reason"]) == (403, "forbidden_role")
    assert "permitted: admin" in body["detail"]
    status, body = await call(client, "POST", "stop", OPERATOR)
    assert (status, body["reason"]) == (409, "no_ssh")  # permitted, then refused: no ssh


async def test_health_answers_even_when_nothing_does(client: TestClient) -> None:
    status, body = await call(client, "GET", "health", OPERATOR)
    assert status == 200
    assert body["status"] == "critical"
    assert body["layers"]["connectivity"]["status"] == "critical"
    assert body["layers"]["systemd"]["status"] == "warning"  # no ssh section: unknown
    assert body["circuit_breaker"]["open"] is False
    assert body["recoveries"] == []
    assert body["recovery_in_progress"] is False
    assert body["operation_in_progress"] is None
