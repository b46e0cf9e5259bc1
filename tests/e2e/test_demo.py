"""`python -m demo` as a user runs it (scripts/demo.sh execs it after setup.sh): it brings the
stack up, kills Redis, prints the recovery's timeline, keeps the stack running with the URLs to
open until Ctrl-C, and then leaves nothing behind: no process, no test host, no files."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.configs import REPO
from testhost.host import TestHost
from tests.e2e.require import require_stack

pytestmark = pytest.mark.root
STARTUP_LIMIT = 180.0  # the stack, the outage and the timeline
STOP_LIMIT = 60.0


def printed_path(pattern: str, out: str) -> Path:
    """The path the demo printed where `pattern`'s group is."""
    match = re.search(pattern, out)
    assert match is not None, f"{pattern!r} not in the demo's output"
    return Path(match[1])


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


def _interrupt(proc) -> None:
    """Ctrl-C, and the demo ended within STOP_LIMIT (killed and failed if not)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


# One timeline line: its stage and its source; the source's times made neutral.
TIMELINE_LINE = re.compile(
    r"^  \S+ +\+[\d.]+(?:\.\.[\d.]+)? s  (\S+) .*\[([^\]]+)\]$", re.MULTILINE
)
# Kinds of line a run prints or not depending on when a scrape or an evaluation falls.
BY_TIMING = {("pending", "Prometheus rule"), ("detected", "Prometheus scrape")}


def timeline_kinds(text: str) -> set[tuple[str, str]]:
    """The (stage, source) of every timeline line in `text`."""
    return {
        (stage, re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", source))
        for stage, source in TIMELINE_LINE.findall(text)
    }


def readme_sample() -> str:
    """The README's sample timeline (the block that starts with its header)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("```\n  time (UTC)")
    return readme[start : readme.index("```\n", start + 4)]


def test_the_readme_sample_reads_as_a_timeline() -> None:
    kinds = timeline_kinds(readme_sample())
    assert ("fault", "demo: injected") in kinds
    assert ("webhook", "Alertmanager log + audit HH:MM:SS") in kinds
    assert len(kinds) >= 8


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
        # The README's sample is this output: every kind of line the one shows, the other does,
        # but for those that depend on when a scrape or an evaluation falls.
        shown, printed = timeline_kinds(readme_sample()), timeline_kinds(out)
        assert shown - BY_TIMING <= printed, out
        assert printed - BY_TIMING <= shown, out

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

        workdir = printed_path(r"files: (\S+)", out)
        hostdir = printed_path(r"fault --dir (\S+) kill9", out)
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
        assert workdir.exists()
        assert hostdir.exists()
        assert len(pids) == 4
        assert all(alive(p) for p in pids)
    finally:
        _interrupt(proc)
    rest = "".join(read_until(lines, "Stopped", 5))
    pumper.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.returncode == 130, rest
    assert f"removed {workdir}" in rest
    assert not workdir.exists()
    assert not hostdir.exists()  # the test host is torn down
    assert not any(alive(p) for p in pids)


