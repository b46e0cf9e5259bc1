"""`python -m demo` as a user runs it (scripts/demo.sh execs it after setup.sh): it brings the
stack up, kills Redis, prints the recovery's timeline, keeps the stack running with the URLs to
open until Ctrl-C, and then leaves nothing behind: no process, no test host, no files."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from demo.configs import REPO
from tests.e2e.conftest import require_stack

pytestmark = pytest.mark.root
STARTUP_LIMIT = 180.0  # the stack, the outage and the timeline
STOP_LIMIT = 60.0


def read_until(lines: queue.Queue[str | None], marker: str, limit: float) -> list[str]:
    """Lines of output up to and including the one containing `marker`, bounded in time."""
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"no {marker!r} within {limit}s:\n" + "".join(seen))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_prints_the_recovery_keeps_running_and_cleans_up_on_ctrl_c() -> None:
    require_stack()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,  # not a terminal: it waits for a signal
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        out = "".join(read_until(lines, "Ctrl-C (or SIGTERM) stops everything", STARTUP_LIMIT))
        # The timeline, read from the sources, in the order things happened.
        story = [
            "kill -9",
            "Main process exited, code=killed",
            "firing",
            "delivered to the remediator",
            "systemctl restart redis-server.service (autobot via sudo): exit 0",
            "Ready to accept connections",
            "recovery finished: recovered",
        ]
        positions = [out.find(s) for s in story]
        assert -1 not in positions, out
        assert positions == sorted(positions), out
        assert "Redis ready again" in out

        # The stack still runs: the URLs it printed answer.
        links = dict(
            re.findall(r"^  ([\w ()/-]+):\s+(http://127\.0\.0\.1:\d+\S*)$", out, re.MULTILINE)
        )
        assert {"Prometheus alerts", "Alertmanager", "exporter probe"} <= set(links), out
        for name, url in links.items():
            with urllib.request.urlopen(url, timeout=5) as response:  # loopback URLs
                assert response.status == 200, (name, url)
        with urllib.request.urlopen(links["exporter probe"], timeout=5) as response:
            assert "redis_up 1" in response.read().decode()

        workdir = Path(re.search(r"files: (\S+)", out)[1])
        hostdir = Path(re.search(r"fault --dir (\S+) kill9", out)[1])
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
        assert workdir.exists()
        assert hostdir.exists()
        assert len(pids) == 4
        assert all(alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    rest = "".join(read_until(lines, "Stopped", 5))
    pumper.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.returncode == 130, rest
    assert f"removed {workdir}" in rest
    assert not workdir.exists()
    assert not hostdir.exists()  # the test host is torn down
    assert not any(alive(p) for p in pids)
