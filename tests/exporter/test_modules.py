"""What the exporter process loads: no asyncssh without a target that has SSH, never redis-py
or the remediator (each is megabytes held for the process's life, times nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.exporter.redis_servers import redis_target
from tests.support import HANG, free_port

ROOT = Path(__file__).resolve().parents[2]
WATCHED = ("asyncssh", "redis", "remediator")

# The console script's own path (redis_autoheal.cli.main, exporter.cli.run, aiohttp's
# run_app), in a process of its own; a thread probes it once serving, reports which of
# WATCHED are loaded, and stops it as Ctrl-C would.
_PROCESS = """
import json, os, signal, sys, threading, time, urllib.request
from redis_autoheal.cli import main

def probe_then_stop():
    deadline = time.monotonic() + HANG
    while True:
        try:
            with urllib.request.urlopen(URL, timeout=HANG) as answer:
                body = answer.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                os._exit(3)
            time.sleep(0.05)
    loaded = sorted(m for m in WATCHED if m in sys.modules)
    print(json.dumps({"redis_up": "\\nredis_up 1" in body, "loaded": loaded}), flush=True)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=probe_then_stop, daemon=True).start()
sys.exit(main(["exporter", "--config", CONFIG, "--listen", LISTEN, "--log-level", "error"]))
"""


def _loaded(tmp_path: Path, target: dict[str, object]) -> dict[str, object]:
    """Serve `target`, probe it with module=all; whether Redis was up and what was loaded."""
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"targets": [target]}), encoding="utf-8")
    port = free_port()
    settings = {
        "CONFIG": str(config),
        "LISTEN": f"127.0.0.1:{port}",
        "URL": f"http://127.0.0.1:{port}/probe?target=t&module=all",
        "HANG": HANG,
        "WATCHED": WATCHED,
    }
    code = "".join(f"{name} = {value!r}\n" for name, value in settings.items()) + _PROCESS
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2 * HANG,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    result: dict[str, object] = json.loads(ran.stdout)
    return result


def test_without_ssh_targets_the_exporter_loads_no_asyncssh_nor_redis_py(tmp_path, redis_server):
    found = _loaded(tmp_path, redis_target("t", redis_server))
    assert found == {"redis_up": True, "loaded": []}


def test_a_target_with_ssh_loads_asyncssh(tmp_path, redis_server):
    key, known_hosts = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("not read: nothing listens on the SSH port\n")
    key.chmod(0o600)
    known_hosts.write_text("")
    target = redis_target("t", redis_server)
    # The systemd layer fails (refused); Redis's layers answer all the same.
    target["ssh"] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "key_file": str(key),
        "known_hosts": str(known_hosts),
    }
    found = _loaded(tmp_path, target)
    assert found == {"redis_up": True, "loaded": ["asyncssh"]}
