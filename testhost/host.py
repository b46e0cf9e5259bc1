"""TestHost: the runbook's VM3 in a box, built, faulted, inspected and torn down from root."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testhost import _standin, alloc, files, netns, procs
from testhost.files import HostOptions, Layout
from testhost.netns import Net

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

POLL = 0.005


class BuildError(RuntimeError):
    """The host could not be built (everything built so far has been torn down)."""


class TeardownError(RuntimeError):
    """Something of the host could not be removed."""


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One start/stop/restart/reload/reset-failed run of the host's /usr/bin/systemctl."""

    verb: str
    unit: str
    ts: float
    mono: float
    uid: int
    sudo_user: str | None
    argv: list[str]
    exit_code: int | None
    result: str | None
    end_ts: float | None


@dataclasses.dataclass(frozen=True)
class Query:
    """One `systemctl is-active`/`is-failed` of the unit over SSH or sudo: what it answered."""

    verb: str
    unit: str
    ts: float
    state: str
    uid: int
    user: str | None


class TestHost:
    """A Redis host like the runbook's VM3: own netns and address, sshd, sudo, systemd stand-ins."""

    __test__ = False  # not a pytest test class

    user = files.USER
    unit = files.UNIT
    redis_port = files.REDIS_PORT
    ssh_port = files.SSH_PORT

    def __init__(
        self,
        index: int,
        workdir: Path,
        options: HostOptions,
        *,
        created_workdir: bool,
    ) -> None:
        self.index = index
        self.net = Net(index)
        self.workdir = workdir
        self.layout = Layout(workdir)
        self.options = options
        self.created_workdir = created_workdir
        self.hostinit_pid = 0
        self.hostinit_started: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._torn_down = False

    # --- what a config needs ---------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.net.address

    @property
    def root_address(self) -> str:
        return self.net.root_address

    @property
    def key_file(self) -> Path:
        return self.layout.key_file

    @property
    def known_hosts(self) -> Path:
        return self.layout.known_hosts

    @property
    def state_dir(self) -> Path:
        return self.layout.state

    @property
    def password_file(self) -> Path | None:
        return self.layout.client / "redis_password" if self.options.password else None

    def target(self, name: str | None = None) -> dict[str, Any]:
        """A `targets:` entry for the redis-autoheal config pointing here."""
        password = self.password_file
        return {
            "name": name or self.options.hostname,
            "redis": {
                "host": self.address,
                "port": self.redis_port,
                "password_file": str(password) if password else None,
                "tls": False,
            },
            "ssh": {
                "host": self.address,
                "port": self.ssh_port,
                "user": self.user,
                "key_file": str(self.key_file),
                "known_hosts": str(self.known_hosts),
            },
            "unit": self.unit,
        }

    def describe(self) -> dict[str, Any]:
        """Everything about the host as JSON-able data (what `python -m testhost up` prints)."""
        return {
            "index": self.index,
            "netns": self.net.name,
            "veth_root": self.net.veth_root,
            "veth_host": self.net.veth_host,
            "address": self.address,
            "root_address": self.root_address,
            "redis_port": self.redis_port,
            "ssh_port": self.ssh_port,
            "user": self.user,
            "unit": self.unit,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "password_file": str(self.password_file) if self.password_file else None,
            "workdir": str(self.workdir),
            "state_dir": str(self.state_dir),
            "created_workdir": self.created_workdir,
            "pids": {
                "hostinit": self.hostinit_pid,
                "sshd": self.sshd_pid(),
                "redis": self.redis_pid(),
            },
            "options": dataclasses.asdict(self.options),
            "target": self.target(),
        }

    # --- building ----------------------------------------------------------------------------

    @classmethod
    def build(cls, options: HostOptions | None = None, *, workdir: Path | None = None) -> TestHost:
        """Build a host and wait until sshd listens and (by default) Redis answers PING."""
        opts = options or HostOptions()
        index = alloc.allocate(os.getpid(), reclaim=destroy_index)
        try:
            root, created = _prepare_workdir(workdir, index)
            alloc.set_workdir(index, root, created=created)
        except BaseException:
            alloc.release(index)
            raise
        host = cls(index, root, opts, created_workdir=created)
        try:
            host._build()
        except BaseException as exc:
            with contextlib.suppress(TeardownError):
                host.teardown()
            if isinstance(exc, Exception) and not isinstance(exc, BuildError):
                raise BuildError(f"building test host ah{index} failed: {exc}") from exc
            raise
        return host

    def _build(self) -> None:
        lay = self.layout
        lay.root.chmod(0o755)
        files.check_traversable(lay.root)
        uid = files.pick_uid()
        files.populate(lay, self.options, self.net, uid)
        if self.options.password:
            path = lay.client / "redis_password"
            path.write_text(self.options.password + "\n")
            path.chmod(0o600)
        netns.create(self.net)
        with lay.init_log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    *("nsenter", f"--net={self.net.ns_path}", "--"),
                    *("unshare", "--mount", "--propagation", "private", "--"),
                    *(files.PYTHON, str(lay.bin / "hostinit")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.hostinit_pid = self._proc.pid
        self.hostinit_started = procs.start_time(self.hostinit_pid)
        self._wait_ready()
        lay.description.write_text(json.dumps(self.describe(), indent=1) + "\n")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        while not self._ready():
            if self._proc is not None and self._proc.poll() is not None:
                raise BuildError(
                    f"the host's init exited ({self._proc.returncode}): {self._logs()}"
                )
            if self.options.redis_running and self.unit_state() == "failed":
                raise BuildError(f"redis-server failed to start: {self._logs()}")
            if time.monotonic() > deadline:
                raise BuildError(f"not ready after {self.options.ready_timeout}s: {self._logs()}")
            time.sleep(POLL)

    def _ready(self) -> bool:
        if not self.sshd_listening():
            return False
        if not self.options.redis_running:
            return True
        return self.unit_state() == "active" and self.ping(timeout=0.5)

    def _logs(self) -> str:
        parts = []
        for path in (self.layout.init_log, self.layout.sshd_log):
            with contextlib.suppress(OSError):
                parts.append(f"{path.name}: {path.read_text()[-2000:]}")
        parts.append("journal: " + "\n".join(self.journal()[-20:]))
        return "\n".join(parts)

    @classmethod
    def load(cls, workdir: Path) -> TestHost:
        """The host described by workdir/host.json (one left running by `up`)."""
        data = json.loads(Layout(workdir).description.read_text())
        host = cls(
            data["index"],
            Path(data["workdir"]),
            HostOptions(
                **{**data["options"], "redis_config": tuple(data["options"]["redis_config"])}
            ),
            created_workdir=data["created_workdir"],
        )
        host.hostinit_pid = int(data["pids"]["hostinit"])
        host.hostinit_started = None
        return host

    # --- teardown ----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove every process, namespace, veth and file of the host; safe to call twice."""
        if self._torn_down:
            return
        problems = self._destroy()
        if not problems:  # else keep the record: the index is reclaimed once we are gone
            with alloc.machine_lock():
                alloc.release(self.index)
        self._torn_down = True
        if problems:
            raise TeardownError(f"test host ah{self.index}: " + "; ".join(problems))

    def _destroy(self) -> list[str]:
        """Tear down without touching the allocation record; returns what could not be removed."""
        problems: list[str] = []
        self._stop_init()
        left = procs.kill_netns(self.net.ns_path, 5.0)
        if left:
            problems.append(f"processes still alive: {left}")
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        try:
            netns.destroy(self.net)
        except netns.NetError as exc:
            problems.append(str(exc))
        if self.net.exists():
            problems.append(f"{self.net.name} or {self.net.veth_root} still exists")
        self._remove_files()
        if self.workdir.exists() and self.created_workdir:
            problems.append(f"{self.workdir} still exists")
        return problems

    def _stop_init(self) -> None:
        pid = self.hostinit_pid or self._init_pid_from_file()
        if not pid or not procs.alive(pid, self.hostinit_started):
            return
        if procs.netns_id(f"/proc/{pid}/ns/net") != procs.netns_id(self.net.ns_path):
            return  # not our init (pid reused)
        procs.kill(pid, signal.SIGTERM)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        procs.wait_gone([pid], 5.0)

    def _init_pid_from_file(self) -> int:
        try:
            return int(json.loads(self.layout.init_ready.read_text())["hostinit"])
        except (OSError, ValueError, KeyError):
            return 0

    def _remove_files(self) -> None:
        if not self.layout.marker.exists():
            if self.created_workdir:
                with contextlib.suppress(OSError):
                    self.workdir.rmdir()
            return
        if self.created_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for child in self.workdir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    # --- reading the host's state ------------------------------------------------------------

    def _unit(self) -> _standin.Unit:
        return _standin.Unit(_standin.Paths(self.state_dir))

    def unit_status(self) -> _standin.UnitState:
        """The stand-in's full unit state, read directly (not over ssh)."""
        return self._unit().read()

    def unit_state(self) -> str:
        """active / reloading / inactive / failed / activating / deactivating."""
        try:
            return self.unit_status().active
        except FileNotFoundError:
            return "inactive"

    def redis_pid(self) -> int | None:
        """The unit's main PID (redis-server), if it has one."""
        try:
            pid = self.unit_status().main_pid
        except FileNotFoundError:
            return None
        return pid or None

    def sshd_pid(self) -> int | None:
        try:
            return int(json.loads(self.layout.init_ready.read_text())["sshd"])
        except (OSError, ValueError, KeyError):
            return None

    def sshd_listening(self) -> bool:
        """Whether sshd has logged that it listens (again, after a host key change)."""
        return self._listening_count() > 0

    def _listening_count(self) -> int:
        try:
            text = self.layout.sshd_log.read_text()
        except OSError:
            return 0
        return text.count(f"Server listening on 0.0.0.0 port {self.ssh_port}.")

    def invocations(self, verbs: Sequence[str] | None = None) -> list[Invocation]:
        """The recorded systemctl start/stop/restart/reload/reset-failed calls, oldest first."""
        try:
            lines = _standin.Paths(self.state_dir).invocations.read_text().splitlines()
        except FileNotFoundError:
            return []
        begins: dict[str, dict[str, Any]] = {}
        ends: dict[str, dict[str, Any]] = {}
        for line in lines:
            entry = json.loads(line)
            (begins if entry["event"] == "begin" else ends)[entry["id"]] = entry
        found = []
        for key, begin in begins.items():
            end = ends.get(key, {})
            found.append(
                Invocation(
                    verb=begin["verb"],
                    unit=begin["unit"],
                    ts=begin["ts"],
                    mono=begin["mono"],
                    uid=begin["uid"],
                    sudo_user=begin["sudo_user"],
                    argv=begin["argv"],
                    exit_code=end.get("exit_code"),
                    result=end.get("result"),
                    end_ts=end.get("ts"),
                )
            )
        found.sort(key=lambda inv: inv.mono)
        return [inv for inv in found if verbs is None or inv.verb in verbs]

    def queries(self) -> list[Query]:
        """The recorded `systemctl is-active`/`is-failed` calls (not the console's), oldest
        first: when someone looked at the unit, and what they saw."""
        try:
            lines = _standin.Paths(self.state_dir).queries.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = [Query(**json.loads(line)) for line in lines if line.strip()]
        return sorted(found, key=lambda q: q.ts)

    def max_starts_in_window(
        self, window: float = 10.0, verbs: Sequence[str] = ("start", "restart")
    ) -> int:
        """The most start/restart invocations that began within any `window` seconds."""
        times = [inv.mono for inv in self.invocations(verbs)]
        best = 0
        for i, first in enumerate(times):
            best = max(best, sum(1 for t in times[i:] if t - first <= window))
        return best

    def journal(self, lines: int | None = None) -> list[str]:
        """The unit's journal as `journalctl -u redis-server` prints it (read directly)."""
        entries = self._unit().journal()
        if lines is not None:
            entries = entries[-lines:] if lines else []
        return [_standin.format_entry(e, "short") for e in entries]

    def ping(self, timeout: float = 1.0) -> bool:
        """PING Redis over the network (from the root namespace); False on any failure."""
        return _standin.ping(self.address, self.redis_port, timeout, self.options.password) is True

    def wait_state(self, state: str | Sequence[str], timeout: float = 10.0) -> str:
        """Wait until the unit is in state (or one of states); returns it or raises TimeoutError."""
        wanted = (state,) if isinstance(state, str) else tuple(state)
        self.wait_until(lambda: self.unit_state() in wanted, timeout, f"unit state {wanted}")
        return self.unit_state()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll predicate (bounded); TimeoutError says what was awaited and the unit's state."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached in {timeout}s (unit: {self.unit_state()})")
            time.sleep(POLL)

    # --- running things ----------------------------------------------------------------------

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the host (its netns and mount namespace), via its init."""
        request = {"argv": list(argv), "timeout": timeout, "input": stdin}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout + 10)
            sock.connect(str(self.layout.init_socket))
            sock.sendall(json.dumps(request).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
        return subprocess.CompletedProcess(
            list(argv), reply["rc"], reply["stdout"], reply["stderr"]
        )

    def unitctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """The harness's own systemctl inside the host (same jobs; not recorded as invocations)."""
        return self.run([files.PYTHON, str(self.layout.bin / "unitctl"), *args], timeout=timeout)

    def ssh_argv(self, command: str, *, connect_timeout: float = 5.0) -> list[str]:
        """An OpenSSH client command line that logs in as autobot with the generated key."""
        return [
            *("ssh", "-F", "none", "-p", str(self.ssh_port), "-i", str(self.key_file)),
            *(
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ),
            *("-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"),
            *("-o", f"ConnectTimeout={max(1, round(connect_timeout))}"),
            f"{self.user}@{self.address}",
            command,
        ]

    def ssh(self, command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command over a real ssh connection as autobot."""
        return subprocess.run(
            self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )

    # --- faults ------------------------------------------------------------------------------

    def _main_pid(self) -> int:
        pid = self.redis_pid()
        if pid is None:
            raise RuntimeError(f"redis-server is not running (unit {self.unit_state()})")
        return pid

    def kill9(self) -> int:
        """kill -9 redis-server from outside: the unit ends `failed` (Result: signal)."""
        pid = self._main_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def terminate(self) -> int:
        """kill -TERM redis-server from outside: a clean exit, the unit ends `inactive`."""
        pid = self._main_pid()
        os.kill(pid, signal.SIGTERM)
        return pid

    def sigstop(self) -> int:
        """Freeze redis-server: the unit stays `active` but PING times out."""
        pid = self._main_pid()
        os.kill(pid, signal.SIGSTOP)
        return pid

    def sigcont(self) -> int:
        pid = self._main_pid()
        os.kill(pid, signal.SIGCONT)
        return pid

    def stop(self) -> subprocess.CompletedProcess[str]:
        """A clean `systemctl stop` on the host's console: the unit ends `inactive`."""
        return self.unitctl("stop", self.unit)

    def start(self) -> subprocess.CompletedProcess[str]:
        """`systemctl start` on the console (counts toward the start limit, is not recorded)."""
        return self.unitctl("start", self.unit)

    def restart(self) -> subprocess.CompletedProcess[str]:
        return self.unitctl("restart", self.unit)

    def reset_failed(self) -> subprocess.CompletedProcess[str]:
        """`systemctl reset-failed`: failed -> inactive and the start limit forgotten."""
        return self.unitctl("reset-failed", self.unit)

    def _faults(self) -> _standin.Faults:
        return _standin.Faults.load(_standin.Paths(self.state_dir).faults)

    def slow_start(self, seconds: float) -> None:
        """From now on, starts stay `activating` for `seconds` before Redis starts (0: off)."""
        files.write_faults(self.layout, dataclasses.replace(self._faults(), slow_start=seconds))

    def start_fails(self, fails: bool = True) -> None:
        """From now on every start fails (Redis refuses its config): failed, Result: exit-code."""
        files.write_faults(self.layout, dataclasses.replace(self._faults(), start_fails=fails))

    def link_down(self) -> None:
        """The host drops off the network (its interface down: ARP unanswered)."""
        netns.link_down(self.net)

    def link_up(self) -> None:
        netns.link_up(self.net)

    def blackhole(self) -> None:
        """Packets to the host vanish silently: TCP connects time out instead of failing fast."""
        netns.blackhole(self.net)

    def unblackhole(self) -> None:
        netns.unblackhole(self.net)

    def change_host_key(self, timeout: float = 10.0) -> None:
        """sshd now presents a new host key; the known_hosts handed out no longer matches."""
        files.keep_original_host_key(self.layout)
        files.new_host_key(self.layout)
        self._reload_sshd(timeout)

    def restore_host_key(self, timeout: float = 10.0) -> bool:
        """sshd presents its original host key again (after change_host_key); False if it never
        changed."""
        if not files.restore_original_host_key(self.layout):
            return False
        self._reload_sshd(timeout)
        return True

    def _reload_sshd(self, timeout: float) -> None:
        before = self._listening_count()
        sshd = self.sshd_pid()
        if sshd is None:
            raise RuntimeError("sshd is not running")
        os.kill(sshd, signal.SIGHUP)
        self.wait_until(lambda: self._listening_count() > before, timeout, "sshd restart")

    def drop_ssh_connections(self) -> list[int]:
        """Cut every open SSH connection to the host, as a network fault would: its sshd
        connection processes are killed, the listener stays (new connections succeed). Commands
        they started run on (systemd's jobs outlive the systemctl that asked for them); returns
        the pids killed."""
        listener = self.sshd_pid()
        cut = []
        for pid in procs.pids_in_netns(self.net.ns_path):
            if pid == listener or procs.command_name(pid) not in ("sshd", "sshd-session"):
                continue
            procs.kill(pid, signal.SIGKILL)
            cut.append(pid)
        return cut


def _prepare_workdir(workdir: Path | None, index: int) -> tuple[Path, bool]:
    """The host's work directory: a new one under the temp dir, or an empty/new given one."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=f"redis-autoheal-testhost-ah{index}-")), True
    workdir = workdir.absolute()
    if workdir.exists():
        if any(workdir.iterdir()):
            raise BuildError(f"{workdir} is not empty")
        return workdir, False
    workdir.mkdir(parents=True)
    return workdir, True


def destroy_index(index: int) -> None:
    """Tear down a stale allocation's host (its owner died) from what it left on disk."""
    recorded = alloc.read_workdir(index)
    if recorded is None:
        host = TestHost(index, Path("/nonexistent"), HostOptions(), created_workdir=False)
    else:
        workdir, created = recorded
        try:
            host = TestHost.load(workdir)
        except (OSError, ValueError, KeyError, TypeError):
            host = TestHost(index, workdir, HostOptions(), created_workdir=created)
    host._destroy()  # noqa: SLF001 - the allocation lock is held by our caller
