"""systemctl and journalctl for a test host: a small model of systemd managing one Redis unit.

The builder copies this file into each test host three times, with the host's state directory
and the tool's name baked in: as /usr/bin/systemctl and /usr/bin/journalctl (bind-mounted inside
the host's private mount namespace, so real sshd and real sudo run them unchanged) and as a
root-only console tool, ``unitctl``, that the harness uses (its calls are not recorded as
invocations). It runs on Debian's /usr/bin/python3 and uses the standard library only.

The unit is modelled on the runbook's VM3: Type=notify-like (active once Redis answers PING),
Restart=no, ExecReload=/bin/kill -HUP $MAINPID, StartLimitIntervalSec=10, StartLimitBurst=5.
A per-start supervisor process (double-forked, playing systemd's part) runs redis-server as its
child, relays its output into the journal and records how it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

BAKED_STATE_DIR = ""
BAKED_TOOL = ""

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_NOT_RUNNING = 3
EXIT_NOPERMISSION = 4
EXIT_STATUS_UNKNOWN = 4
EXIT_NOTINSTALLED = 5

ACTIVE_STATES = ("active", "reloading")
DEAD_STATES = ("inactive", "failed")
CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
EXIT_STATUS_NAMES = {
    0: "SUCCESS",
    1: "FAILURE",
    2: "INVALIDARGUMENT",
    3: "NOTIMPLEMENTED",
    4: "NOPERMISSION",
    5: "NOTINSTALLED",
    6: "NOTCONFIGURED",
    7: "NOTRUNNING",
    203: "EXEC",
}
JOB_EXPLANATIONS = {
    # systemd 252's table (bus-wait-for-jobs.c); "start-limit-hit" is missing from it there,
    # so a start refused by the rate limit prints the generic "Job for X failed." message.
    "resources": "of unavailable resources or another system error",
    "protocol": "the service did not take the steps required by its unit configuration",
    "timeout": "a timeout was exceeded",
    "exit-code": "the control process exited with error code",
    "signal": "a fatal signal was delivered to the control process",
    "core-dump": "a fatal signal was delivered causing the control process to dump core",
    "watchdog": "the service failed to send watchdog ping",
    "start-limit": "start of the service was attempted too often",
}
GLYPHS = {"active": "●", "reloading": "●", "activating": "●", "deactivating": "●"}
GLYPHS |= {"inactive": "○", "failed": "\u00d7"}
SUB_DISPLAY = {"active": "running", "reloading": "reload", "activating": "start"}
SUB_DISPLAY |= {"deactivating": "stop-sigterm", "inactive": "dead", "failed": "failed"}
POLL = 0.01
FOLLOW_POLL = 0.05  # journalctl -f: how often the journal file is checked for new entries


T = TypeVar("T")


class UsageError(Exception):
    """A command line the real tool would refuse; the message is what it prints."""


def parsed(parse: Callable[[Sequence[str]], T | None], argv: Sequence[str]) -> T | int:
    """`parse(argv)`, or the exit code when there is nothing to run: a refused command line
    (its message on stderr) or one that only asked for help."""
    try:
        found = parse(argv)
    except UsageError as exc:
        out(str(exc), err=True)
        return EXIT_FAILURE
    return EXIT_SUCCESS if found is None else found


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where one unit's state lives: the host's state directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "unit.json"

    @property
    def faults(self) -> Path:
        return self.root / "faults.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def lock(self) -> Path:
        return self.root / "state.lock"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def invocations(self) -> Path:
        return self.root / "invocations.jsonl"

    @property
    def queries(self) -> Path:
        return self.root / "queries.jsonl"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"


@dataclasses.dataclass(frozen=True)
class UnitConfig:
    """The unit file, as far as the model needs it (written by the builder as unit.json)."""

    unit: str
    description: str
    fragment_path: str
    documentation: list[str]
    aliases: list[str]
    hostname: str
    exec_start: list[str]
    fail_args: list[str]
    redis_port: int
    redis_password: str | None
    redis_log_copy: str
    timeout_start: float
    timeout_stop: float
    start_limit_interval: float
    start_limit_burst: int

    @property
    def service(self) -> str:
        return f"{self.unit}.service"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.service, *(f"{alias}.service" for alias in self.aliases))

    @classmethod
    def load(cls, path: Path) -> UnitConfig:
        return cls(**json.loads(path.read_text()))


@dataclasses.dataclass(frozen=True)
class Faults:
    """Faults the harness injects into the next starts (faults.json)."""

    slow_start: float = 0.0
    start_fails: bool = False

    @classmethod
    def load(cls, path: Path) -> Faults:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()


@dataclasses.dataclass
class UnitState:
    """The unit's runtime state (state.json), as systemd would keep it in memory."""

    active: str = "inactive"
    result: str = "success"
    main_pid: int = 0
    supervisor_pid: int = 0
    invocation: int = 0
    start_job: str = "done"
    stop_requested: bool = False
    stop_timed_out: bool = False
    start_timed_out: bool = False
    exec_pid: int = 0
    exec_code: str = ""
    exec_status: int = 0
    exec_argv: str = ""
    reload_pid: int = 0
    reload_status: int = -1
    inactive_exit_ts: float = 0.0
    active_enter_ts: float = 0.0
    active_exit_ts: float = 0.0
    inactive_enter_ts: float = 0.0
    limit_begin: float = 0.0
    limit_num: int = 0

    @property
    def sub(self) -> str:
        return SUB_DISPLAY[self.active]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --- small helpers -------------------------------------------------------------------------


