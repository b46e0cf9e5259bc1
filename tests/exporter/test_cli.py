"""The real `redis-autoheal exporter` process, scraped over HTTP; its start-up errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value
from tests.support import HANG, free_port, missing, service_argv

SCRIPT = Path(sys.executable).with_name("redis-autoheal")


def _config_file(tmp_path: Path, targets, **extra) -> Path:
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump({"targets": targets, **extra}), encoding="utf-8")
    return path


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait_serving(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + HANG
    while True:
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(f"exited {process.returncode}: {process.stderr.read()}")
        try:
            if _get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the exporter did not serve (a hang)"
        time.sleep(0.05)


@pytest.fixture
def start_exporter():
    processes = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        return process

    yield start
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        assert p.stdout is not None
        assert p.stderr is not None
        p.stdout.close()
        p.stderr.close()


@pytest.mark.parametrize(
    "command", [[str(SCRIPT), "exporter"], [sys.executable, "-m", "exporter"]], ids=["script", "-m"]
)
def test_the_exporter_process_serves_probes_and_stops_on_sigterm(
    tmp_path, redis_server, start_exporter, command
):
    if not SCRIPT.exists():
        missing(f"{SCRIPT} is not installed: run scripts/setup.sh")
    port = free_port()
    config = _config_file(tmp_path, [redis_target("redis", redis_server)])
    process = start_exporter(*command, "--config", str(config), "--listen", f"127.0.0.1:{port}")
    _wait_serving(process, port)

    status, text = _get(f"http://127.0.0.1:{port}/probe?target=redis&module=all")
    assert status == 200
    samples = parse_samples(text)
    assert value(samples, "redis_up") == 1
    assert value(samples, "redis_probe_success", layer="performance") == 1
    status, text = _get(f"http://127.0.0.1:{port}/probe?target=nope&module=all")
    assert (status, text) == (400, "unknown target 'nope': not in the config file\n")
    status, text = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "redis_autoheal_exporter_probes_total" in text
    assert "process_cpu_seconds_total" in text

    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert "listening on 127.0.0.1:" in process.stderr.read()


def test_listen_defaults_to_the_config(tmp_path, redis_server, start_exporter):
    port = free_port()
    config = _config_file(
        tmp_path, [redis_target("redis", redis_server)], exporter={"listen": f"127.0.0.1:{port}"}
    )
    process = start_exporter(sys.executable, "-m", "exporter", "--config", str(config))
    _wait_serving(process, port)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0


def test_a_bad_listen_address_stops_start_up(tmp_path, start_exporter):
    config = _config_file(tmp_path, [redis_target("redis", 1)])
    process = start_exporter(*service_argv("exporter", config, "localhost"))
    assert process.wait(20) == 2
    assert "--listen: must be HOST:PORT, got 'localhost'" in process.stderr.read()


def test_a_port_in_use_stops_start_up(tmp_path, start_exporter):
    """One line naming where the address came from, and no "listening on" before the bind."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        flag = _config_file(tmp_path, [redis_target("redis", 1)])
        (tmp_path / "key").mkdir()
        key = _config_file(
            tmp_path / "key", [redis_target("redis", 1)], exporter={"listen": f"127.0.0.1:{port}"}
        )
        by_flag = start_exporter(
            sys.executable, "-m", "exporter", "--config", str(flag), "--listen", f"127.0.0.1:{port}"
        )
        by_key = start_exporter(sys.executable, "-m", "exporter", "--config", str(key))
        assert (by_flag.wait(HANG), by_key.wait(HANG)) == (1, 1)
    for process, where in ((by_flag, "--listen"), (by_key, "exporter.listen")):
        assert process.stderr.read() == (
            f"redis-autoheal: error: {where}: cannot listen on 127.0.0.1:{port}: "
            "Address already in use\n"
        )


def test_a_bad_config_stops_start_up(tmp_path, start_exporter):
    process = start_exporter(
        sys.executable, "-m", "exporter", "--config", str(tmp_path / "missing.yml")
    )
    assert process.wait(20) == 1
    assert "cannot read config file" in process.stderr.read()
