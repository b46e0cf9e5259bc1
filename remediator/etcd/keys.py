"""The etcd keys the replicas share, under one prefix.

- `breaker`: every target's circuit breaker, in the state file's JSON format;
- `claim/<target>`: the replica holding the target for a recovery, on that replica's lease
  (gone with it); its create revision is the recovery's fence;
- `seen/<target>`: when the target's last recovery was claimed (its outage is handled: alerts
  that started before are duplicates), by which replica, and whether it is still running (a
  running one without a claim was cut: another replica takes it over, going on from the
  `attempt` and `level` of its last step, kept there).
"""

from __future__ import annotations

PREFIX = "/redis-autoheal/"
BREAKER = f"{PREFIX}breaker"


def claim_key(target: str) -> str:
    return f"{PREFIX}claim/{target}"


def seen_key(target: str) -> str:
    return f"{PREFIX}seen/{target}"


def lock_key(target: str) -> str:
    """The replica running a manual operation on the target, on its lease (remediator.etcd.lock)."""
    return f"{PREFIX}lock/{target}"


def budget_key(target: str) -> str:
    """The target's start budget: the times of its last starts, a JSON list."""
    return f"{PREFIX}budget/{target}"