def out(text: str, *, err: bool = False) -> None:
    """Write a line to stdout or stderr as UTF-8 (systemd's glyphs), ignoring a closed pipe."""
    stream = sys.stderr if err else sys.stdout
    with contextlib.suppress(BrokenPipeError, OSError):
        stream.buffer.write((text + "\n").encode())
        stream.flush()


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the process name; None if there is no such process."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def pid_alive(pid: int) -> bool:
    """Whether pid names a live (not zombie) process."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


@contextlib.contextmanager
def flocked(path: Path, mode: int, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created with `mode`); TimeoutError after `timeout`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked") from None
                time.sleep(POLL / 2)
        yield
    finally:
        os.close(fd)


def signal_group(pid: int, sig: int) -> None:
    """Signal a process and its process group (systemd's KillMode=control-group, roughly)."""
    for target in (pid, -pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)


def exit_text(code: str, status: int, *, key: str = "status") -> str:
    """'code=exited, status=1/FAILURE' or 'code=killed, signal=KILL' as systemd prints them."""
    if code == "exited":
        name = EXIT_STATUS_NAMES.get(status)
        return f"code=exited, status={status}/{name}" if name else f"code=exited, status={status}"
    signame = signal.Signals(status).name.removeprefix("SIG")
    if key == "signal":
        return f"code={code}, signal={signame}"
    return f"code={code}, status={status}/{signame}"


def format_timespan(seconds: float) -> str:
    """A duration the way systemd prints CPU time, to the millisecond."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}min {secs}" if minutes else secs


def format_relative(delta: float) -> str:
    """systemd's format_timestamp_relative()."""
    s = int(delta)
    table: list[tuple[int, Callable[[int], str]]] = [
        (2 * 86400, lambda v: f"{v // 86400} days ago"),
        (25 * 3600, lambda v: f"1 day {(v - 86400) // 3600}h ago"),
        (6 * 3600, lambda v: f"{v // 3600}h ago"),
        (3600, lambda v: f"{v // 3600}h {v % 3600 // 60}min ago"),
        (300, lambda v: f"{v // 60}min ago"),
        (60, lambda v: f"{v // 60}min {v % 60}s ago"),
        (1, lambda v: f"{v}s ago"),
    ]
    for limit, render in table:
        if s >= limit:
            return render(s)
    ms = int(delta * 1000)
    return f"{ms}ms ago" if ms > 0 else "now"


def format_since(ts: float, now: float) -> str:
    """' since Tue 2025-11-25 22:30:01 UTC; 5s ago' or '' when the timestamp is unset."""
    if ts <= 0:
        return ""
    stamp = time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(ts))
    return f" since {stamp}; {format_relative(max(0.0, now - ts))}"


def format_bytes(n: int) -> str:
    """systemd's format_bytes(): 1024-based, one decimal."""
    for suffix, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor:
            return f"{n // factor}.{n * 10 // factor % 10}{suffix}"
    return f"{n}B"


def mangle(name: str) -> str:
    """systemctl's unit name mangling: a name without a unit suffix gets '.service'."""
    suffixes = (".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope")
    return name if name.endswith(suffixes) else f"{name}.service"


# --- the unit ------------------------------------------------------------------------------


class Unit:
    """One systemd unit: its config, state file, journal and invocation log."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.cfg = UnitConfig.load(paths.config)

    # state ---------------------------------------------------------------------------------

    def read(self) -> UnitState:
        try:
            return UnitState.from_json(json.loads(self.paths.state.read_text()))
        except FileNotFoundError:
            return UnitState()

    def save(self, st: UnitState) -> None:
        """Write the state atomically; the caller holds the lock."""
        tmp = self.paths.root / f".state.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(st)))
        tmp.chmod(0o644)
        tmp.replace(self.paths.state)

    def locked(self, timeout: float = 10.0) -> contextlib.AbstractContextManager[None]:
        return flocked(self.paths.lock, 0o600, timeout)

    @contextlib.contextmanager
    def updating(self) -> Iterator[UnitState]:
        with self.locked():
            st = self.read()
            yield st
            self.save(st)

    def wait(self, done: Callable[[UnitState], bool], timeout: float) -> UnitState:
        deadline = time.monotonic() + timeout
        st = self.read()
        while not done(st) and time.monotonic() < deadline:
            time.sleep(POLL)
            st = self.read()
        return st

    # journal -------------------------------------------------------------------------------

    def log(self, msg: str, *, ident: str = "systemd", pid: int = 1, prio: int = 6) -> None:
        entry = {"ts": time.time(), "host": self.cfg.hostname, "ident": ident, "pid": pid}
        entry |= {"prio": prio, "unit": self.cfg.service, "msg": msg}
        data = (json.dumps(entry) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.paths.journal, flags, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def ulog(self, msg: str, prio: int = 6) -> None:
        self.log(f"{self.cfg.service}: {msg}", prio=prio)

    def journal(self) -> list[dict[str, Any]]:
        try:
            text = self.paths.journal.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    @property
    def what(self) -> str:
        return f"{self.cfg.service} - {self.cfg.description}"

    # invocations ---------------------------------------------------------------------------

    def record(self, entry: dict[str, Any], *, log: Path | None = None) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(log or self.paths.invocations, flags, 0o644)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)

    # start ---------------------------------------------------------------------------------

    def ratelimit_below(self, st: UnitState) -> bool:
        """systemd's ratelimit_below(): a fixed window opened by the first start in it."""
        interval, burst = self.cfg.start_limit_interval, self.cfg.start_limit_burst
        if interval <= 0 or burst <= 0:
            return True
        now = time.monotonic()
        if st.limit_begin <= 0 or now - st.limit_begin > interval:
            st.limit_begin, st.limit_num = now, 1
            return True
        st.limit_num += 1
        return st.limit_num <= burst

    def begin_start(self, st: UnitState, *, count: bool) -> bool:
        """Move a dead unit to activating (under the lock); False when the start limit refuses."""
        now = time.time()
        if count and not self.ratelimit_below(st):
            if st.active != "failed":
                st.inactive_enter_ts = now
            st.active, st.result = "failed", "start-limit-hit"
            self.ulog("Start request repeated too quickly.", prio=4)
            self.ulog("Failed with result 'start-limit-hit'.", prio=4)
            self.log(f"Failed to start {self.what}.", prio=3)
            return False
        st.invocation += 1
        st.active, st.result, st.start_job = "activating", "success", ""
        st.stop_requested = st.stop_timed_out = st.start_timed_out = False
        st.main_pid = st.supervisor_pid = st.exec_pid = st.reload_pid = 0
        st.exec_code, st.exec_status, st.reload_status = "", 0, -1
        st.inactive_exit_ts = now
        self.log(f"Starting {self.what}...")
        return True

    def spawn_supervisor(self, invocation: int) -> None:
        """Double-fork the supervisor for this invocation (it outlives this command)."""
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            return
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            daemonize()
            Supervisor(self, invocation).run()
        except BaseException:  # noqa: BLE001 - the daemon must report, never unwind
            with contextlib.suppress(OSError), self.paths.supervisor_log.open("a") as f:
                f.write(traceback.format_exc())
        finally:
            os._exit(0)

    # stop ----------------------------------------------------------------------------------

    def request_stop(self, st: UnitState) -> None:
        """Move a live unit to deactivating and send SIGTERM+SIGCONT (under the lock)."""
        if st.active == "activating":
            st.start_job = "canceled"
        st.stop_requested = True
        st.active = "deactivating"
        st.active_exit_ts = time.time()
        self.log(f"Stopping {self.what}...")
        if st.main_pid:
            signal_group(st.main_pid, signal.SIGTERM)
            signal_group(st.main_pid, signal.SIGCONT)

    def wait_stopped(self) -> UnitState:
        """Wait for the supervisor to see the process go; SIGKILL after TimeoutStopSec."""
        st = self.wait(self._settled, self.cfg.timeout_stop)
        if st.active in DEAD_STATES:
            return st
        with self.updating() as cur:
            cur.stop_timed_out = True
            self.ulog("State 'stop-sigterm' timed out. Killing.", prio=4)
            if cur.main_pid:
                self.ulog(f"Killing process {cur.main_pid} (redis-server) with signal SIGKILL.")
                signal_group(cur.main_pid, signal.SIGKILL)
        return self.wait(self._settled, 10.0)

    def _settled(self, st: UnitState) -> bool:
        if st.active in DEAD_STATES:
            return True
        if st.active in ("activating", "deactivating") and not self._supervised(st):
            with self.updating() as cur:  # the supervisor is gone: nobody else will finish this
                if cur.active in ("activating", "deactivating") and not self._supervised(cur):
                    cur.active, cur.main_pid = "failed", 0
                    cur.result, cur.start_job = "resources", "failed"
                    cur.inactive_enter_ts = time.time()
            return True
        return False

    def _supervised(self, st: UnitState) -> bool:
        if st.supervisor_pid:
            return pid_alive(st.supervisor_pid)
        return time.time() - max(st.inactive_exit_ts, st.active_exit_ts) < 5.0


