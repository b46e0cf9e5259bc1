"""The command line: `breaker status|reset`, and the real `redis-autoheal remediator` process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_autoheal.cli import main
from remediator.audit import read_events
from remediator.breaker import BreakerStore
from testhost.host import TestHost
from tests.remediator.configs import TOKEN, start_remediator, write_config
from tests.remediator.notifications import alert, notification
from tests.support import HANG, free_port, require_binary


def test_breaker_status_and_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {"circuit_breaker": {"max_recoveries": 1}})
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)
    store.check()
    store.record_recovery("redis")
    assert main(["breaker", "status", "--config", str(config.source)]) == 0
    assert "redis: OPEN since" in capsys.readouterr().out
    assert main(["breaker", "reset", "--config", str(config.source), "--target", "redis"]) == 0
    assert "redis: circuit breaker reset (was open)" in capsys.readouterr().out
    assert not store.is_open("redis")
    (event,) = read_events(config.audit)
    assert (event["event_type"], event["operation"], event["was_open"]) == (
        "circuit_breaker",
        "reset",
        True,
    )
    assert main(["breaker", "status", "--config", str(config.source), "--target", "redis"]) == 0
    assert "redis: closed" in capsys.readouterr().out


def test_breaker_refuses_an_unknown_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {})
    assert main(["breaker", "reset", "--config", str(config.source), "--target", "nosuch"]) == 1
    assert "no target 'nosuch'" in capsys.readouterr().err
    assert main(["breaker", "reset", "--config", str(config.source)]) == 1
    assert "needs --target" in capsys.readouterr().err


def test_breaker_reset_is_not_done_unless_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"circuit_breaker": {"max_recoveries": 1}})
    store = BreakerStore(config.remediator.state_dir, config.circuit_breaker)
    store.check()
    store.record_recovery("redis")
    config.audit.path.parent.mkdir(parents=True, exist_ok=True)
    config.audit.path.symlink_to("/dev/full")
    assert main(["breaker", "reset", "--config", str(config.source), "--target", "redis"]) == 1
    assert "No space left" in capsys.readouterr().err
    assert store.is_open("redis")


def test_listen_must_be_host_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["remediator", "--listen", "nonsense"])
    assert "must be HOST:PORT" in capsys.readouterr().err


def _request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_real_process_heals_a_kill9(test_host: TestHost, tmp_path: Path) -> None:
    target = test_host.target("vm3")
    config = write_config(tmp_path, {"targets": [target], "auto_recovery": {"stable_seconds": 0.5}})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "remediator.log"
    proc = start_remediator(config, port, log)
    try:
        assert _request(f"{base}/webhook", b"{bad")[0] == 400
        test_host.kill9()
        test_host.wait_state("failed", 10)
        body = json.dumps(notification(alert("vm3"))).encode()
        status, answer = _request(f"{base}/webhook", body)
        assert status == 200
        assert json.loads(answer)["alerts"][0]["disposition"] == "recovery_started"
        test_host.wait_until(lambda: test_host.ping(timeout=0.2), 20, "PONG")
        deadline = time.monotonic() + 20
        while not [e for e in read_events(config.audit) if e.get("outcome") == "recovered"]:
            assert time.monotonic() < deadline, "no recovered event"
            time.sleep(0.1)
        metrics = _request(f"{base}/metrics")[1].decode()
        assert (
            'autoheal_recoveries_total{level="hard",result="success",target="vm3"} 1.0' in metrics
        )
        assert 'autoheal_webhook_requests_total{code="400"} 1.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "listening on 127.0.0.1" in out


# --- errors and exit codes, from the real process ---------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_autoheal.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        timeout=HANG,
        check=False,
    )


def test_a_port_in_use_is_one_line_and_never_said_to_listen(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _cli("remediator", "--config", str(config.source), "--listen", f"127.0.0.1:{port}")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"redis-autoheal: error: --listen: cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )


def test_a_port_in_use_from_the_config_names_the_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, {"remediator": {"listen": f"127.0.0.1:{port}"}})
        done = _cli("remediator", "--config", str(config.source))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"redis-autoheal: error: remediator.listen: cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A local redis-server, answering PING when this yields."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen(
        [require_binary("redis-server"), *args],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + HANG
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16) == b"+PONG\r\n":
                    break
            assert server.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer (a hang)"
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(HANG)


def test_health_exit_codes_are_nagios(tmp_path: Path, redis_port: int) -> None:
    """1 WARNING: a Redis that answers, with no ssh section (the unit's state is unknown);
    2 CRITICAL: one that refuses; 3 UNKNOWN, with the reason as the status line: no config,
    an unknown target, a config that does not load; with --json the reason goes to stderr.
    0 HEALTHY needs a test host: tests/remediator/test_health.py."""
    refused = free_port()
    config = write_config(
        tmp_path,
        {
            "targets": [
                {"name": "up", "redis": {"port": redis_port}},
                {"name": "down", "redis": {"port": refused}},
            ]
        },
    ).source
    up = _cli("health", "--config", str(config), "--target", "up")
    assert (up.returncode, up.stdout.splitlines()[0]) == (1, "REDIS WARNING: up warning")
    down = _cli("health", "--config", str(config), "--target", "down")
    assert (down.returncode, down.stdout.splitlines()[0]) == (2, "REDIS CRITICAL: down critical")

    nowhere = tmp_path / "nowhere.yml"
    bad = tmp_path / "bad.yml"
    bad.write_text("targets: [{name: redis, redis: {port: 70000}}]\n")
    for argv, reason in [
        (
            ("--config", str(nowhere)),
            f"cannot read config file {nowhere}: No such file or directory",
        ),
        (
            ("--config", str(config), "--target", "nosuch"),
            f"--target: no target 'nosuch' in {config} (known: up, down)",
        ),
        (("--config", str(bad)), "targets[0].redis.port: must be 1-65535, got 70000"),
    ]:
        done = _cli("health", *argv)
        assert (done.returncode, done.stdout, done.stderr) == (3, f"REDIS UNKNOWN: {reason}\n", "")
        done = _cli("health", *argv, "--json")
        assert (done.returncode, done.stdout) == (3, "")
        assert done.stderr == f"redis-autoheal: error: {reason}\n"
