"""Run one sequence against a fresh test host and a fresh remediator process; collect the truth.

Per sequence: a test host (testhost/, its own namespace, sshd, sudo, systemd stand-ins, Redis),
a size-limited tmpfs for the audit log (so `audit_full` is a real ENOSPC), the remediator as
`python -m remediator` with production-like recovery settings and short delays (`SETTINGS`),
and three background threads: the sampler (the host as a client sees it, every `SAMPLE_EVERY`
seconds: the unit's state from systemd's own record, and a PING), the /healthz prober, and the
Alertmanager simulation fed by the sampler. The steps of the sequence run at their times; the
ones that wait for something in progress wait in their own thread.

After the last step the sequence goes on until it is quiet: no outage open (or every open one
past its paging deadline), no notification pending, no recovery running. Then the remediator is
stopped with SIGTERM (gracefully, as systemd would), and the ground truth is read: the host's
invocation log, the audit files (live, set aside and rotated), the breaker's state file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from chaos import invariants, plan
from chaos.alertsim import AlertSim
from chaos.truth import Action, Limits, Page, Probe, Sample, Truth
from demo.stack import Stack, StackOptions
from redis_autoheal.config import load_config
from redis_autoheal.units import STOPPED
from testhost.disk import SmallDisk
from testhost.files import HostOptions
from testhost.host import TestHost

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parent.parent
TOKEN = "chaos-webhook-token-3b9d1c7e5a"  # noqa: S105 - the campaign's own remediator
SAMPLE_EVERY = 0.1
SAMPLE_PING_TIMEOUT = 0.3
PROBE_EVERY = 0.25
PROBE_TIMEOUT = 2.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
QUIET_FOR = 1.0
MAX_SEQUENCE = 90.0
RECOVERY_SILENT = 10.0  # a running recovery writes an event at least this often
DISK_BYTES = 8 << 20

# Production-like, scaled down: the runbook's tiers, verification and breaker, short delays.
SETTINGS: dict[str, Any] = {
    "health_check": {"ping_timeout_seconds": 1},
    "auto_recovery": {
        "enabled": True,
        "max_attempts": 3,
        "retry_delay_seconds": 1.0,
        "stable_seconds": 1,
        "transition_timeout_seconds": 5,
    },
    "circuit_breaker": {"max_recoveries": 3, "window_seconds": 300},
    "audit": {"max_bytes": 16384, "backup_count": 500},
}
# The demo stack's fast cadence: RedisDown needs 3 failed PINGs 3 s apart, then evaluation and
# group_wait (~11 s); on-call's remediate="true" route waits 20 s for auto-recovery.
STACK_LIMITS = Limits(detection_budget=12.0, page_grace=25.0)
STACK_SKIPS = ("audit_full", "audit_free", "stale_alert")  # the stack's audit is on its own disk

SSH_TIMEOUTS = {
    "connect_timeout_seconds": 2,
    "command_timeout_seconds": 3,
    "control_timeout_seconds": 20,
}


@dataclass
class Result:
    """One sequence: its truth, what was applied, and how the deliveries went."""

    sequence: plan.Sequence
    truth: Truth
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deliveries: dict[str, Any] = field(default_factory=dict)
    violations: list[invariants.Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    full_stack: bool = False


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Remediator:
    """The real remediator process; restartable; knows when it was down on purpose."""

    def __init__(
        self,
        config: Path,
        port: int,
        log: Path,
        spawn: Callable[[], subprocess.Popen[bytes] | None] | None = None,
        root: Path = REPO,
    ) -> None:
        self.root = root
        self.config = config
        self.port = port
        self.log = log
        self._spawn_proc = spawn or self._popen
        self.proc: subprocess.Popen[bytes] | None = None
        self.down: list[tuple[float, float]] = []
        self._down_since: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _popen(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "remediator",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--log-level",
                    "info",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(self.root)},
                cwd=self.log.parent,
                start_new_session=True,
            )

    def start(self) -> None:
        self.proc = self._spawn_proc()
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"remediator exited {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"remediator not ready in {READY_TIMEOUT:g}s: {self.tail()}")
            time.sleep(0.05)
        if self._down_since is not None:
            self.down.append((self._down_since, time.time()))
            self._down_since = None

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=timeout) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._down_since = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> bool:
        """SIGTERM and wait; SIGKILL if it does not go. True if it went by itself."""
        self.signal(signal.SIGTERM)
        if self.wait(STOP_TIMEOUT):
            return True
        self.signal(signal.SIGKILL)
        self.wait(10)
        return False

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


class Sequencer:
    """One sequence's run; see the module docstring."""

    def __init__(
        self,
        sequence: plan.Sequence,
        workdir: Path,
        say: Callable[[str], None] = print,
        *,
        full_stack: bool = False,
        remediator_root: Path = REPO,
    ) -> None:
        self.remediator_root = remediator_root
        self.seq = sequence
        self.workdir = workdir
        self.say = say
        self.full_stack = full_stack
        self.limits = STACK_LIMITS if full_stack else Limits()
        self.audit_path = workdir / "disk" / "audit" / "audit.log"
        self.state_dir = workdir / "state"
        self.stack: Stack | None = None
        self.samples: list[Sample] = []
        self.probes: list[Probe] = []
        self.applied: list[str] = []
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.started = 0.0
        self.host: TestHost | None = None
        self.disk: SmallDisk | None = None
        self.remediator: Remediator | None = None
        self.sim: AlertSim | None = None

    # --- setting up ---------------------------------------------------------------------

    def _config(self, host: TestHost, port: int) -> Path:
        token = self.workdir / "webhook.token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        target = host.target("redis")
        target["ssh"].update(SSH_TIMEOUTS)
        data = {
            "targets": [target],
            **SETTINGS,
            "audit": {**SETTINGS["audit"], "path": str(self.audit_path)},
            "remediator": {
                "listen": f"127.0.0.1:{port}",
                "webhook_token_file": str(token),
                "state_dir": str(self.state_dir),
            },
        }
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(data))
        load_config(path)  # a bad config is the campaign's bug: say so here, not in a log
        return path

    def run(self) -> Result:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.full_stack:
            return self._run_stack()
        self.disk = SmallDisk(self.workdir / "disk", DISK_BYTES)
        try:
            self.disk.mount()
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)
            self.host = TestHost.build(HostOptions())
            port = free_port()
            self.remediator = Remediator(
                self._config(self.host, port),
                port,
                self.workdir / "remediator.log",
                root=self.remediator_root,
            )
            self.remediator.start()
            return self._run()
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(5)
            if self.remediator is not None and self.remediator.proc is not None:
                self.remediator.signal(signal.SIGKILL)
                self.remediator.wait(10)
            if self.host is not None:
                with contextlib.suppress(Exception):
                    self.host.teardown()
            self.disk.close()

    def _run_stack(self) -> Result:
        """The same sequence with the demo stack: real Prometheus, Alertmanager, exporter and
        pager sink; the remediator is the stack's (restarted as its daemon)."""
        stack = Stack(StackOptions(say=None))
        self.stack = stack
        try:
            stack.start()
            assert stack.host is not None
            assert stack.ports is not None
            self.host = stack.host
            self.audit_path = stack.audit_path
            self.state_dir = stack.workdir / "state"
            (daemon,) = [d for d in stack.daemons if d.name == "remediator"]

            def respawn() -> subprocess.Popen[bytes] | None:
                daemon.start()
                return daemon.proc

            self.remediator = Remediator(
                stack.config_path, stack.ports.remediator, daemon.log, respawn
            )
            self.remediator.proc = daemon.proc
            return self._run()
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(5)
            with contextlib.suppress(Exception):
                stack.close()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self) -> Result:
        assert self.remediator is not None
        import random  # noqa: PLC0415 - only the simulation's quirks draw from it

        if not self.full_stack:  # else the stack's Prometheus and Alertmanager deliver
            self.sim = AlertSim(
                f"{self.remediator.url}/webhook",
                TOKEN,
                self.seq.alertmanager,
                random.Random(f"chaos:{self.seq.seed}:{self.seq.index}:deliveries"),
                self._note,
            )
        self.started = time.time()
        self._spawn(self._sample_loop, "sampler")
        self._spawn(self._probe_loop, "prober")
        t0 = time.monotonic()
        for step in self.seq.steps:
            delay = t0 + step.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._apply(step)
        waiting = [t for t in self._threads if t.name.startswith("step")]
        for thread in waiting:
            thread.join(plan.WAIT_LIMIT + 35)
        self._wait_quiet()
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if not self.remediator.stop():
            self.notes.append("the remediator did not stop within 30s of SIGTERM: SIGKILLed")
        if self.sim is not None:
            self.sim.join(15)
        truth = self._collect()
        with contextlib.suppress(OSError):  # the tmpfs goes with the sequence: keep a copy
            shutil.copytree(self.audit_path.parent, self.workdir / "audit")
        (self.workdir / "truth.json").write_text(json.dumps(dataclasses.asdict(truth)))
        result = Result(
            self.seq,
            truth,
            self.applied,
            self.skipped,
            deliveries=vars(self.sim.stats) if self.sim else {"mode": "full stack"},
            notes=self.notes,
            full_stack=self.full_stack,
        )
        result.violations = invariants.check(truth)
        return result

    def _note(self, text: str) -> None:
        with self._lock:
            self.notes.append(f"{time.time() - self.started:6.2f}s {text}")

    # --- background -----------------------------------------------------------------------

    def _sample_loop(self) -> None:
        assert self.host is not None
        while not self._stop.is_set():
            t = time.time()
            try:
                state = self.host.unit_state()
            except (OSError, ValueError):
                state = "unknown"
            pong = state == "active" and self.host.ping(timeout=SAMPLE_PING_TIMEOUT)
            sample = Sample(t, state, pong)
            self.samples.append(sample)
            if self.sim is not None:
                self.sim.tick(sample, time.time())
            self._stop.wait(max(0.0, t + SAMPLE_EVERY - time.time()))

    def _probe_loop(self) -> None:
        assert self.remediator is not None
        while not self._stop.is_set():
            t = time.time()
            detail = ""
            try:
                url = f"{self.remediator.url}/healthz"
                with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as r:  # noqa: S310
                    ok = r.status == 200
                    detail = str(r.status)
            except OSError as e:
                ok, detail = False, f"{type(e).__name__}: {e}"
            self.probes.append(Probe(t, ok, detail))
            self._stop.wait(max(0.0, t + PROBE_EVERY - time.time()))

    # --- the steps ------------------------------------------------------------------------

    def _apply(self, step: plan.Step) -> None:
        if step.fault in plan.WAITING:
            self._spawn(lambda: self._guarded(step), f"step-{step.fault}")
        else:
            self._guarded(step)

    def _guarded(self, step: plan.Step) -> None:
        at = time.time() - self.started
        try:
            done = self._do(step)
        except Exception as e:  # noqa: BLE001 - a fault that cannot apply now is skipped
            self._record(self.skipped, f"{at:6.2f}s {step.fault}: {type(e).__name__}: {e}")
            return
        if done:
            self._record(self.applied, f"{at:6.2f}s {step.fault} {done}".rstrip())
        else:
            self._record(self.skipped, f"{at:6.2f}s {step.fault}: nothing to do")

    def _record(self, into: list[str], text: str) -> None:
        with self._lock:
            into.append(text)

    def _do(self, step: plan.Step) -> str | None:  # noqa: C901, PLR0911, PLR0912 - one per fault
        host, rem, sim = self.host, self.remediator, self.sim
        assert host is not None
        assert rem is not None
        f = step.fault
        if self.full_stack and f in STACK_SKIPS:
            raise NotImplementedError("not in full-stack mode")
        if f == "kill9":
            return f"pid {host.kill9()}"
        if f == "terminate":
            return f"pid {host.terminate()}"
        if f == "sigstop":
            return f"pid {host.sigstop()}"
        if f == "sigcont":
            return f"pid {host.sigcont()}" if host.redis_pid() else None
        if f == "stop":
            host.stop()
            return "done"
        if f == "self_start":
            if host.unit_state() not in STOPPED:
                return None
            host.reset_failed()
            threading.Thread(target=host.start, daemon=True).start()
            return "console start"
        if f == "slow_start":
            host.slow_start(step.arg)
            return f"{step.arg:g}s"
        if f == "start_fails":
            host.start_fails(bool(step.arg))
            return "on" if step.arg else "off"
        if f == "link_down":
            host.link_down()
            return "done"
        if f == "link_up":
            host.link_up()
            return "done"
        if f == "host_key":
            host.change_host_key()
            return "done"
        if f == "host_key_back":
            return "done" if host.restore_host_key() else None
        if f in ("audit_full", "audit_free"):
            assert self.disk is not None
            if f == "audit_free":
                self.disk.free()
                return "done"
            return f"{self.disk.fill()} bytes of ballast"
        if f == "rogue_restart":  # not generated: shows the campaign catching harm (tests)
            done = host.ssh(f"sudo -n systemctl restart {host.unit}")
            return f"exit {done.returncode}"
        if f == "stale_alert":
            assert sim is not None
            sim.stale_alert(time.time())
            return "sent"
        if f == "ssh_drop":
            return self._ssh_drop(host)
        if f in ("remediator_term", "remediator_kill"):
            return self._remediator_fault(rem, step)
        raise ValueError(f"unknown fault {f!r}")

    def _ssh_drop(self, host: TestHost) -> str | None:
        deadline = time.monotonic() + plan.WAIT_LIMIT
        while time.monotonic() < deadline and not self._stop.is_set():
            running = [i for i in host.invocations() if i.end_ts is None and i.sudo_user]
            if running:
                cut = host.drop_ssh_connections()
                return f"during {running[0].verb}: {len(cut)} sshd processes killed"
            time.sleep(0.02)
        return None

    def _recovery_running(self, *, active_within: float | None = None) -> bool:
        """A recovery has started and not finished, by the live audit file (and, if given, the
        file changed within `active_within` seconds: one that aborted without a terminal event
        does not hold the sequence up)."""
        if active_within is not None:
            try:
                if time.time() - self.audit_path.stat().st_mtime > active_within:
                    return False
            except OSError:
                return False
        started: set[str] = set()
        for e in recent_events(self.audit_path):
            if e.get("event_type") != "auto_recovery":
                continue
            rid = str(e.get("recovery_id"))
            if e.get("phase") == "started":
                started.add(rid)
            elif e.get("phase") == "finished":
                started.discard(rid)
        return bool(started)

    def _remediator_fault(self, rem: Remediator, step: plan.Step) -> str | None:
        deadline = time.monotonic() + plan.WAIT_LIMIT
        while not self._recovery_running():
            if time.monotonic() > deadline or self._stop.is_set():
                return None
            time.sleep(0.02)
        sig = signal.SIGTERM if step.fault == "remediator_term" else signal.SIGKILL
        rem.signal(sig)
        went = rem.wait(STOP_TIMEOUT)
        if not went:
            self._note("remediator still running 30s after SIGTERM: SIGKILL")
            rem.signal(signal.SIGKILL)
            rem.wait(10)
        time.sleep(step.arg)
        rem.start()
        return f"{sig.name} mid-recovery, restarted {step.arg:g}s later"

    # --- the end ------------------------------------------------------------------------

    def _wait_quiet(self) -> None:
        lim = self.limits
        quiet_since: float | None = None
        give_up = time.monotonic() + MAX_SEQUENCE
        while time.monotonic() < give_up:
            now = time.time()
            open_outage = self._open_outage_start()
            busy = (self.sim is not None and self.sim.pending()) or self._recovery_running(
                active_within=RECOVERY_SILENT
            )
            if open_outage is not None:
                busy = busy or now < open_outage + lim.detection_budget + lim.page_grace + 1.0
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= QUIET_FOR:
                return
            time.sleep(0.1)
        self.notes.append(f"not quiet after {MAX_SEQUENCE:g}s: judged as it stands")

    def _open_outage_start(self) -> float | None:
        found = invariants.outages(list(self.samples))
        return found[-1].start if found and found[-1].end is None else None

    def _collect(self) -> Truth:
        assert self.host is not None
        assert self.remediator is not None
        audit, problems = read_audit(self.audit_path)
        try:
            states = json.loads((self.state_dir / "circuit_breakers.json").read_text())
            breaker = states.get("targets", {}).get("redis", {})
        except (OSError, ValueError):
            breaker = {}
        truth = Truth(
            name=self.seq.name,
            started=self.started,
            ended=time.time(),
            samples=list(self.samples),
            actions=[
                Action(i.verb, i.ts, i.end_ts, i.result, i.sudo_user)
                for i in self.host.invocations()
            ],
            looks=[q.ts for q in self.host.queries() if q.user == "autobot"],
            audit=audit,
            audit_problems=problems,
            breaker=breaker,
            probes=list(self.probes),
            remediator_down=list(self.remediator.down),
            limits=self.limits,
        )
        if self.stack is not None:  # the pager sink: what on-call really got
            truth.pages = [
                Page(p.received_at, "on-call: " + ",".join(p.alertnames()))
                for p in self.stack.sink.pages("/oncall")
                if p.status == "firing"
            ]
        else:
            truth.pages = invariants.pages_from_audit(audit, breaker)
        return truth