def daemonize() -> None:
    """Detach a forked child from the caller's session, terminal and file descriptors."""
    os.chdir("/")
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 65536)


# --- the supervisor (systemd's part) --------------------------------------------------------


class Supervisor:
    """Runs redis-server for one invocation of the unit and records how it ends."""

    def __init__(self, unit: Unit, invocation: int) -> None:
        self.unit = unit
        self.cfg = unit.cfg
        self.invocation = invocation
        self.pid = 0
        self.buffer = b""
        self.ready = False
        self.deadline = time.monotonic() + self.cfg.timeout_start
        self.kill_deadline = 0.0

    def run(self) -> None:
        with self.unit.updating() as st:
            if st.invocation != self.invocation:
                return
            st.supervisor_pid = os.getpid()
        faults = Faults.load(self.unit.paths.faults)
        if faults.slow_start > 0 and not self.delay(faults.slow_start):
            return
        argv = self.cfg.exec_start + (self.cfg.fail_args if faults.start_fails else [])
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )
        self.pid = proc.pid
        with self.unit.updating() as st:
            st.main_pid = st.exec_pid = proc.pid
            st.exec_argv = " ".join(argv)
        assert proc.stdout is not None
        self.watch(proc.stdout.fileno())

    def delay(self, seconds: float) -> bool:
        """Stay activating before Redis starts (slow_start); False if stopped or timed out."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            st = self.unit.read()
            if st.invocation != self.invocation or st.stop_requested:
                self.finish_without_process("stopped")
                return False
            if time.monotonic() > self.deadline:
                self.finish_without_process("timeout")
                return False
            time.sleep(0.02)
        return True

    def finish_without_process(self, why: str) -> None:
        with self.unit.updating() as st:
            if st.invocation != self.invocation:
                return
            st.supervisor_pid = 0
            st.inactive_enter_ts = time.time()
            if why == "stopped":
                st.active, st.result = "inactive", "success"
                self.unit.log(f"Stopped {self.unit.what}.")
                return
            self.unit.ulog("start operation timed out. Terminating.", prio=4)
            self.unit.ulog("Failed with result 'timeout'.", prio=4)
            self.unit.log(f"Failed to start {self.unit.what}.", prio=3)
            st.active, st.result, st.start_job = "failed", "timeout", "failed"

    def watch(self, out_fd: int) -> None:
        """Relay output, detect readiness, enforce TimeoutStartSec, wait for the process."""
        pidfd = os.pidfd_open(self.pid)
        os.set_blocking(out_fd, False)
        fds = [out_fd, pidfd]
        while True:
            timeout = 0.05 if not self.ready else 1.0
            readable, _, _ = select.select(fds, [], [], timeout)
            if out_fd in readable and not self.relay(out_fd):
                fds.remove(out_fd)
            if pidfd in readable:
                break
            if not self.ready:
                self.check_start(out_fd if out_fd in fds else None)
        self.drain(out_fd if out_fd in fds else None)
        self.flush_partial()
        _, status, usage = os.wait4(self.pid, 0)
        self.finish(status, usage.ru_utime + usage.ru_stime)

    def relay(self, fd: int) -> bool:
        """Journal what redis-server wrote; False at end of file."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.take(data)
        return True

    def take(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for raw in lines:
            self.emit(raw.decode(errors="replace"))

    def drain(self, fd: int | None) -> None:
        """Journal everything redis-server has written so far (it may still be writing)."""
        if fd is None:
            return
        with contextlib.suppress(OSError):
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return
                if not data:
                    return
                self.take(data)

    def flush_partial(self) -> None:
        if self.buffer:
            self.emit(self.buffer.decode(errors="replace"))
            self.buffer = b""

    def emit(self, line: str) -> None:
        prio = {"#": 4, "*": 5, "-": 6, ".": 7}
        match = re.match(r"^\d+:[A-Z] .*? ([#*.-]) ", line)
        self.unit.log(line, ident="redis-server", pid=self.pid, prio=prio[match[1]] if match else 6)
        with contextlib.suppress(OSError), Path(self.cfg.redis_log_copy).open("a") as f:
            f.write(line + "\n")

    def check_start(self, out_fd: int | None) -> None:
        if ping("127.0.0.1", self.cfg.redis_port, 0.2, self.cfg.redis_password) is not False:
            self.drain(out_fd)  # "Ready to accept connections" comes before "Started"
            self.mark_active()
            return
        now = time.monotonic()
        if now > self.deadline and not self.kill_deadline:
            self.kill_deadline = now + self.cfg.timeout_stop
            with self.unit.updating() as st:
                st.start_timed_out = True
            self.unit.ulog("start operation timed out. Terminating.", prio=4)
            signal_group(self.pid, signal.SIGTERM)
        elif self.kill_deadline and now > self.kill_deadline:
            signal_group(self.pid, signal.SIGKILL)

    def mark_active(self) -> None:
        self.ready = True
        with self.unit.updating() as st:
            if st.invocation != self.invocation or st.active != "activating":
                return
            st.active, st.start_job = "active", "done"
            st.active_enter_ts = time.time()
            self.unit.log(f"Started {self.unit.what}.")

    def finish(self, status: int, cpu: float) -> None:
        """Record how the main process ended, as systemd's service_sigchld_event() would."""
        if os.WIFEXITED(status):
            code, value = "exited", os.WEXITSTATUS(status)
            clean = value == 0
        else:
            value = os.WTERMSIG(status)
            code = "dumped" if os.WCOREDUMP(status) else "killed"
            clean = value in CLEAN_SIGNALS
        with self.unit.updating() as st:
            if st.invocation != self.invocation:
                return
            st.exec_code, st.exec_status = code, value
            st.main_pid = st.supervisor_pid = 0
            result = self.outcome(st, code=code, clean=clean)
            self.log_end(st, code, value, result, cpu)
            if st.active == "activating" or st.start_job == "":
                st.start_job = "failed"
            st.active = "inactive" if result == "success" else "failed"
            st.result = result
            st.inactive_enter_ts = time.time()

    @staticmethod
    def outcome(st: UnitState, *, code: str, clean: bool) -> str:
        if st.stop_timed_out or (st.start_timed_out and st.active == "activating"):
            return "timeout"
        if clean:
            return "protocol" if st.active == "activating" else "success"
        return {"exited": "exit-code", "killed": "signal", "dumped": "core-dump"}[code]

    def log_end(self, st: UnitState, code: str, value: int, result: str, cpu: float) -> None:
        unit = self.unit
        if result == "success":
            unit.ulog("Deactivated successfully.")
        else:
            if result != "protocol":
                unit.ulog(f"Main process exited, {exit_text(code, value)}", prio=5)
            unit.ulog(f"Failed with result '{result}'.", prio=4)
        if st.stop_requested:
            unit.log(f"Stopped {unit.what}.")
        elif st.active == "activating":
            unit.log(f"Failed to start {unit.what}.", prio=3)
        unit.ulog(f"Consumed {format_timespan(cpu)} CPU time.")


def ping(host: str, port: int, timeout: float, password: str | None = None) -> bool | None:
    """PING Redis: True on PONG, None if it answers but wants AUTH, False if it does not answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password is not None:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(256)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(256)
    except OSError:
        return False
    if reply.startswith(b"+PONG"):
        return True
    return None if reply.startswith(b"-NOAUTH") else False


# --- command line parsing (getopt_long's behaviour and messages) ----------------------------

NONE, REQUIRED, OPTIONAL = "none", "required", "optional"


@dataclasses.dataclass
class OptSpec:
    """The options one tool accepts."""

    prog: str
    short: dict[str, str]
    long: dict[str, str]
    peek: Callable[[str, str], bool] = lambda _name, _arg: False


def parse_args(
    spec: OptSpec, argv: Sequence[str]
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split argv into (option, value) pairs and positional arguments, like getopt_long."""
    opts: list[tuple[str, str | None]] = []
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg.startswith("--"):
            i = _parse_long(spec, arg[2:], argv, i, opts)
        elif arg.startswith("-") and arg != "-":
            i = _parse_short(spec, arg[1:], argv, i, opts)
        else:
            args.append(arg)
    return opts, args


def _parse_long(
    spec: OptSpec, body: str, argv: Sequence[str], i: int, opts: list[tuple[str, str | None]]
) -> int:
    name, eq, attached = body.partition("=")
    kind = spec.long.get(name)
    if kind is None:
        raise UsageError(f"{spec.prog}: unrecognized option '--{name}'")
    if kind == NONE and eq:
        raise UsageError(f"{spec.prog}: option '--{name}' doesn't allow an argument")
    value: str | None = attached if eq else None
    if kind == REQUIRED and not eq:
        if i >= len(argv):
            raise UsageError(f"{spec.prog}: option '--{name}' requires an argument")
        value, i = argv[i], i + 1
    elif kind == OPTIONAL and not eq and i < len(argv) and spec.peek(name, argv[i]):
        value, i = argv[i], i + 1
    opts.append((name, value))
    return i


def _parse_short(
    spec: OptSpec, cluster: str, argv: Sequence[str], i: int, opts: list[tuple[str, str | None]]
) -> int:
    for pos, char in enumerate(cluster):
        name = spec.short.get(char)
        if name is None:
            raise UsageError(f"{spec.prog}: invalid option -- '{char}'")
        kind = spec.long[name]
        rest = cluster[pos + 1 :]
        if kind == NONE:
            opts.append((name, None))
            continue
        if rest:
            opts.append((name, rest))
        elif kind == REQUIRED:
            if i >= len(argv):
                raise UsageError(f"{spec.prog}: option requires an argument -- '{char}'")
            opts.append((name, argv[i]))
            i += 1
        elif i < len(argv) and spec.peek(name, argv[i]):
            opts.append((name, argv[i]))
            i += 1
        else:
            opts.append((name, None))
        break
    return i


# --- systemctl ------------------------------------------------------------------------------

SYSTEMCTL = OptSpec(
    prog="systemctl",
    short={"q": "quiet", "l": "full", "n": "lines", "a": "all", "h": "help", "o": "output"},
    long={
        "quiet": NONE,
        "no-pager": NONE,
        "full": NONE,
        "lines": REQUIRED,
        "no-block": NONE,
        "no-ask-password": NONE,
        "system": NONE,
        "all": NONE,
        "no-legend": NONE,
        "help": NONE,
        "version": NONE,
        "output": REQUIRED,
    },
)
CONTROL_VERBS = ("start", "stop", "restart", "reload", "reset-failed")
KNOWN_VERBS = {
    *("list-units", "list-unit-files", "enable", "disable", "mask", "unmask", "daemon-reload"),
    *("show", "cat", "kill", "is-enabled", "edit", "try-restart", "reload-or-restart", "isolate"),
}


@dataclasses.dataclass
class Ctl:
    """One systemctl (or unitctl) command line, parsed."""

    verb: str
    names: list[str]
    quiet: bool = False
    lines: int = 10
    no_block: bool = False
    record: bool = True
    count_limit: bool = True


def systemctl_main(paths: Paths, argv: Sequence[str], *, record: bool = True) -> int:
    """systemctl VERB [UNIT...] with systemd 252's output and exit codes."""
    ctl = parsed(parse_systemctl, argv)
    if isinstance(ctl, int):
        return ctl
    ctl.record = record
    unit = Unit(paths)
    if ctl.verb in ("is-active", "is-failed"):
        return cmd_is(unit, ctl)
    if ctl.verb == "status":
        return cmd_status(unit, ctl)
    return cmd_control(unit, ctl, list(argv))


def parse_systemctl(argv: Sequence[str]) -> Ctl | None:
    opts, args = parse_args(SYSTEMCTL, argv)
    if print_info({name for name, _ in opts}, "systemctl [OPTIONS...] COMMAND ..."):
        return None
    if not args:
        raise UsageError("systemctl (test host stand-in): listing units is not supported")
    verb, units = args[0], args[1:]
    if verb in KNOWN_VERBS:
        raise UsageError(f"systemctl (test host stand-in): '{verb}' is not supported")
    if verb not in (*CONTROL_VERBS, "is-active", "is-failed", "status"):
        raise UsageError(f"Unknown command verb '{verb}'.")
    if not units and verb == "status":
        raise UsageError("systemctl (test host stand-in): system status is not supported")
    if not units:
        raise UsageError("Too few arguments.")
    return apply_systemctl_options(Ctl(verb=verb, names=units), opts)


def print_info(options: set[str], usage: str) -> bool:
    """--version / --help: print and report that nothing else is to be done."""
    if "version" in options:
        out("systemd 252 (252-testhost)")
    elif "help" in options:
        out(f"{usage}  (redis-autoheal test host stand-in)")
    return bool(options & {"version", "help"})


def apply_systemctl_options(ctl: Ctl, opts: list[tuple[str, str | None]]) -> Ctl:
    for name, value in opts:
        ctl.quiet |= name == "quiet"
        ctl.no_block |= name == "no-block"
        if name == "lines":
            if value is None or not value.isdigit():
                raise UsageError(f"Failed to parse lines '{value}'")
            ctl.lines = int(value)
    return ctl


def resolve(unit: Unit, name: str) -> str | None:
    """The unit's canonical name if name refers to it (or an alias), else None."""
    return unit.cfg.service if mangle(name) in unit.cfg.names else None


def cmd_is(unit: Unit, ctl: Ctl) -> int:
    """is-active / is-failed (systemd 252: unknown units print 'inactive', exit 3)."""
    good = ACTIVE_STATES if ctl.verb == "is-active" else ("failed",)
    ok = False
    for name in ctl.names:
        state = unit.read().active if resolve(unit, name) else "inactive"
        if ctl.record:  # what a caller saw, and when: the harness's "when was it decided"
            entry = {"ts": time.time(), "verb": ctl.verb, "unit": mangle(name), "state": state}
            entry |= {"uid": os.getuid(), "user": os.environ.get("USER")}
            with contextlib.suppress(OSError):
                unit.record(entry, log=unit.paths.queries)
        if not ctl.quiet:
            out(state)
        ok |= state in good
    return EXIT_SUCCESS if ok else (EXIT_NOT_RUNNING if ctl.verb == "is-active" else EXIT_FAILURE)


def cmd_status(unit: Unit, ctl: Ctl) -> int:
    rc = EXIT_SUCCESS
    first = True
    for name in ctl.names:
        if resolve(unit, name) is None:
            out(f"Unit {mangle(name)} could not be found.", err=True)
            rc = rc or EXIT_STATUS_UNKNOWN
            continue
        if not first:
            out("")
        first = False
        st = unit.read()
        out(render_status(unit, st, time.time(), ctl.lines))
        if st.active not in ACTIVE_STATES:
            rc = rc or EXIT_NOT_RUNNING
    return rc


def render_status(unit: Unit, st: UnitState, now: float, lines: int) -> str:
    """The status block of `systemctl status redis-server` on systemd 252."""
    cfg = unit.cfg
    state = st.active
    shown = state if state == "failed" else f"{state} ({st.sub})"
    result = f" (Result: {st.result})" if st.result != "success" else ""
    ts = {
        "active": st.active_enter_ts,
        "reloading": st.active_enter_ts,
        "activating": st.inactive_exit_ts,
        "deactivating": st.active_exit_ts,
    }.get(state, st.inactive_enter_ts)
    out_lines = [
        f"{GLYPHS[state]} {cfg.service} - {cfg.description}",
        f"     Loaded: loaded ({cfg.fragment_path}; enabled; preset: enabled)",
        f"     Active: {shown}{result}{format_since(ts, now)}",
    ]
    for i, doc in enumerate(cfg.documentation):
        out_lines.append(f"   {'Docs:' if i == 0 else '':>9} {doc}")
    if st.reload_pid and st.reload_status >= 0:
        detail = exit_text("exited", st.reload_status)
        out_lines.append(
            f"    Process: {st.reload_pid} ExecReload=/bin/kill -HUP $MAINPID ({detail})"
        )
    if st.exec_code:
        detail = exit_text(st.exec_code, st.exec_status, key="signal")
        out_lines.append(f"    Process: {st.exec_pid} ExecStart={st.exec_argv} ({detail})")
        out_lines.append(f"   Main PID: {st.exec_pid} ({detail})")
    elif st.main_pid:
        out_lines.extend(process_lines(st.main_pid, cfg.service))
    if lines > 0:
        out_lines.extend(status_journal(unit, lines))
    return "\n".join(out_lines)


def process_lines(pid: int, service: str) -> list[str]:
    """Main PID, Tasks, Memory, CPU and CGroup lines for a running main process."""
    proc = Path(f"/proc/{pid}")
    try:
        comm = (proc / "comm").read_text().strip()
        tasks = len(list((proc / "task").iterdir()))
        status = (proc / "status").read_text()
        stat = (proc / "stat").read_text().rpartition(")")[2].split()
        cmdline = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return [f"   Main PID: {pid}"]
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    words = [w.decode(errors="replace") for w in cmdline]
    command = " ".join(f'"{w}"' if " " in w else w for w in words)
    result = [f"   Main PID: {pid} ({comm})", f"      Tasks: {tasks}"]
    if rss:
        result.append(f"     Memory: {format_bytes(int(rss[1]) * 1024)}")
    result += [f"        CPU: {format_timespan(cpu)}", f"     CGroup: /system.slice/{service}"]
    result.append(f"             └─{pid} {command}")
    return result


def status_journal(unit: Unit, lines: int) -> list[str]:
    if os.getuid() != 0:
        return ["", "Warning: some journal files were not opened due to insufficient permissions."]
    entries = unit.journal()[-lines:]
    return ["", *(format_entry(e, "short") for e in entries)] if entries else []


def cmd_control(unit: Unit, ctl: Ctl, argv: list[str]) -> int:
    """start / stop / restart / reload / reset-failed, one unit after another."""
    if os.getuid() != 0:
        for name in ctl.names:
            what = "reset failed state of unit" if ctl.verb == "reset-failed" else ctl.verb
            out(f"Failed to {what} {mangle(name)}: Access denied", err=True)
            out(f"See system logs and 'systemctl status {mangle(name)}' for details.", err=True)
        return EXIT_NOPERMISSION
    rc = EXIT_SUCCESS
    for name in ctl.names:
        begin = {"id": uuid.uuid4().hex, "event": "begin", "ts": time.time()}
        begin |= {"mono": time.monotonic(), "verb": ctl.verb, "unit": mangle(name)}
        begin |= {"uid": os.getuid(), "sudo_user": os.environ.get("SUDO_USER"), "argv": argv}
        if ctl.record:
            unit.record(begin)
        code, result, message = run_job(unit, ctl, name)
        if ctl.record:
            end = {"id": begin["id"], "event": "end", "ts": time.time(), "exit_code": code}
            unit.record(end | {"result": result})
        if message:
            out(message, err=True)
        rc = rc or code
    return rc


def run_job(unit: Unit, ctl: Ctl, name: str) -> tuple[int, str, str]:
    """Run one job; returns (exit code, job result, message for stderr)."""
    service = resolve(unit, name)
    if service is None:
        what = "reset failed state of unit" if ctl.verb == "reset-failed" else ctl.verb
        missing = "not loaded" if ctl.verb in ("stop", "reset-failed") else "not found"
        msg = f"Failed to {what} {mangle(name)}: Unit {mangle(name)} {missing}."
        return EXIT_NOTINSTALLED, "not-found", msg
    jobs: dict[str, Callable[[Unit, Ctl], tuple[int, str, str]]] = {
        "start": job_start,
        "stop": job_stop,
        "restart": job_restart,
        "reload": job_reload,
        "reset-failed": job_reset_failed,
    }
    return jobs[ctl.verb](unit, ctl)


def job_failed(unit: Unit, result: str) -> str:
    service = unit.cfg.service
    why = JOB_EXPLANATIONS.get(result)
    head = f"Job for {service} failed because {why}." if why else f"Job for {service} failed."
    return f'{head}\nSee "systemctl status {service}" and "journalctl -xeu {service}" for details.'


def job_start(unit: Unit, ctl: Ctl) -> tuple[int, str, str]:
    """A start job: no-op if active, joins a start in progress, waits for a stop in progress."""
    deadline = time.monotonic() + unit.cfg.timeout_stop + 10
    while True:
        with unit.locked():
            st = unit.read()
            if st.active in ACTIVE_STATES:
                return EXIT_SUCCESS, "noop", ""
            if st.active == "activating":
                invocation = st.invocation
                break
            if st.active in DEAD_STATES:
                started = unit.begin_start(st, count=ctl.count_limit)
                unit.save(st)
                if not started:
                    return EXIT_FAILURE, "start-limit-hit", job_failed(unit, st.result)
                invocation = st.invocation
                unit.spawn_supervisor(invocation)
                break
        if time.monotonic() > deadline:
            return EXIT_FAILURE, "timeout", f"Job for {unit.cfg.service} timed out."
        unit.wait(unit._settled, 1.0)  # noqa: SLF001 - same module
    if ctl.no_block:
        return EXIT_SUCCESS, "queued", ""
    return wait_start_job(unit, invocation)


def wait_start_job(unit: Unit, invocation: int) -> tuple[int, str, str]:
    timeout = unit.cfg.timeout_start + unit.cfg.timeout_stop + 10

    def finished(st: UnitState) -> bool:
        return st.invocation != invocation or st.start_job != "" or unit._settled(st)  # noqa: SLF001

    st = unit.wait(finished, timeout)
    if st.invocation == invocation and st.start_job == "done":
        return EXIT_SUCCESS, "done", ""
    if st.start_job == "canceled":
        return EXIT_FAILURE, "canceled", f"Job for {unit.cfg.service} canceled."
    if st.invocation == invocation and st.start_job == "":
        return EXIT_FAILURE, "timeout", f"Job for {unit.cfg.service} timed out."
    return EXIT_FAILURE, "failed", job_failed(unit, st.result)


def job_stop(unit: Unit, _ctl: Ctl) -> tuple[int, str, str]:
    with unit.updating() as st:
        if st.active in DEAD_STATES:
            return EXIT_SUCCESS, "noop", ""
        if st.active != "deactivating":
            unit.request_stop(st)
    unit.wait_stopped()
    return EXIT_SUCCESS, "done", ""


def job_restart(unit: Unit, ctl: Ctl) -> tuple[int, str, str]:
    if unit.read().active not in DEAD_STATES:
        job_stop(unit, ctl)
    return job_start(unit, ctl)


def job_reload(unit: Unit, _ctl: Ctl) -> tuple[int, str, str]:
    """ExecReload=/bin/kill -HUP $MAINPID (Redis ignores SIGHUP: a reload never un-hangs it)."""
    with unit.updating() as st:
        if st.active not in ACTIVE_STATES:
            return EXIT_FAILURE, "invalid", f"{unit.cfg.service} is not active, cannot reload."
        st.active = "reloading"
        main_pid = st.main_pid
        unit.log(f"Reloading {unit.what}...")
    control_pid, status = send_reload(main_pid)
    with unit.updating() as st:
        st.reload_pid, st.reload_status = control_pid, status
        if st.active == "reloading":
            st.active = "active"
        if status == 0:
            unit.log(f"Reloaded {unit.what}.")
            return EXIT_SUCCESS, "done", ""
        unit.ulog(f"Control process exited, {exit_text('exited', status)}", prio=5)
        unit.log(f"Reload failed for {unit.what}.", prio=3)
    return EXIT_FAILURE, "failed", job_failed(unit, "success")


def send_reload(main_pid: int) -> tuple[int, int]:
    """Run ExecReload=/bin/kill -HUP $MAINPID; returns (control process pid, exit status)."""
    if Path("/bin/kill").exists():
        kill = subprocess.Popen(["/bin/kill", "-HUP", str(main_pid)], stderr=subprocess.DEVNULL)
        return kill.pid, kill.wait(timeout=10)
    try:  # no procps: do what /bin/kill would
        os.kill(main_pid, signal.SIGHUP)
    except OSError:
        return os.getpid(), 1
    return os.getpid(), 0


def job_reset_failed(unit: Unit, _ctl: Ctl) -> tuple[int, str, str]:
    with unit.updating() as st:
        st.limit_begin, st.limit_num = 0.0, 0
        if st.active == "failed":
            st.active, st.result = "inactive", "success"
    return EXIT_SUCCESS, "done", ""


# --- journalctl -----------------------------------------------------------------------------


def _peek_journal(name: str, arg: str) -> bool:
    if name == "lines":
        return arg == "all" or arg.removeprefix("+").isdigit()
    return name == "boot" and (re.fullmatch(r"-?\d+|[0-9a-f]{32}", arg) is not None)


JOURNALCTL = OptSpec(
    prog="journalctl",
    short={"u": "unit", "n": "lines", "q": "quiet", "x": "catalog", "e": "pager-end"}
    | {"p": "priority", "o": "output", "b": "boot", "a": "all", "l": "full", "r": "reverse"}
    | {"f": "follow", "g": "grep", "k": "dmesg", "S": "since", "U": "until", "h": "help"},
    long={
        "unit": REQUIRED,
        "lines": OPTIONAL,
        "no-pager": NONE,
        "quiet": NONE,
        "catalog": NONE,
        "pager-end": NONE,
        "priority": REQUIRED,
        "output": REQUIRED,
        "boot": OPTIONAL,
        "all": NONE,
        "full": NONE,
        "reverse": NONE,
        "follow": NONE,
        "grep": REQUIRED,
        "dmesg": NONE,
        "since": REQUIRED,
        "until": REQUIRED,
        "no-hostname": NONE,
        "utc": NONE,
        "help": NONE,
        "version": NONE,
    },
    peek=_peek_journal,
)
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
OUTPUTS = ("short", "short-iso", "short-precise", "cat", "json")


@dataclasses.dataclass
class JournalQuery:
    """What a journalctl command line asks for."""

    units: list[str] = dataclasses.field(default_factory=list)
    lines: int | None = None
    quiet: bool = False
    pager_end: bool = False
    priority: int = 7
    output: str = "short"
    reverse: bool = False
    grep: str | None = None
    no_hostname: bool = False
    follow: bool = False
    matches: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def journalctl_main(paths: Paths, argv: Sequence[str]) -> int:
    """journalctl [-u UNIT] [-n N] ... over the unit's journal, as systemd 252 prints it."""
    query = parsed(parse_journalctl, argv)
    if isinstance(query, int):
        return query
    if os.getuid() != 0:
        if not query.quiet:
            out(
                "Hint: You are currently not seeing messages from other users and the system.",
                err=True,
            )
            out("      Users in groups 'adm', 'systemd-journal' can see all messages.", err=True)
            out("      Pass -q to turn off this notice.", err=True)
        out("No journal files were opened due to insufficient permissions.", err=True)
        return EXIT_FAILURE
    if query.follow:
        return follow_journal(paths, query)
    entries = select_entries(Unit(paths).journal(), query)
    if not entries:
        if not query.quiet:
            out("-- No entries --")
        return EXIT_SUCCESS
    out("\n".join(format_entry(e, query.output, no_hostname=query.no_hostname) for e in entries))
    return EXIT_SUCCESS


def parse_journalctl(argv: Sequence[str]) -> JournalQuery | None:
    opts, args = parse_args(JOURNALCTL, argv)
    if print_info({name for name, _ in opts}, "journalctl [OPTIONS...] [MATCHES...]"):
        return None
    query = JournalQuery()
    for name, value in opts:
        apply_journal_option(query, name, value)
    for arg in args:
        query.matches.append(parse_match(arg))
    if query.pager_end and query.lines is None:
        query.lines = 1000
    if query.follow:
        if query.reverse:
            raise UsageError("Please specify either --reverse or --follow, not both.")
        if query.lines is None and not any(name == "lines" for name, _ in opts):
            query.lines = 10  # -f alone shows the last 10 entries, as -n does
    return query


def follow_journal(paths: Paths, query: JournalQuery) -> int:
    """journalctl -f: the last entries, then each new one as it is written, until stdout closes.

    Like systemd's journalctl (v240 on) it exits when the reader of its output goes away
    (POLLHUP/POLLERR on stdout), not only at its next write: under sudo, the SSH client's
    KILL reaches sudo but not this root process. Before v258 that exit status is 1.
    """
    offset = 0
    with contextlib.suppress(FileNotFoundError):
        old = paths.journal.read_bytes()
        offset = old.rfind(b"\n") + 1  # a line still being written is read with the new ones
        entries = [json.loads(line) for line in old[:offset].decode().splitlines() if line]
        try:
            _print_entries(select_entries(entries, query), query)
        except BrokenPipeError:
            return _reader_gone()
    watch = select.poll()
    watch.register(sys.stdout.fileno(), 0)  # only POLLHUP, POLLERR and POLLNVAL are reported
    partial = b""
    while True:
        if watch.poll(FOLLOW_POLL * 1000):
            return _reader_gone()
        try:
            with paths.journal.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            continue
        offset += len(data)
        *lines, partial = (partial + data).split(b"\n")
        if not lines:
            continue
        entries = [json.loads(line) for line in lines if line.strip()]
        query_all = dataclasses.replace(query, lines=None)
        try:
            _print_entries(select_entries(entries, query_all), query)
        except BrokenPipeError:
            return _reader_gone()


def _reader_gone() -> int:
    """Nobody reads our output any more: drop what is buffered for it, and end (-ECANCELED)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_FAILURE


def _print_entries(entries: list[dict[str, Any]], query: JournalQuery) -> None:
    for e in entries:
        sys.stdout.write(format_entry(e, query.output, no_hostname=query.no_hostname) + "\n")
    sys.stdout.flush()


def apply_journal_option(query: JournalQuery, name: str, value: str | None) -> None:  # noqa: C901 - one branch per option
    if name == "follow":
        query.follow = True
    elif name in ("since", "until", "dmesg"):
        raise UsageError(f"journalctl (test host stand-in): --{name} is not supported")
    elif name == "unit":
        query.units.append(mangle(value or ""))
    elif name == "lines":
        query.lines = parse_lines(value)
    elif name == "priority":
        query.priority = parse_priority(value or "")
    elif name == "output":
        if value not in OUTPUTS:
            raise UsageError(f"Unknown output format '{value}'.")
        query.output = value
    elif name == "boot" and value not in (None, "0", "-0"):
        raise UsageError(
            f"Data from the specified boot ({value}) is not available: No such boot ID in journal"
        )
    elif name == "grep":
        query.grep = value
    elif name in ("quiet", "pager-end", "reverse", "no-hostname"):
        setattr(query, name.replace("-", "_"), True)


def parse_lines(value: str | None) -> int | None:
    if value is None:
        return 10
    if value == "all":
        return None
    digits = value.removeprefix("+")
    if not digits.isdigit():
        raise UsageError(f"Failed to parse --lines='{value}'.")
    return int(digits)


def parse_priority(value: str) -> int:
    if value.isdigit() and int(value) < 8:
        return int(value)
    if value in PRIORITIES:
        return PRIORITIES.index(value)
    raise UsageError(f"Unknown log level {value}")


def parse_match(arg: str) -> tuple[str, str]:
    if arg.startswith("/"):
        return "_EXE", arg
    field, eq, value = arg.partition("=")
    if not eq or not re.fullmatch(r"[A-Z0-9_]+", field):
        raise UsageError(f"Failed to add match '{arg}': Invalid argument")
    return field, value


def entry_fields(entry: dict[str, Any]) -> dict[str, str]:
    fields = {"SYSLOG_IDENTIFIER": entry["ident"], "_PID": str(entry["pid"])}
    fields |= {"PRIORITY": str(entry["prio"]), "MESSAGE": entry["msg"]}
    if entry["ident"] == "systemd":
        fields["UNIT"] = entry["unit"]
    else:
        fields |= {"_SYSTEMD_UNIT": entry["unit"], "_EXE": "/usr/bin/redis-server"}
    return fields


def select_entries(entries: list[dict[str, Any]], query: JournalQuery) -> list[dict[str, Any]]:
    def keep(entry: dict[str, Any]) -> bool:
        fields = entry_fields(entry)
        if query.units and entry["unit"] not in query.units:
            return False
        if any(fields.get(field) != value for field, value in query.matches):
            return False
        if entry["prio"] > query.priority:
            return False
        return query.grep is None or re.search(query.grep, entry["msg"]) is not None

    chosen = [e for e in entries if keep(e)]
    if query.lines is not None:
        chosen = chosen[-query.lines :] if query.lines else []
    return chosen[::-1] if query.reverse else chosen


def format_entry(entry: dict[str, Any], output: str, *, no_hostname: bool = False) -> str:
    """One journal entry in journalctl's short (default), short-iso, short-precise, cat, json."""
    ts = float(entry["ts"])
    if output == "cat":
        return str(entry["msg"])
    if output == "json":
        fields = entry_fields(entry) | {"_HOSTNAME": entry["host"]}
        fields["__REALTIME_TIMESTAMP"] = str(int(ts * 1_000_000))
        return json.dumps(fields)
    local = time.localtime(ts)
    if output == "short-iso":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", local)
    elif output == "short-precise":
        stamp = time.strftime("%b %d %H:%M:%S", local) + f".{int(ts % 1 * 1_000_000):06d}"
    else:
        stamp = time.strftime("%b %d %H:%M:%S", local)
    host = "" if no_hostname else f" {entry['host']}"
    return f"{stamp}{host} {entry['ident']}[{entry['pid']}]: {entry['msg']}"


# --- unitctl (the harness's root console; not recorded) -------------------------------------


def unitctl_main(paths: Paths, argv: Sequence[str]) -> int:
    """unitctl boot-start | start | stop | restart | reload | reset-failed | status | is-active."""
    if argv and argv[0] == "boot-start":
        unit = Unit(paths)
        code, _result, message = job_start(
            unit, Ctl(verb="start", names=[unit.cfg.unit], count_limit=False)
        )
        if message:
            out(message, err=True)
        return code
    return systemctl_main(paths, argv, record=False)


def main(argv: Sequence[str]) -> int:
    """Dispatch on the tool name baked in by the builder."""
    tool = BAKED_TOOL or Path(argv[0]).name
    paths = Paths(Path(BAKED_STATE_DIR))
    if tool == "journalctl":
        return journalctl_main(paths, argv[1:])
    if tool == "unitctl":
        return unitctl_main(paths, argv[1:])
    return systemctl_main(paths, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
