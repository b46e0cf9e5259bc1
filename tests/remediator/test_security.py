"""Who may call the remediator (remediator.security), at its HTTP edge: what a refused request
leaves in the logs and the audit, odd tokens, dual-stack listeners, and the start-up warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from redis_autoheal.config import Config
from remediator.app import create_app
from remediator.audit import read_events
from remediator.keys import METRICS, WEBHOOK_TOKEN
from remediator.security import exposure_warning
from tests.remediator.configs import ADMIN, SECRETS, TOKEN, spawn_remediator, write_config
from tests.support import free_port

HANG_GUARD = 20  # seconds: only ever reached when something is broken
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ [\w.]+: ")


def violations(client: TestClient, reason: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(
        "autoheal_security_violations_total", {"reason": reason}
    )
    assert value is not None
    return value


async def raw_request(port: int, head: bytes) -> tuple[int, bytes]:
    """Send `head` (request line and headers, as bytes) to 127.0.0.1:PORT; status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Connection: close\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), HANG_GUARD)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --- defect 7: an encoded CR/LF in a path forges no log line and no audit line ---------------


def test_an_encoded_crlf_in_the_path_is_one_log_line_and_one_audit_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    port = free_port()
    log = tmp_path / "remediator.out"
    proc = spawn_remediator(config, port, log)
    forged = "2026-01-01T00:00:00.000Z WARNING remediator.security: FORGED"
    path = "/api/services/redis%0d%0a" + forged.replace(" ", "%20") + "/health"
    try:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(
                        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                    )
                    answer = b""
                    while chunk := s.recv(4096):
                        answer += chunk
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the remediator did not come up"
                time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 401"), answer
        while "refused GET" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD)
    lines = log.read_text().splitlines()
    refused = [line for line in lines if "refused GET" in line]
    assert len(refused) == 1, lines
    assert "redis\\r\\n2026-01-01T00:00:00.000Z WARNING" in refused[0]
    for line in lines:
        assert LOG_LINE.match(line) or line.startswith("remediator: "), line
    assert not any("FORGED" in line and "refused GET" not in line for line in lines), lines
    text = config.audit.path.read_text()
    assert len(text.splitlines()) == 1, text
    (event,) = read_events(config.audit)
    assert event["event_type"] == "security_violation"
    assert event["operation"].startswith("GET /api/services/redis\\r\\n2026-01-01T00")


# --- defect 9: a token that is not UTF-8 is a wrong token, not a crash -----------------------


@pytest.fixture
async def client(aiohttp_client: Any, config: Config) -> TestClient:
    return await aiohttp_client(create_app(config))


@pytest.mark.parametrize(
    "request_line", [b"POST /webhook HTTP/1.1", b"GET /api/services/redis/health HTTP/1.1"]
)
async def test_a_token_that_is_not_utf8_is_401_and_audited(
    client: TestClient, config: Config, request_line: bytes
) -> None:
    assert client.port is not None
    head = request_line + b"\r\nHost: x\r\nAuthorization: Bearer \xff\xfe-not-utf8\r\n"
    status, body = await raw_request(client.port, head)
    assert status == 401, body
    assert violations(client, "invalid_token") == 1
    (event,) = read_events(config.audit)
    assert event["event_type"] == "security_violation"
    assert event["reason"] == "invalid_token"
    assert (await client.get("/healthz")).status == 200


# --- defect 13: IPv4 clients of a dual-stack listener are IPv4 addresses --------------------


def _dual_stack_socket() -> socket.socket:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", 0))
    except OSError as e:
        sock.close()
        pytest.skip(f"cannot listen dual-stack on [::]: {e}")
    return sock


@pytest.mark.parametrize(
    ("networks", "status"),
    [
        (["127.0.0.0/8"], 200),
        (["::ffff:127.0.0.0/104"], 200),  # written as mapped addresses: still matches
        (["10.9.9.0/24"], 403),
        (["::1/128"], 403),
    ],
)
async def test_an_ipv4_client_of_a_dual_stack_listener_is_matched_as_ipv4(
    tmp_path: Path, networks: list[str], status: int
) -> None:
    config = write_config(tmp_path, {"remediator": {"allowed_networks": networks}})
    sock = _dual_stack_socket()
    port = sock.getsockname()[1]
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/services/redis/health"
            async with session.get(url, headers=ADMIN) as response:
                assert response.status == status, await response.text()
    finally:
        await runner.cleanup()
        sock.close()
    events = read_events(config.audit)
    if status == 200:
        assert events == []
    else:
        (event,) = events
        assert event["reason"] == "address_not_allowed"
        assert event["source_ip"] == "127.0.0.1"  # the client's address, as the client knows it


# --- defect 14: the webhook token is compared as a digest; a warning for an open listener ---


async def test_the_webhook_token_itself_is_not_kept(client: TestClient) -> None:
    kept = client.app[WEBHOOK_TOKEN]
    assert kept == hashlib.sha256(TOKEN.encode()).digest()  # fixed length whatever the token
    for wrong in ("", TOKEN[:-1], TOKEN + "x", TOKEN * 100):
        headers = {"Authorization": f"Bearer {wrong}"}
        assert (await client.post("/webhook", json={}, headers=headers)).status == 401
    response = await client.post("/webhook", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 422  # the right token gets through to the body's validation


@pytest.mark.parametrize(
    ("host", "tls", "warns"),
    [
        ("127.0.0.1", False, False),
        ("127.0.0.2", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("10.1.2.3", False, True),
        ("remediator.example", False, True),
        ("0.0.0.0", True, False),
        ("::", True, False),
    ],
)
def test_listening_beyond_loopback_without_tls_is_warned_about(
    host: str, tls: bool, warns: bool
) -> None:
    warning = exposure_warning(host, tls=tls)
    assert (warning is not None) == warns
    if warning:
        assert host in warning
        assert "TLS" in warning


def test_the_remediator_warns_at_start_when_it_listens_on_every_address(tmp_path: Path) -> None:
    """Run in a network namespace of its own (only its `lo`, down): `0.0.0.0` exposes nothing."""
    if subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        pytest.skip("cannot create a network namespace (needs root)")
    config = write_config(tmp_path, {})
    log = tmp_path / "remediator.out"
    args = [sys.executable, "-m", "remediator", "--config", str(config.source), "--listen"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-n", *args, f"0.0.0.0:{free_port()}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PYTHONPATH": str(Path(__file__).parents[2]), "PATH": "/usr/bin:/bin"},
        )
    try:
        deadline = time.monotonic() + HANG_GUARD
        while "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD)
    output = log.read_text()
    (warning,) = [line for line in output.splitlines() if " WARNING " in line]
    assert "0.0.0.0" in warning
    assert "TLS" in warning
    for secret in SECRETS:
        assert secret not in output
