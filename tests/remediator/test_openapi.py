"""schemathesis against the running remediator, from its own /api/openapi.json: no 5xx, and no
answer outside the document (status, content type, headers, body schema), over the real test
host, where the operations it generates really run.

The run is bounded (examples per operation, a time budget, a timeout per request and for the
whole process) so that it fits the CI's budget: about a minute on two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redis_autoheal.config import Config
from testhost.host import TestHost
from tests.remediator.configs import ADMIN_TOKEN, SECRETS, start_remediator, write_config
from tests.support import free_port

pytestmark = pytest.mark.root
SCHEMATHESIS_SECONDS = 240  # the whole run, hard limit


def api_config(tmp_path: Path, host: TestHost) -> Config:
    target = host.target("redis")
    target["ssh"].update(connect_timeout_seconds=1, command_timeout_seconds=5)
    return write_config(
        tmp_path,
        {
            # One real target, and one whose Redis refuses and that has no ssh section: every
            # documented answer, 2xx and refusals alike, comes up.
            "targets": [target, {"name": "cache", "redis": {"host": "127.0.0.1", "port": 1}}],
            "health_check": {"ping_timeout_seconds": 5, "performance_timeout_seconds": 5},
            "auto_recovery": {"stable_seconds": 0.3},
        },
    )


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    test_host: TestHost, tmp_path: Path
) -> None:
    config = api_config(tmp_path, test_host)
    port = free_port()
    log = tmp_path / "remediator.log"
    proc = start_remediator(config, port, log)
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"http://127.0.0.1:{port}/api/openapi.json",
                "--checks",
                "all",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "8",
                "--max-time",
                "60",
                "--seed",
                "20251010",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--generation-database",
                "none",
                "--header",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "--report-dir",
                str(tmp_path / "report"),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=SCHEMATHESIS_SECONDS,
            cwd=tmp_path,
            check=False,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "No issues found" in report or "passed" in report, report
    text = log.read_text()
    # aiohttp itself logs the requests it cannot parse (schemathesis probes a NUL byte in a
    # header) as errors of aiohttp.server; an error or a traceback of ours is a bug.
    ours = [
        line
        for line in text.splitlines()
        if any(f" ERROR {name}" in line for name in ("remediator", "redis_autoheal", "exporter"))
        or "/remediator/" in line
        or "/redis_autoheal/" in line
    ]
    assert ours == [], text
    for secret in SECRETS:
        assert secret not in text
