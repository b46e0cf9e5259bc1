"""How an action on a target is judged: the unit's state, waited out of transition, and PING.

Recoveries and manual operations verify the same way, through these helpers. Each returns a
small typed finding; an `is-active` goes through the target's `run`, so it is audited like any
other command, and a PING through the target's one prober (redis_autoheal.probe).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis_autoheal.commands import Command, IsActive, Unit
from redis_autoheal.probe import Reason
from redis_autoheal.units import RUNNING, STOPPED, TRANSITIONS
from remediator.audit import AUTOHEAL, Actor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis_autoheal.probe import ConnectivityResult
    from redis_autoheal.ssh import CommandResult

PING_RETRY_SECONDS = 0.1  # between PINGs refused while the server comes up (or goes down)
TRANSITION_POLL_SECONDS = 0.5
STABLE_POLL_SECONDS = 1.0


class Checkable(Protocol):
    """What verification needs of a target: its unit, its commands and its PING."""

    @property
    def unit(self) -> Unit: ...

    async def run(
        self,
        command: Command,
        *,
        actor: Actor = AUTOHEAL,
        source_ip: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> CommandResult: ...

    async def ping(self, timeout_seconds: float | None = None) -> ConnectivityResult: ...


@dataclass(frozen=True, slots=True)
class UnitReading:
    """What `systemctl is-active UNIT` printed: its first word, "" if nothing (audited as is)."""

    state: str

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED

    @property
    def in_transition(self) -> bool:
        return self.state in TRANSITIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class PingFinding:
    """What watching PING found: `ok` if it saw what was waited for, within `seconds`."""

    ok: bool
    seconds: float
    reason: Reason | None = None  # why the last PING failed, if it did
    detail: str = ""  # why the check did not pass, for the audit log; "" when ok


async def unit_state(
    control: Checkable,
    *,
    actor: Actor = AUTOHEAL,
    source_ip: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> UnitReading:
    """One `systemctl is-active UNIT`."""
    result = await control.run(
        IsActive(control.unit), actor=actor, source_ip=source_ip, context=context
    )
    words = result.stdout.split()
    return UnitReading(words[0] if words else "")


async def settled_state(
    control: Checkable,
    timeout_seconds: float,
    *,
    actor: Actor = AUTOHEAL,
    source_ip: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> UnitReading:
    """`is-active`, re-read while the unit is in transition, for at most `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        reading = await unit_state(control, actor=actor, source_ip=source_ip, context=context)
        remaining = deadline - time.monotonic()
        if not reading.in_transition or remaining <= 0:
            return reading
        await asyncio.sleep(min(TRANSITION_POLL_SECONDS, remaining))


async def pong_within(control: Checkable, seconds: float) -> PingFinding:
    """PING until it answers (retrying while refused), for at most `seconds`."""
    started = time.monotonic()
    deadline = started + seconds
    last: ConnectivityResult | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        last = await control.ping(remaining)
        if last.success:
            return PingFinding(ok=True, seconds=time.monotonic() - started)
        await asyncio.sleep(min(PING_RETRY_SECONDS, max(deadline - time.monotonic(), 0)))
    detail = f"no PONG within {seconds:g}s"
    if last is None:
        detail += " (no PING sent)"
    elif last.reason is not Reason.TIMEOUT:  # a timeout says nothing the first words do not
        detail += f" ({last.reason}: {last.message})"
    reason = None if last is None else last.reason
    return PingFinding(ok=False, seconds=time.monotonic() - started, reason=reason, detail=detail)


async def silent_within(control: Checkable, seconds: float) -> PingFinding:
    """PING until it stops answering (after a stop), for at most `seconds`."""
    started = time.monotonic()
    deadline = started + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        last = await control.ping(min(remaining, 1.0))
        if not last.success:
            return PingFinding(ok=True, seconds=time.monotonic() - started, reason=last.reason)
        await asyncio.sleep(min(PING_RETRY_SECONDS, max(deadline - time.monotonic(), 0)))
    detail = f"Redis still answers PING {seconds:g}s after the stop"
    return PingFinding(ok=False, seconds=time.monotonic() - started, detail=detail)


async def stable_for(control: Checkable, seconds: float) -> PingFinding:
    """PING every second for `seconds`: ok if every one answered, else the first failure."""
    started = time.monotonic()
    deadline = started + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(STABLE_POLL_SECONDS, remaining))
        last = await control.ping()
        if not last.success:
            detail = f"{last.reason}: {last.message}"
            return PingFinding(
                ok=False, seconds=time.monotonic() - started, reason=last.reason, detail=detail
            )
    return PingFinding(ok=True, seconds=time.monotonic() - started)
