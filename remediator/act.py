"""Acting on a target and looking at what the action did: the one path that auto-recovery
(remediator.recovery) and the operator's manual operations (remediator.operations) share.

`Acting` is one run's view of its target: who acts, from where, and the ids every
`ssh_command` event of the run carries. `Acting.act` runs one command and verifies it, and
returns what it found (`Found`); what that means (escalate, report a failure) is the caller's
policy. The breaker-open audit event is built here, for both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from redis_autoheal.errors import SshError
from redis_autoheal.units import STOPPED
from remediator.errors import AuditWriteError
from remediator.events import CircuitBreaker
from remediator.verify import (
    Checkable,
    pong_within,
    settled_state,
    silent_within,
    unit_state,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from redis_autoheal.commands import ServiceControl
    from remediator.audit import AuditWriter
    from remediator.breaker import BreakerState, BreakerStore
    from remediator.events import Actor, Event


class Target(Checkable, Protocol):
    """What acting needs of a target (TargetControl; a fake in the decision-table tests)."""

    @property
    def name(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def lock(self) -> asyncio.Lock: ...
    @property
    def refusal(self) -> str | None: ...


class Expect(Enum):
    """What a command is meant to leave behind."""

    RUNNING = "running"  # PONG within the timeout, and the unit active once settled
    STOPPED = "stopped"  # the unit inactive or failed once settled, and PING unanswered


@dataclass(frozen=True)
class Found:
    """What one command and the look after it found."""

    exit_code: int | None  # None: the command did not end (see `error`)
    failed: str  # "" when it exited 0, else "restart exited 1"
    state_after: str | None  # the unit's state once settled; None if not read
    ping_problem: str | None  # RUNNING: why no PONG; STOPPED: that it still answers
    error: SshError | None = None  # the host could not be reached or the command was cut


@dataclass(frozen=True)
class Acting:
    """One run (a recovery or an operation) acting on its target."""

    control: Target
    actor: Actor
    source_ip: str | None
    context: Mapping[str, Any]
    transition_timeout_seconds: float
    ping_timeout_seconds: float

    def at(self, **context: Any) -> Acting:  # noqa: ANN401 -- JSON values
        """The same run, with other ids on its commands' events (a recovery's next attempt)."""
        return Acting(
            self.control,
            self.actor,
            self.source_ip,
            context,
            self.transition_timeout_seconds,
            self.ping_timeout_seconds,
        )

    async def state(self) -> str:
        """`is-active`, once."""
        reading = await unit_state(
            self.control, actor=self.actor, source_ip=self.source_ip, context=self.context
        )
        return reading.state

    async def settled(self) -> str:
        """`is-active`, re-read while the unit is in transition, bounded."""
        reading = await settled_state(
            self.control,
            self.transition_timeout_seconds,
            actor=self.actor,
            source_ip=self.source_ip,
            context=self.context,
        )
        return reading.state

    async def act(self, command: ServiceControl, expect: Expect) -> Found:
        """Run `command`, then look: PING and the settled unit state, in the order `expect`
        needs. An SSH failure on the way is returned with what was found before it."""
        exit_code: int | None = None
        failed = ""
        state: str | None = None
        problem: str | None = None
        try:
            result = await self.control.run(
                command, actor=self.actor, source_ip=self.source_ip, context=self.context
            )
            exit_code = result.exit_code
            failed = "" if result.ok else f"{command.name} exited {result.exit_code}"
            if expect == Expect.RUNNING:
                pong = await pong_within(self.control, self.ping_timeout_seconds)
                problem = None if pong.ok else pong.detail
                state = await self.settled()
            else:
                state = await self.settled()
                if state in STOPPED:
                    silence = await silent_within(self.control, self.ping_timeout_seconds)
                    problem = None if silence.ok else silence.detail
        except SshError as err:
            return Found(exit_code, failed, state, problem, error=err)
        return Found(exit_code, failed, state, problem)


def breaker_opened(  # noqa: PLR0913 -- the fields of one audit event
    target: str,
    *,
    actor: Actor,
    source_ip: str | None,
    reason: str | None,
    recovery_id: str | None = None,
    operation_id: str | None = None,
    recoveries: int | None = None,
) -> CircuitBreaker:
    """The audit event of a circuit breaker opening: counted full by a recovery, or tripped
    by a manual stop."""
    return CircuitBreaker(
        service=target,
        operation="open",
        user=actor,
        source_ip=source_ip,
        success=True,
        recovery_id=recovery_id,
        operation_id=operation_id,
        reason=reason,
        recoveries=recoveries,
    )


async def changed(
    audit: AuditWriter,
    breaker: BreakerStore,
    event: Event,
    change: Callable[[BreakerStore, Event], BreakerState],
) -> BreakerState:
    """A person's change of a breaker (`change`, in a thread), recorded by `event`: written
    first, then made (fail closed); a store that commits a change's events with it (etcd's)
    makes both at once, and the event is written to the log then."""
    if not breaker.commits_events:
        await audit.write(event)
    state = await asyncio.to_thread(change, breaker, event)
    if breaker.commits_events:
        await audit.write(event)
    return state


async def write_or_owe(audit: AuditWriter, event: Event) -> None:
    """Write a run's terminal event; if the log cannot take it now, it is owed (deferred) and
    the AuditWriteError raised."""
    try:
        await audit.write(event)
    except AuditWriteError:
        audit.defer(event)
        raise
