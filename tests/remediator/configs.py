"""The remediator tests' config on disk (tokens in files, as the config wants them), and the
real remediator process started on it."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_autoheal.config import Config, load_config
from tests.support import HANG, service_argv

TOKEN = "webhook-secret-token"
# Distinct, greppable secrets: no test output or audit event may ever contain one of them.
ADMIN_TOKEN = "admin-tok-5f0c2e7d9a41b3c8e6f1"
OPERATOR_TOKEN = "operator-tok-8b3d1f6a2c9e4d7b0a5e"
WRONG_TOKEN = "wrong-tok-1c4e7a9d2f5b8c0e3a6d"
SECRETS = (TOKEN, ADMIN_TOKEN, OPERATOR_TOKEN, WRONG_TOKEN)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def _users(tmp_path: Path) -> list[dict[str, str]]:
    """An admin and an operator, their tokens in files as the config wants them."""
    users = []
    for uid, email, role, token in [
        ("user-123", "admin@autobot.local", "admin", ADMIN_TOKEN),
        ("user-456", "operator@autobot.local", "operator", OPERATOR_TOKEN),
    ]:
        path = tmp_path / "tokens" / role
        path.parent.mkdir(exist_ok=True)
        path.write_text(token + "\n")
        path.chmod(0o600)
        users.append({"id": uid, "email": email, "role": role, "token_file": str(path)})
    return users


def write_config(tmp_path: Path, data: dict[str, Any]) -> Config:
    """Write `data` (with the remediator's files filled in) as config.yml and load it."""
    token = tmp_path / "webhook.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    data = dict(data)
    data.setdefault("targets", [{"name": "redis"}])
    data.setdefault("users", _users(tmp_path))
    remediator = {
        "webhook_token_file": str(token),
        "state_dir": str(tmp_path / "state"),
        **data.get("remediator", {}),
    }
    data["remediator"] = remediator
    audit = {"path": str(tmp_path / "audit" / "audit.log"), **data.get("audit", {})}
    data["audit"] = audit
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def unreachable_config(tmp_path: Path, **auto_recovery: Any) -> Config:
    """Targets `redis` and `cache` whose SSH port is closed: each attempt fails at once."""
    key = tmp_path / "key"
    key.write_text("unused\n")
    key.chmod(0o600)
    (tmp_path / "known_hosts").write_text("")
    ssh = {
        "host": "127.0.0.1",
        "port": 1,
        "key_file": str(key),
        "known_hosts": str(tmp_path / "known_hosts"),
        "connect_timeout_seconds": 0.5,
    }
    targets = [{"name": "redis", "ssh": ssh}, {"name": "cache", "ssh": ssh}]
    return write_config(tmp_path, {"targets": targets, "auto_recovery": auto_recovery})


def spawn_remediator(config: Config, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The real `python -m remediator` on 127.0.0.1:PORT at debug level, its output in `log`.

    It is not waited for: the caller knows whether to reach it over HTTP or HTTPS.
    """
    argv = service_argv("remediator", config.source, f"127.0.0.1:{port}")
    with log.open("wb") as out:
        return subprocess.Popen(
            [*argv, "--log-level", "debug"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )


def start_remediator(
    config: Config, port: int, log: Path, context: ssl.SSLContext | None = None
) -> subprocess.Popen[bytes]:
    """spawn_remediator(), then wait until its /healthz answers 200 (over HTTPS with
    `context`); killed, and the test failed with its log, if it ends or hangs first."""
    proc = spawn_remediator(config, port, log)
    scheme = "http" if context is None else "https"
    deadline = time.monotonic() + HANG
    while True:
        with contextlib.suppress(OSError):
            url = f"{scheme}://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=1, context=context) as r:
                if r.status == 200:
                    return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the remediator did not come up: {log.read_text()}")
        time.sleep(0.1)
