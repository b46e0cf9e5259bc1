"""The operator API's manual operations (start, stop, restart, reload) and the breaker reset.

This module is the operator-facing policy: what is refused before anything runs (shutting
down, busy target, no `ssh`, dry-run, reload of a unit not active, start budget spent), the
breaker opened before a stop, and the `service_operation` events around each operation. The
command and its verification go through remediator.act, as recoveries do; a manual restart is
not held for `stable_seconds`, since a person is watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis_autoheal.commands import Action, ServiceControl
from redis_autoheal.errors import CommandRejected, SshCommandTimeout, SshError
from redis_autoheal.logs import target_logger
from redis_autoheal.units import RUNNING, STOPPED
from remediator.act import Acting, Expect, breaker_opened, changed, write_or_owe
from remediator.control import RISK
from remediator.errors import (
    AuditWriteError,
    BreakerStateError,
    CoordinationUnavailable,
    Fenced,
    NoSshConfigured,
    OperationRefused,
    TargetBusy,
)
from remediator.events import CircuitBreaker, ServiceOperation

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis_autoheal.config import Config
    from remediator.act import Found
    from remediator.audit import Actor, AuditWriter
    from remediator.breaker import BreakerState, BreakerStore
    from remediator.control import TargetControl
    from remediator.users import ApiUser

log = logging.getLogger(__name__)

STARTS = frozenset({Action.START, Action.RESTART})  # what the start budget counts


@dataclass(frozen=True)
class OperationResult:
    """What one manual operation did; `success` means done and verified."""

    operation_id: str
    target: str
    operation: str
    user: ApiUser
    success: bool
    detail: str
    unit: str
    unit_state_before: str | None
    unit_state_after: str | None
    exit_code: int | None
    duration_seconds: float
    circuit_breaker_opened: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "operation_id": self.operation_id,
            "target": self.target,
            "operation": self.operation,
            "user": self.user.actor.as_json(),
            "success": self.success,
            "detail": self.detail,
            "unit": self.unit,
            "unit_state_before": self.unit_state_before,
            "unit_state_after": self.unit_state_after,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration_seconds, 3),
            "risk_level": RISK[self.operation],
            "circuit_breaker_opened": self.circuit_breaker_opened,
        }


class Operations:
    """Runs manual operations and breaker resets; see the module docstring."""

    def __init__(  # noqa: PLR0913 -- the parts it works with, and the shutdown flag
        self,
        config: Config,
        controls: dict[str, TargetControl],
        breaker: BreakerStore,
        audit: AuditWriter,
        recovery_pending: Callable[[str], bool],
        *,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.config = config
        self.controls = controls
        self.breaker = breaker
        self.audit = audit
        self.recovery_pending = recovery_pending
        self.stopping = stopping if stopping is not None else asyncio.Event()  # shutdown began
        self._active: dict[str, str] = {}  # target -> "restart by user-123"
        self._tasks: set[asyncio.Task[OperationResult]] = set()

    def activity(self, target: str) -> str | None:
        """The manual operation running on `target` ("restart by user-123"), if any."""
        return self._active.get(target)

    def busy_reason(self, target: str) -> str | None:
        """Why `target` cannot take an operation now, or None if it can."""
        if self.recovery_pending(target):
            return "a recovery is running"
        if target in self._active:
            return f"a manual {self._active[target]} is running"
        if self.controls[target].lock.locked():
            return "another action holds it"
        return None

    async def perform(
        self, target: str, action: Action, user: ApiUser, source_ip: str | None
    ) -> OperationResult:
        """Run one operation to its end, even if the caller goes away meanwhile.

        Raises OperationRefused (TargetBusy among them) and AuditWriteError, with nothing run.
        """
        control = self.controls[target]
        operation_id = uuid.uuid4().hex[:12]
        busy = self.busy_reason(target)
        refusal: OperationRefused | None = None
        if self.stopping.is_set():
            refusal = OperationRefused(
                "shutting_down",
                "the remediator is shutting down: try again once it is back",
                retry_after=self.config.remediator.shutdown_grace_seconds,
            )
        elif busy is not None:
            refusal = TargetBusy(f"target {target!r} is busy: {busy}; try again when it ends")
        elif control.refusal is not None:
            refusal = OperationRefused("no_ssh", control.refusal)
        elif control.dry_run:
            refusal = OperationRefused(
                "dry_run", "remediator.dry_run is set: state-changing commands are not run"
            )
        else:
            # The lock is free and nobody waits for it (busy_reason() said so, and nothing
            # awaited since): acquire() takes it without suspending, so no recovery admitted
            # from now on can slip in before this operation; it waits for the lock instead.
            await control.lock.acquire()
            refusal = await self._hold(control, action, f"{action.value} by {user.id}")
        if refusal is not None:
            await self._refused(
                refusal,
                target=target,
                operation=action.value,
                user=user,
                source_ip=source_ip,
                operation_id=operation_id,
            )
            raise refusal
        self._active[target] = f"{action.value} by {user.id}"
        task = asyncio.create_task(
            self._run(control, action, user, source_ip, operation_id),
            name=f"operation-{target}-{action.value}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _hold(
        self, control: TargetControl, action: Action, holder: str
    ) -> OperationRefused | None:
        """With the target's lock taken: hold the target (across replicas, if any) and check
        the start budget; the refusal, with the lock given back, if the operation may not run."""
        refusal: OperationRefused | None = None
        budget = control.start_budget
        try:
            busy = await control.lock.take(holder)
            if busy is not None:
                refusal = TargetBusy(
                    f"target {control.name!r} is busy: {busy}; try again when it ends"
                )
            elif action in STARTS:
                await budget.refresh()
        except CoordinationUnavailable as e:
            refusal = OperationRefused(
                "coordination_unavailable", f"cannot hold {control.name!r} across replicas: {e}"
            )
        except BaseException:
            control.lock.release()
            raise
        if refusal is None and action in STARTS and (wait := budget.free_in()) > 0:
            # Nobody else can take a slot meanwhile (they run under the lock), only time frees
            # one: refusing now is exact, and keeps a person from waiting on a held target.
            refusal = OperationRefused(
                "start_limit",
                f"{budget.burst} starts of {control.unit} within {budget.interval:g}s already "
                f"(systemd's start limit is near): try again in {math.ceil(wait)}s",
                retry_after=wait,
            )
        if refusal is not None:
            control.lock.release()
        return refusal

    async def _refused(  # noqa: PLR0913 -- the fields of one audit event
        self,
        refusal: OperationRefused,
        *,
        target: str,
        operation: str,
        user: ApiUser,
        source_ip: str | None,
        operation_id: str,
    ) -> None:
        await self.audit.write(
            ServiceOperation(
                service=target,
                operation=operation,
                user=user.actor,
                source_ip=source_ip,
                success=False,
                risk_level=RISK[operation],
                phase="refused",
                operation_id=operation_id,
                reason=refusal.reason,
                detail=str(refusal),
            )
        )

    async def _run(
        self,
        control: TargetControl,
        action: Action,
        user: ApiUser,
        source_ip: str | None,
        operation_id: str,
    ) -> OperationResult:
        """The operation, under the target's lock that perform() took for it."""
        try:
            run = _Run(
                self,
                control,
                action,
                user=user,
                source_ip=source_ip,
                operation_id=operation_id,
            )
            return await run.execute()
        finally:
            control.lock.release()
            self._active.pop(control.name, None)

    async def reset_breaker(
        self, target: str, user: ApiUser, source_ip: str | None
    ) -> tuple[BreakerState, BreakerState]:
        """Close the target's breaker, audited first; return its state before and after."""
        before = await asyncio.to_thread(self.breaker.state, target)
        event = CircuitBreaker(
            service=target,
            operation="reset",
            user=user.actor,
            source_ip=source_ip,
            success=True,
            was_open=before.open,
            reason=before.reason,
        )
        await changed(self.audit, self.breaker, event, lambda b, e: b.reset(target, e))
        after = await asyncio.to_thread(self.breaker.state, target)
        log.info("%s: circuit breaker reset by %s (was %s)", target, user.id, before.open)
        return before, after

    def in_progress(self) -> set[asyncio.Task[OperationResult]]:
        """The operations running now."""
        return set(self._tasks)

    async def close(self) -> None:
        """Cancel the operations in progress (each audits its interruption) and wait for them
        to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Run:
    """One operation's state while it runs, under the target's lock."""

    def __init__(  # noqa: PLR0913 -- one operation's inputs
        self,
        ops: Operations,
        control: TargetControl,
        action: Action,
        *,
        user: ApiUser,
        source_ip: str | None,
        operation_id: str,
    ) -> None:
        self.ops = ops
        self.control = control
        self.action = action
        self.user = user
        self.actor: Actor = user.actor
        self.source_ip = source_ip
        self.operation_id = operation_id
        self.started = time.monotonic()
        self.state_before: str | None = None
        self.state_after: str | None = None
        self.exit_code: int | None = None
        self.breaker_opened = False
        self.log = target_logger(log, control.name)
        self.acting = Acting(
            control,
            self.actor,
            source_ip,
            {"operation_id": operation_id},
            ops.config.auto_recovery.transition_timeout_seconds,
            ops.config.health_check.ping_timeout_seconds,
        )

    def _event(self, phase: str, success: bool | None, **extra: Any) -> ServiceOperation:  # noqa: ANN401
        return ServiceOperation(
            service=self.control.name,
            operation=self.action.value,
            user=self.actor,
            source_ip=self.source_ip,
            success=success,
            risk_level=RISK[self.action.value],
            ssh_key_used=True,
            phase=phase,
            operation_id=self.operation_id,
            unit=self.control.unit.name,
            **extra,
        )

    async def execute(self) -> OperationResult:
        await self.ops.audit.write(self._event("started", None))
        self.log.info("manual %s by %s from %s", self.action.value, self.user.id, self.source_ip)
        outcome: str | None = None
        try:
            success, detail = await self._act()
        except OperationRefused as refusal:
            await self._finish(
                success=False, detail=str(refusal), outcome="refused", reason=refusal.reason
            )
            raise
        except (SshError, NoSshConfigured, CommandRejected, Fenced) as e:
            success, detail = False, str(e)
        except asyncio.CancelledError:
            # Shutdown's grace is over: say so in the audit and to the person still waiting.
            success, detail = False, "interrupted: the remediator shut down before it was verified"
            outcome = "interrupted"
        except AuditWriteError as e:
            if self.exit_code is None:  # nothing ran: 503, and an end owed to its start
                with contextlib.suppress(AuditWriteError):
                    await self._finish(
                        success=False,
                        detail=f"not run: audit log unavailable: {e}",
                        outcome="aborted",
                    )
                raise
            # The command ran; verifying it would mean running unaudited commands.
            self.log.warning("manual %s ran, then the audit log failed: %s", self.action.value, e)
            success, detail = False, f"{self.action.value} ran but was not verified: {e}"
        result = OperationResult(
            operation_id=self.operation_id,
            target=self.control.name,
            operation=self.action.value,
            user=self.user,
            success=success,
            detail=detail,
            unit=self.control.unit.name,
            unit_state_before=self.state_before,
            unit_state_after=self.state_after,
            exit_code=self.exit_code,
            duration_seconds=time.monotonic() - self.started,
            circuit_breaker_opened=self.breaker_opened,
        )
        try:
            await self._finish(
                success=success,
                detail=detail,
                outcome=outcome or ("success" if success else "failure"),
            )
        except AuditWriteError as e:  # it ran: say what happened rather than a bare 503
            self.log.warning("could not audit the end of manual %s: %s", self.action.value, e)
        self.log.info("manual %s: %s", self.action.value, detail)
        return result

    async def _finish(
        self, *, success: bool, detail: str, outcome: str, reason: str | None = None
    ) -> None:
        """The terminal event; `result.outcome` says how it ended (docs/reference.md)."""
        event = self._event(
            "finished",
            success,
            duration_seconds=time.monotonic() - self.started,
            exit_code=self.exit_code,
            unit_state_before=self.state_before,
            unit_state_after=self.state_after,
            detail=detail,
            circuit_breaker_opened=self.breaker_opened,
            outcome=outcome,
            reason=reason,
        )
        await write_or_owe(self.ops.audit, event)  # its start is on disk: its end is owed

    async def _act(self) -> tuple[bool, str]:
        c = self.control
        self.state_before = await self.acting.settled()
        if self.action == Action.RELOAD and self.state_before not in RUNNING:
            raise OperationRefused(
                "not_active",
                f"unit {c.unit} is {self.state_before or 'in no state'}: reload needs a running "
                "service (start it instead)",
            )
        if self.action == Action.STOP:
            await self._open_breaker()
        expect = Expect.STOPPED if self.action == Action.STOP else Expect.RUNNING
        found = await self.acting.act(ServiceControl(self.action, c.unit), expect)
        self.exit_code, self.state_after = found.exit_code, found.state_after
        if found.exit_code is None and isinstance(found.error, SshCommandTimeout):
            # Cut at its timeout: systemd may still be carrying the job out, so say what the
            # unit is once it settles rather than nothing.
            with contextlib.suppress(SshError):
                self.state_after = await self.acting.settled()
            return False, f"{found.error}; unit is {self.state_after or 'unknown'}"
        if found.error is not None:
            return False, str(found.error)
        if self.action == Action.STOP:
            return self._judge_stopped(found)
        return self._judge_running(found)

    def _judge_running(self, found: Found) -> tuple[bool, str]:
        problems = [p for p in (found.failed, found.ping_problem) if p]
        if self.state_after not in RUNNING:
            problems.append(f"unit is {self.state_after or 'in no state'}")
        if problems:
            return False, "; ".join(problems)
        return True, "PONG and active"

    def _judge_stopped(self, found: Found) -> tuple[bool, str]:
        problems = [found.failed] if found.failed else []
        if self.state_after not in STOPPED:
            problems.append(f"unit is {self.state_after or 'in no state'}")
        elif found.ping_problem:
            problems.append(found.ping_problem)
        if problems:
            return False, "; ".join(problems)
        suffix = "; auto-recovery is off until an admin resets the circuit breaker"
        return True, f"unit {self.state_after} and PING unanswered{suffix}"

    async def _open_breaker(self) -> None:
        name = self.control.name
        reason = f"manual stop by {self.user.id}: auto-recovery is off until an admin resets it"
        try:
            before = await asyncio.to_thread(self.ops.breaker.state, name)
        except BreakerStateError as e:
            # An unreadable state keeps every recovery suppressed already (fail safe).
            self.log.warning("manual stop: circuit breaker state unusable: %s", e)
            return
        if before.open:
            return
        event = breaker_opened(
            name,
            actor=self.actor,
            source_ip=self.source_ip,
            reason=reason,
            operation_id=self.operation_id,
        )
        try:
            await changed(
                self.ops.audit, self.ops.breaker, event, lambda b, e: b.trip(name, reason, e)
            )
        except BreakerStateError as e:
            # A state that cannot be saved suppresses recoveries too (they cannot count).
            self.log.warning("manual stop: could not open the circuit breaker: %s", e)
            return
        self.breaker_opened = True
