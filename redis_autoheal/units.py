"""The states of a systemd unit as `systemctl is-active` prints them, and what each means here.

`reloading` is running: systemd documents it as "active and reloading its configuration", and
`is-active` exits 0 for it as for `active`, so a probe, the health check and the alert rules
count it as healthy. It is also a transition, like activating and deactivating: a state the
unit leaves on its own, so the remediator waits it out (bounded) before it decides or verifies.
"""

from __future__ import annotations

from enum import StrEnum


class UnitState(StrEnum):
    """The states `redis_systemd_unit_state` always reports, in its order."""

    ACTIVE = "active"
    RELOADING = "reloading"
    INACTIVE = "inactive"
    FAILED = "failed"
    ACTIVATING = "activating"
    DEACTIVATING = "deactivating"


UNIT_STATES: tuple[str, ...] = tuple(UnitState)
# What the exporter reports for anything else systemctl prints (maintenance, a garbled line).
UNKNOWN_STATE = "unknown"

RUNNING = frozenset({UnitState.ACTIVE, UnitState.RELOADING})  # is-active exits 0: healthy
STOPPED = frozenset({UnitState.INACTIVE, UnitState.FAILED})
# States a unit leaves on its own; "refreshing" (systemd 254) is one too, though not reported.
TRANSITIONS = frozenset(
    {UnitState.ACTIVATING, UnitState.DEACTIVATING, UnitState.RELOADING, "refreshing"}
)