def read_fd_until(fd: int, marker: str, limit: float) -> str:
    """What the demo wrote to the pipe `fd` up to the line containing `marker`, bounded."""
    data = b""
    deadline = time.monotonic() + limit
    while marker.encode() not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} within {limit}s:\n{data.decode(errors='replace')}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the demo closed its output before {marker!r}:\n{data.decode()}"
            data += chunk
    text = data.decode()
    while not text.endswith("\n"):  # the rest of the marker's line
        assert select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0], text
        text += os.read(fd, 65536).decode()
    return text


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (a server could bind it now)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is ok
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Footprint:
    """What a running demo has on this machine, from its output and its test host's record."""

    workdir: Path
    hostdir: Path
    groups: frozenset[int]  # the daemons and the host's init each lead a session
    netns: str
    netns_id: tuple[int, int]
    veth: str
    ports: frozenset[int]

    @classmethod
    def of(cls, out: str) -> Footprint:
        hostdir = printed_path(r"fault --dir (\S+) kill9", out)
        host = json.loads((hostdir / "host.json").read_text())
        ns = (Path("/run/netns") / host["netns"]).stat()
        return cls(
            workdir=printed_path(r"files: (\S+)", out),
            hostdir=hostdir,
            groups=frozenset(
                {*(int(p) for p in re.findall(r"\(pid (\d+)\)", out)), host["pids"]["hostinit"]}
            ),
            netns=host["netns"],
            netns_id=(ns.st_dev, ns.st_ino),
            veth=host["veth_root"],
            ports=frozenset(int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)),
        )

    def processes(self) -> dict[int, str]:
        """Every running process of the demo, from /proc: its command line names one of the
        demo's directories, or it is in a group or session the demo started, or in its netns."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                # After "(comm)": state ppid pgrp session ...
                ids = map(int, (entry / "stat").read_text().rsplit(")", 1)[1].split()[2:4])
                net = (entry / "ns" / "net").stat()
            except (OSError, ValueError):
                continue  # gone meanwhile
            if (
                any(str(d) in cmdline for d in (self.workdir, self.hostdir))
                or not self.groups.isdisjoint(ids)
                or (net.st_dev, net.st_ino) == self.netns_id
            ):
                found[int(entry.name)] = cmdline
        return found

    def left(self) -> list[str]:
        """Whatever of the demo is still there."""
        left = [f"process {pid}: {cmd}" for pid, cmd in self.processes().items()]
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout.split()
        if self.netns in listed or (Path("/run/netns") / self.netns).exists():
            left.append(f"network namespace {self.netns}")
        if Path("/sys/class/net", self.veth).exists():
            left.append(f"veth {self.veth}")
        left += [f"127.0.0.1:{p} listening" for p in sorted(self.ports) if not port_free(p)]
        left += [str(d) for d in (self.workdir, self.hostdir) if d.exists()]
        return left

    def remove(self) -> None:
        """After a failed run: kill what the demo left and tear down its test host, for the
        tests that follow (nothing to do when the demo cleaned up, as it must)."""
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        if (self.hostdir / "host.json").exists():
            with contextlib.suppress(Exception):
                TestHost.load(self.hostdir).teardown()
        shutil.rmtree(self.workdir, ignore_errors=True)


def test_ctrl_c_cleans_up_when_the_reader_of_its_output_has_gone(tmp_path: Path) -> None:
    """`bash scripts/demo.sh | tee demo.log`, then Ctrl-C: the terminal's SIGINT ends tee as
    well, so the demo stops with nobody reading its output. It must still stop everything."""
    require_stack()
    read_end, write_end = os.pipe()
    with (tmp_path / "stderr").open("wb") as err:  # stderr stays on the terminal, as with tee
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=err,
        )
    os.close(write_end)
    footprint = None
    try:
        try:
            out = read_fd_until(read_end, "Ctrl-C (or SIGTERM) stops everything", STARTUP_LIMIT)
        finally:
            os.close(read_end)  # tee has gone: every later write of the demo gets EPIPE
        footprint = Footprint.of(out)
        # What the check looks for is there while the demo runs: the four daemons, the host's
        # init, sshd and redis-server (healed: a new pid), the namespace, five listening ports.
        host = TestHost.load(footprint.hostdir)
        running = footprint.processes()
        assert len(footprint.groups) == 5, out
        assert {*footprint.groups, host.sshd_pid(), host.redis_pid()} <= running.keys()
        assert len(footprint.ports) == 5, out
        left = set(footprint.left())
        assert {f"network namespace {footprint.netns}", f"veth {footprint.veth}"} <= left
        assert {f"127.0.0.1:{p} listening" for p in footprint.ports} <= left
        assert {str(footprint.workdir), str(footprint.hostdir)} <= left

        _interrupt(proc)
        assert (proc.returncode, (tmp_path / "stderr").read_text()) == (130, "")
        assert footprint.left() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if footprint is not None:
            footprint.remove()
