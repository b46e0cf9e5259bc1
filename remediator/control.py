"""What acts on one target: its audited SSH commands, under the lock and start budget that
recoveries and manual operations share (owned by remediator.coordination).

Each command is audited before it runs (fail closed) and again when it ends; what decides, acts
and verifies runs on the host's action connection, what a person reads (logs, status) on its
probe connection, which the health probes use too. PING goes through the target's one prober.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis_autoheal.commands import (
    FENCE_REFUSED,
    Action,
    Command,
    Journal,
    ServiceControl,
    Status,
    command_line,
)
from redis_autoheal.errors import CommandRejected, HostKeyError, SshCommandTimeout, SshError
from redis_autoheal.ssh import Lane
from remediator.audit import AUTOHEAL, Actor, AuditWriter, RiskLevel
from remediator.errors import AuditWriteError, Fenced, NoSshConfigured
from remediator.events import SecurityViolation, SshCommand, utc_timestamp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from redis_autoheal.config import Target
    from redis_autoheal.probe import ConnectivityResult, Prober
    from redis_autoheal.ssh import CommandResult, SshHost
    from remediator.metrics import Metrics

log = logging.getLogger(__name__)

# systemd's defaults: more than StartLimitBurst=5 starts within StartLimitIntervalSec=10s put
# the unit in `failed` with result start-limit-hit, and then even a person cannot start it.
SYSTEMD_START_LIMIT_BURST = 5
SYSTEMD_START_LIMIT_INTERVAL = 10.0
# Ours stays two below, leaving room for a person or another tool starting it meanwhile, over
# a window a second longer than systemd's, for the SSH latency between our clock and its.
START_BUDGET = SYSTEMD_START_LIMIT_BURST - 2
START_BUDGET_WINDOW = SYSTEMD_START_LIMIT_INTERVAL + 1.0
_OUTPUT_KEPT = 300  # characters of a command's output kept in the audit log
INTERRUPTED_AUDIT_SECONDS = 5.0  # how long a cancelled command may wait to be audited as such

# The audit log's `security.risk_level` of each state-changing command, automatic or manual:
# a stop takes the service away, a restart interrupts it, a start or reload of a unit that is
# down or hung only brings it (back) up. Read-only commands are "low".
RISK: dict[str, RiskLevel] = {
    Action.RELOAD.value: "low",
    Action.START.value: "low",
    Action.RESTART.value: "moderate",
    Action.STOP.value: "high",
}


class TargetLock(asyncio.Lock):
    """One recovery or manual operation on a target at a time, in this process. Replicas'
    (remediator.etcd.lock) also hold the target across them."""

    async def take(self, holder: str) -> str | None:  # noqa: ARG002 -- replicas' only
        """With the lock held, before a manual operation (`holder`: "restart by user-123"):
        hold the target beyond this process, without waiting; why not, if it cannot be."""
        return None


class StartBudget:
    """At most `burst` starts (start or restart) of one unit in any `interval` seconds.

    `acquire` waits for a slot instead of refusing, so a recovery with short retry delays
    slows down rather than pushing the unit into start-limit-hit. A manual operation asks
    `free_in()` first (after `refresh()`, with the target's lock held) and is refused (429)
    rather than kept waiting.
    """

    def __init__(
        self,
        burst: int = START_BUDGET,
        interval: float = START_BUDGET_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()

    def _expire(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= self.interval:
            self._starts.popleft()

    async def refresh(self) -> None:
        """Read the starts recorded elsewhere (replicas share them): here, nothing to read."""

    def free_in(self) -> float:
        """Seconds until a slot is free: 0 if one is free now."""
        now = self._clock()
        self._expire(now)
        if len(self._starts) < self.burst:
            return 0.0
        return self._starts[0] + self.interval - now

    async def acquire(self) -> float:
        """Take a slot, waiting as long as needed; return how long that was."""
        began = self._clock()
        while True:
            now = self._clock()
            self._expire(now)
            if len(self._starts) < self.burst:
                self._starts.append(now)
                return now - began
            await self._sleep(self._starts[0] + self.interval - now)


def _kept(text: str) -> str:
    return text if len(text) <= _OUTPUT_KEPT else text[:_OUTPUT_KEPT] + "..."


def _refused(command: Command, result: CommandResult) -> None:
    """Fenced if the host's fenced wrapper refused the command (it ran nothing)."""
    if isinstance(command, ServiceControl) and command.fence and result.exit_code == FENCE_REFUSED:
        stderr = _kept(result.stderr.strip())
        raise Fenced(f"fence {command.fence}: refused by the host's fenced wrapper ({stderr})")


class TargetControl:
    """One target's lock, commands and PING."""

    def __init__(  # noqa: PLR0913 -- each is a separate part handed in by the app
        self,
        target: Target,
        ssh: SshHost | None,
        audit: AuditWriter,
        metrics: Metrics,
        *,
        dry_run: bool,
        prober: Prober,
        lock: TargetLock,
        start_budget: StartBudget,
        fence: Callable[[str, Mapping[str, Any]], Awaitable[int | None]] | None = None,
        fenced_command: str | None = None,
    ) -> None:
        self.target = target
        self.unit = target.systemd_unit
        self.ssh = ssh
        self.audit = audit
        self.metrics = metrics
        self.dry_run = dry_run
        self.prober = prober  # the target's one Redis client, shared with its health checks
        self.lock = lock
        self.start_budget = start_budget
        # Raises Fenced if this replica no longer holds the target; else the recovery's fence
        # (None: no recovery of a replica), given with each step to the host's fenced wrapper.
        self.fence = fence
        self.fenced_command = fenced_command

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def refusal(self) -> str | None:
        """Why nothing can be run on this target, or None if commands can run."""
        if self.ssh is None:
            return f"target {self.name!r} has no ssh section in the config: cannot act on it"
        return None

    async def run(
        self,
        command: Command,
        *,
        actor: Actor = AUTOHEAL,
        source_ip: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> CommandResult:
        """Run one whitelisted command, audited before and after.

        Raises AuditWriteError (the command did not run), NoSshConfigured, CommandRejected
        (a state-changing command in dry-run mode), Fenced (a replica that lost the target:
        found before the command, or by the host's fenced wrapper, which ran nothing) and the
        SshError family.
        """
        if self.ssh is None:
            raise NoSshConfigured(self.refusal)
        try:
            command_line(command)  # the whitelist, checked again before anything is recorded
        except CommandRejected as e:
            self.metrics.security_violations.labels("command_rejected").inc()
            await self.audit.write(
                SecurityViolation(
                    service=self.name,
                    operation="command_rejected",
                    user=actor,
                    source_ip=source_ip,
                    success=False,
                    command_validated=False,
                    risk_level="high",
                    reason=str(e),
                )
            )
            raise
        if self.dry_run and not command.read_only:
            raise CommandRejected(f"dry-run mode: {command.name} is not run")
        command = await self._fenced(command, context or {})
        ssh = self.ssh
        waited = 0.0
        if isinstance(command, ServiceControl) and command.action in (Action.START, Action.RESTART):
            waited = await self.start_budget.acquire()
        started_event = SshCommand(
            service=self.name,
            operation=command.name,
            user=actor,
            source_ip=source_ip,
            success=None,
            risk_level=RISK.get(command.name, "low"),
            ssh_key_used=True,
            phase="started",
            command=" ".join(command.argv()),
            host=ssh.label,
            context=dict(context or {}),
            start_limit_wait_seconds=round(waited, 3) if waited else None,
        )
        await self.audit.write(started_event)
        started = time.monotonic()
        lane = Lane.PROBE if isinstance(command, Journal | Status) else Lane.ACTION
        try:
            result = await ssh.run(command, lane=lane)
        except asyncio.CancelledError:
            await self._interrupted(command, started_event, time.monotonic() - started)
            raise
        except SshError as e:
            outcome = "timeout" if isinstance(e, SshCommandTimeout) else "error"
            if isinstance(e, HostKeyError):
                self.metrics.security_violations.labels("host_key").inc()
            self._count(command, outcome)
            await self.audit.write(
                replace(
                    started_event,
                    timestamp=utc_timestamp(),
                    success=False,
                    duration_seconds=time.monotonic() - started,
                    phase="finished",
                    error=str(e),
                    cut_after_seconds=e.seconds if isinstance(e, SshCommandTimeout) else None,
                )
            )
            raise
        self._count(command, "success" if result.ok else "failure")
        await self.audit.write(
            replace(
                started_event,
                timestamp=utc_timestamp(),
                success=result.ok,
                duration_seconds=result.duration_seconds,
                exit_code=result.exit_code,
                phase="finished",
                stdout=_kept(result.stdout.strip()),
                stderr=_kept(result.stderr.strip()),
            )
        )
        _refused(command, result)
        return result

    async def _fenced(self, command: Command, context: Mapping[str, Any]) -> Command:
        """A state-changing command once the fence is checked: through the host's fenced
        wrapper, with the recovery's fence, if one is configured and the step has one."""
        if self.fence is None or command.read_only:
            return command
        fence = await self.fence(self.name, context)
        if fence is None or self.fenced_command is None or not isinstance(command, ServiceControl):
            return command
        return command.fenced(self.fenced_command, fence)

    async def _interrupted(self, command: Command, started: SshCommand, duration: float) -> None:
        """Close the audit pair of a command whose caller gave up on it (a shutdown past its
        grace): the remediator stopped waiting, and ssh.run sent KILL if it had started."""
        self._count(command, "error")
        event = replace(
            started,
            timestamp=utc_timestamp(),
            success=False,
            duration_seconds=duration,
            phase="finished",
            outcome="interrupted",
            error="interrupted: the remediator stopped waiting (KILL sent if it had started)",
        )
        # Shielded, so that a cancelled caller still records it; bounded, so that a stuck
        # audit log cannot hold up a shutdown.
        with contextlib.suppress(AuditWriteError, TimeoutError):
            async with asyncio.timeout(INTERRUPTED_AUDIT_SECONDS):
                await asyncio.shield(self.audit.write(event))

    def _count(self, command: Command, outcome: str) -> None:
        self.metrics.ssh_commands.labels(self.name, command.name, outcome).inc()
        if not command.read_only:
            result = outcome if outcome in ("success", "failure") else "error"
            self.metrics.operations.labels(self.name, command.name, result).inc()

    async def ping(self, timeout_seconds: float | None = None) -> ConnectivityResult:
        """One PING through the target's prober, within `health_check.ping_timeout_seconds`
        unless told otherwise; never raises."""
        return await self.prober.ping(timeout_seconds)
