"""How an action on a target is judged: the unit's state, waited out of transition, and PING.

Shared by the recovery engine and the operator API's manual operations, so that an automatic
and a manual start are verified the same way: PONG within `ping_timeout_seconds` and the unit
`active` once it has left any transitional state (at most `transition_timeout_seconds`). Every
`is-active` goes through the target's `run`, so it is audited like any other command.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

from redis_autoheal.commands import Command, IsActive, Unit
from remediator.audit import AUTOHEAL, Actor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis_autoheal.ssh import CommandResult

PING_RETRY_SECONDS = 0.1  # between PINGs refused while the server comes up (or goes down)
TRANSITION_POLL_SECONDS = 0.5
STABLE_POLL_SECONDS = 1.0
TRANSITIONAL = frozenset({"activating", "deactivating", "reloading", "refreshing"})


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

    async def ping(self, timeout_seconds: float | None = None) -> str | None: ...


async def unit_state(
    control: Checkable,
    *,
    actor: Actor = AUTOHEAL,
    source_ip: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> str:
    """The first word `systemctl is-active UNIT` prints ("" if nothing)."""
    result = await control.run(
        IsActive(control.unit), actor=actor, source_ip=source_ip, context=context
    )
    words = result.stdout.split()
    return words[0] if words else ""


async def settled_state(
    control: Checkable,
    timeout_seconds: float,
    *,
    actor: Actor = AUTOHEAL,
    source_ip: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> str:
    """`is-active`, re-read while the unit is in transition, for at most `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        state = await unit_state(control, actor=actor, source_ip=source_ip, context=context)
        remaining = deadline - time.monotonic()
        if state not in TRANSITIONAL or remaining <= 0:
            return state
        await asyncio.sleep(min(TRANSITION_POLL_SECONDS, remaining))


async def pong_within(control: Checkable, seconds: float) -> str | None:
    """None once PING answers within `seconds` (retrying while refused), else why not."""
    deadline = time.monotonic() + seconds
    problem: str | None = "no PING sent"
    while (remaining := deadline - time.monotonic()) > 0:
        problem = await control.ping(remaining)
        if problem is None:
            return None
        await asyncio.sleep(min(PING_RETRY_SECONDS, max(deadline - time.monotonic(), 0)))
    if problem is not None and problem.startswith("no PONG within"):
        return f"no PONG within {seconds:g}s"  # the last PING timed out: nothing to add
    return f"no PONG within {seconds:g}s ({problem})"


async def silent_within(control: Checkable, seconds: float) -> str | None:
    """None once PING stops answering within `seconds` (after a stop), else what it found."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if await control.ping(min(remaining, 1.0)) is not None:
            return None
        await asyncio.sleep(min(PING_RETRY_SECONDS, max(deadline - time.monotonic(), 0)))
    return f"Redis still answers PING {seconds:g}s after the stop"


async def stable_for(control: Checkable, seconds: float) -> str | None:
    """None if PING keeps answering for `seconds` (checked every second), else the failure."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(STABLE_POLL_SECONDS, remaining))
        problem = await control.ping()
        if problem is not None:
            return problem
    return None
