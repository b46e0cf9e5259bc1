"""The seeded generator: one sequence of timed faults per (seed, index), the same every time.

A sequence is 1-3 outages of the test host's Redis a few seconds apart (each may flap once),
each with some of:
- the outage itself: `kill9` (unit failed), `stop` (a clean `systemctl stop` on the console:
  inactive), `terminate` (SIGTERM from outside: inactive), `sigstop` (hung: active, no PONG);
- how starts behave meanwhile: `slow_start` (starts stay activating for a while),
  `start_fails` on and off;
- Redis coming back by itself: `sigcont` after a `sigstop`, `self_start` (someone starts it on
  the console), and sometimes going down again soon after (flapping);
- trouble on the way: `link_down`/`link_up` (the host off the network), `host_key`/
  `host_key_back` (sshd presents another key), `ssh_drop` (the SSH connections cut while a
  remediator's `systemctl` runs on the host), `audit_full`/`audit_free` (the audit log's disk),
  `remediator_term`/`remediator_kill` (SIGTERM or SIGKILL while a recovery runs, restarted
  `arg` seconds later), `stale_alert` (a firing alert delivered for an outage long over).

Alertmanager's behaviour is drawn once per sequence (`AlertmanagerPlan`): one or two peers (an
HA pair: every notification twice), the repeat interval, how often a resolved notification is
late and how often a firing one arrives after its resolved one. Which notification gets which
quirk follows the order of notifications, which follows what the host does: the faults replay
exactly, the deliveries as Alertmanager's would, from the same Prometheus view of the host.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

OUTAGES = ("kill9", "stop", "terminate", "sigstop")
# Faults that wait for something to be in progress (a command on the host, a recovery) before
# they strike; `arg` is how long the remediator stays down (remediator_*), and they give up
# after WAIT_LIMIT seconds if nothing comes.
WAITING = ("ssh_drop", "remediator_term", "remediator_kill")
WAIT_LIMIT = 8.0


@dataclass(frozen=True)
class Step:
    """One fault at `at` seconds from the start of the sequence."""

    at: float
    fault: str
    arg: float = 0.0

    def describe(self) -> str:
        arg = f"({self.arg:g})" if self.arg else ""
        return f"{self.at:5.2f}s {self.fault}{arg}"


@dataclass(frozen=True)
class AlertmanagerPlan:
    """How Alertmanager behaves in this sequence (direct-webhook mode)."""

    peers: int = 1  # 2: an HA pair, each notification delivered by both
    peer_delay: float = 0.1  # the second peer's delay, at most
    repeat_interval: float = 2.0  # a firing alert is notified again this often
    late_resolved: float = 0.0  # probability that a resolved notification comes 1-4 s late
    reorder: float = 0.0  # probability that a firing repeat arrives after its resolved


@dataclass(frozen=True)
class Sequence:
    seed: int
    index: int
    steps: tuple[Step, ...]
    alertmanager: AlertmanagerPlan = field(default_factory=AlertmanagerPlan)

    @property
    def name(self) -> str:
        return f"seed {self.seed} sequence {self.index}"

    def faults(self) -> int:
        return len(self.steps)


def _rng(seed: int, index: int, part: str) -> random.Random:
    return random.Random(f"chaos:{seed}:{index}:{part}")  # a str seed hashes the same everywhere


def generate(seed: int, index: int) -> Sequence:
    """The sequence `index` of the campaign `seed`."""
    rng = _rng(seed, index, "faults")
    steps: list[Step] = []
    t = rng.uniform(0.5, 1.5)
    for _ in range(rng.randint(1, 3)):
        steps.extend(_outage(rng, t))
        t += rng.uniform(5.0, 10.0)
    if rng.random() < 0.2:
        steps.append(Step(round(rng.uniform(0.2, t), 2), "stale_alert"))
    steps.sort(key=lambda s: s.at)
    am_rng = _rng(seed, index, "alertmanager")
    alertmanager = AlertmanagerPlan(
        peers=am_rng.choice((1, 2, 2)),
        peer_delay=round(am_rng.uniform(0.0, 0.3), 2),
        repeat_interval=round(am_rng.uniform(1.0, 3.0), 2),
        late_resolved=am_rng.choice((0.0, 0.3, 0.6)),
        reorder=am_rng.choice((0.0, 0.3, 0.6)),
    )
    return Sequence(seed, index, tuple(steps), alertmanager)


def _outage(rng: random.Random, t: float) -> list[Step]:
    """One outage at t and what comes with it."""
    steps: list[Step] = []

    def at(offset: float, fault: str, arg: float = 0.0) -> None:
        steps.append(Step(round(max(0.0, t + offset), 2), fault, round(arg, 2)))

    kind = rng.choice(OUTAGES)
    _starts(rng, at)
    at(0.0, kind)
    back: float | None = None
    if kind == "sigstop":
        back = rng.uniform(0.5, 5.0)
        at(back, "sigcont")
    elif rng.random() < 0.2:
        back = rng.uniform(0.5, 4.0)
        at(back, "self_start")
    if back is not None and rng.random() < 0.35:  # flapping: down again soon after
        at(back + rng.uniform(0.3, 2.5), rng.choice(("kill9", "stop", "terminate")))
    _trouble(rng, at, slow=any(s.fault == "slow_start" and s.arg for s in steps))
    return steps


def _starts(rng: random.Random, at: Callable[..., None]) -> None:
    """How starts behave during the outage: slow, failing, or as usual."""
    if rng.random() < 0.25:
        at(-0.2, "slow_start", rng.choice((0.5, 1.5, 3.0)))
        at(rng.uniform(3.0, 8.0), "slow_start", 0.0)
    if rng.random() < 0.2:
        at(-0.1, "start_fails", 1.0)
        at(rng.uniform(2.0, 12.0), "start_fails", 0.0)


def _trouble(rng: random.Random, at: Callable[..., None], *, slow: bool) -> None:
    """At most one disruption on the way to the host or of the remediator."""
    trouble = rng.random()
    if trouble < 0.12:
        down = rng.uniform(0.3, 3.0)
        at(down, "link_down")
        at(down + rng.uniform(0.5, 5.0), "link_up")
    elif trouble < 0.22:
        change = rng.uniform(0.0, 2.0)
        at(change, "host_key")
        at(change + rng.uniform(1.0, 6.0), "host_key_back")
    elif trouble < 0.40:
        if not slow:
            at(-0.2, "slow_start", 1.5)  # a start that takes a while: time to cut it
            at(6.0, "slow_start", 0.0)
        at(0.1, "ssh_drop")
    elif trouble < 0.50:
        full = rng.uniform(0.0, 2.0)
        at(full, "audit_full")
        at(full + rng.uniform(0.5, 5.0), "audit_free")
    elif trouble < 0.70:
        at(0.1, rng.choice(("remediator_term", "remediator_kill")), rng.uniform(0.2, 2.0))
