"""The real `redis-autoheal remediator` process over HTTPS (remediator.tls_cert_file and
tls_key_file, as the runbook serves this API), called with every kind of token: the right
answers, and not one token in anything it printed (at debug level) or audited.
"""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from redis_autoheal.cli import main
from tests.remediator.configs import SECRETS, start_remediator, write_config
from tests.remediator.matrix import ENDPOINTS, IDENTITIES, PERMITTED_NO_SSH, expected
from tests.support import free_port
from tests.tls import make_tls_files


def request(
    url: str, method: str, headers: dict[str, str], context: ssl.SSLContext
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_https_with_every_token_and_no_token_in_its_output(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    cert, key = tls["cert"], tls["key"]
    config = write_config(
        tmp_path,
        {
            "targets": [{"name": "redis", "redis": {"port": 1}}],
            "health_check": {"ping_timeout_seconds": 0.5, "performance_timeout_seconds": 0.5},
            "remediator": {"tls_cert_file": str(cert), "tls_key_file": str(key)},
            "audit": {"max_bytes": 1024, "backup_count": 20},
        },
    )
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls["ca"]))
    log = tmp_path / "remediator.out"
    proc = start_remediator(config, port, log, context)
    try:
        plain = (http.client.HTTPException, ConnectionError, urllib.error.URLError)
        with pytest.raises(plain):  # plain HTTP on the TLS port gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        for method, endpoint in ENDPOINTS:
            for who, headers in IDENTITIES.items():
                url = f"{base}/api/services/redis/{endpoint}"
                status, answer, body = request(url, method, headers, context)
                want = expected(endpoint, who, PERMITTED_NO_SSH.get(endpoint, 409))
                assert status == want, (endpoint, who, body)
                if status == 401:
                    assert answer["WWW-Authenticate"].startswith("Bearer")
                    assert answer["Content-Type"].startswith("application/problem+json")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    output = log.read_text()
    assert "over HTTPS" in output
    assert "refused POST /api/services/redis/stop from 127.0.0.1 by user-456" in output
    audit = [config.audit.path.read_text()]
    audit += [
        gzip.decompress(p.read_bytes()).decode() for p in config.audit.path.parent.glob("*.gz")
    ]
    assert len(audit) > 2  # rotated: the backups are searched too
    events = [json.loads(line) for text in audit for line in text.splitlines()]
    refused = sum(1 for e in events if e["event_type"] == "security_violation")
    summarised = sum(e["count"] for e in events if e["event_type"] == "security_violation_summary")
    assert refused + summarised == 5 * len(ENDPOINTS) + 2  # the summary is written at SIGTERM
    for secret in SECRETS:
        assert secret not in output
        for text in audit:
            assert secret not in text


def test_an_unusable_certificate_stops_start_up_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = make_tls_files(tmp_path)
    cert, key = tls["cert"], tls["key"]
    key.write_text("not a key\n")
    config = write_config(
        tmp_path, {"remediator": {"tls_cert_file": str(cert), "tls_key_file": str(key)}}
    )
    assert main(["remediator", "--config", str(config.source), "--listen", "127.0.0.1:1"]) == 1
    assert "remediator.tls_cert_file: cannot load" in capsys.readouterr().err
