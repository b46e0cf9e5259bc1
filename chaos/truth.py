"""The ground truth of one sequence, as plain data: what the host did, what the audit says,
what the pager got, whether the remediator answered. Collected by `chaos.runner`, judged by
`chaos.invariants`, and easy to craft by hand (tests/chaos/test_invariants.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATE_CHANGING = ("reload", "start", "restart", "stop")


@dataclass(frozen=True)
class Sample:
    """The host seen from a client at wall time `t`: the unit's state (systemd's own record)
    and whether Redis answered PING."""

    t: float
    state: str
    pong: bool

    @property
    def healthy(self) -> bool:
        return self.state == "active" and self.pong


@dataclass(frozen=True)
class Action:
    """One `systemctl` run on the host (the stand-in's own log of invocations)."""

    verb: str
    ts: float
    end_ts: float | None = None
    result: str | None = None
    sudo_user: str | None = "autobot"


@dataclass(frozen=True)
class Page:
    """On-call was paged at `t`, and why (direct mode: derived, see chaos.invariants)."""

    t: float
    why: str
    recovery_id: str | None = None
    alert_key: str | None = None  # "fingerprint@startsAt,..." of the alerts a recovery served
    alert_starts: tuple[float, ...] = ()  # their startsAt, as seconds


@dataclass(frozen=True)
class Probe:
    """One GET /healthz of the remediator."""

    t: float
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Limits:
    """The numbers the invariants are judged by."""

    detection_budget: float = 2.0  # outage to notification, at most (shorter ones need nothing)
    page_grace: float = 15.0  # after detection: healed by then, or someone was paged
    harm_window: float = 1.0  # without a look: healthy this long before an action is harm
    look_margin: float = 0.15  # healthy from this long before the last look: seen healthy
    sample_gap: float = 0.35  # samples further apart than this leave the window unknown
    start_burst: int = 5  # systemd's StartLimitBurst ...
    start_interval: float = 10.0  # ... within StartLimitIntervalSec
    command_lag: float = 6.0  # audit `started` to the host's invocation, at most


@dataclass
class Truth:
    """Everything the invariants look at, for one sequence."""

    name: str  # "seed S sequence I": replay with bench/chaos.py --seed S --only I
    started: float
    ended: float
    samples: list[Sample] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    looks: list[float] = field(default_factory=list)  # the remediator's `is-active`s on the host
    audit: list[dict[str, Any]] = field(default_factory=list)  # every event, oldest first
    audit_problems: list[str] = field(default_factory=list)  # lines that did not parse
    breaker: dict[str, Any] = field(default_factory=dict)  # the target's breaker state file
    pages: list[Page] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    remediator_down: list[tuple[float, float]] = field(default_factory=list)  # on purpose
    limits: Limits = field(default_factory=Limits)