def audit_files(path: Path) -> list[Path]:
    """The audit log's files, oldest first: FILE.N.gz ... FILE.1.gz, FILE.rotating, FILE."""
    backups = []
    for p in path.parent.glob(f"{path.name}.*"):
        middle = p.name[len(path.name) + 1 :].removesuffix(".gz")
        if middle.isdigit():
            backups.append((int(middle), p))
    ordered = [p for _, p in sorted(backups, reverse=True)]
    ordered += [p for p in (path.with_name(path.name + ".rotating"), path) if p.exists()]
    return ordered


def recent_events(path: Path) -> list[dict[str, Any]]:
    """The events of the newest backup, the set-aside file and the live file (a recovery's
    start may have been rotated out of the live file since)."""
    events: list[dict[str, Any]] = []
    for p in audit_files(path)[-3:]:
        with contextlib.suppress(OSError, EOFError, gzip.BadGzipFile):
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            for line in data.splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        events.append(event)
    return events


def read_audit(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event of every audit file, oldest first, and the lines that are not one."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for p in audit_files(path):
        try:
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            problems.append(f"{p.name}: unreadable: {e}")
            continue
        if data and not data.endswith(b"\n"):
            problems.append(f"{p.name}: last line incomplete: {data[-80:]!r}")
        for n, line in enumerate(data.splitlines(), 1):
            try:
                event = json.loads(line)
            except ValueError as e:
                problems.append(f"{p.name}:{n}: not JSON ({e}): {line[:80]!r}")
                continue
            if not isinstance(event, dict):
                problems.append(f"{p.name}:{n}: not an object: {line[:80]!r}")
                continue
            events.append(event)
    return events, problems


def run_sequence(
    sequence: plan.Sequence,
    workdir: Path,
    say: Callable[[str], None],
    *,
    full_stack: bool = False,
    remediator_root: Path = REPO,
) -> Result:
    """Run one sequence; `remediator_root` is the checkout whose remediator runs (direct mode;
    the stack runs the installed `redis-autoheal`)."""
    return Sequencer(
        sequence, workdir, say, full_stack=full_stack, remediator_root=remediator_root
    ).run()
