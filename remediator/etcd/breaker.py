"""Every target's circuit breaker in one etcd key, in the state file's format: the same
`BreakerStore`, read afresh at each use and saved only if nobody saved it since it was read
(compare-and-swap on its revision, retried), so replicas count and reset one breaker. A
recovery is counted only while its replica still holds the target (its fence, `fence_of`).
With a `replica` name, a change's audit events (a reset, an opening) are put into the audit
trail in the change's transaction (`commits_events`), and `committed` is told of them.

A breaker that cannot be read is open, as with the file: refusing to act is the safe failure.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from remediator.breaker import FORMAT_VERSION, BreakerState, BreakerStore, parse_states
from remediator.errors import BreakerStateError, CoordinationUnavailable, Fenced
from remediator.etcd import gateway as g
from remediator.etcd.audit import entry
from remediator.etcd.keys import BREAKER, claim_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from redis_autoheal.config import CircuitBreaker
    from remediator.etcd.gateway import SyncGateway
    from remediator.events import Event

KEY = BREAKER
SAVE_TRIES = 20  # compare-and-swap rounds lost to other replicas before giving up


class _Conflict(BreakerStateError):
    """Another replica saved the breakers between our read and our save."""


class EtcdBreakerStore(BreakerStore):
    """The breakers of all replicas; see the module docstring."""

    def __init__(self, gateway: SyncGateway, settings: CircuitBreaker) -> None:
        super().__init__(Path("etcd:"), settings)
        self.path = Path(f"etcd:{KEY}")  # as the messages name it
        self._gateway = gateway
        self._read_revision = 0
        self.fence_of: Callable[[str], int | None] = lambda _target: None
        self.replica: str | None = None  # the audit trail's name of who changes the breakers
        self.committed: Callable[[Sequence[Event]], None] = lambda _events: None
        self._last: dict[str, BreakerState] = {}  # as last read
        # .fence: the claim a record_recovery's save needs; .events: the change's audit events
        # (.opened: of the opening it may make)
        self._saving = threading.local()

    @property
    def commits_events(self) -> bool:
        return self.replica is not None

    def check(self) -> None:
        with self._locked():
            self._read()

    def record_recovery(
        self, target: str, opened: Callable[[BreakerState], Event] | None = None
    ) -> BreakerState:
        fence = self.fence_of(target)
        self._saving.fence = None if fence is None else (claim_key(target), fence)
        self._saving.opened = None if opened is None else (target, opened)
        try:
            return self._retry(lambda: super(EtcdBreakerStore, self).record_recovery(target))
        finally:
            self._saving.fence = self._saving.opened = None

    def trip(self, target: str, reason: str, event: Event | None = None) -> BreakerState:
        self._saving.events = [] if event is None else [event]
        try:
            return self._retry(lambda: super(EtcdBreakerStore, self).trip(target, reason))
        finally:
            self._saving.events = []

    def reset(self, target: str, event: Event | None = None) -> BreakerState:
        self._saving.events = [] if event is None else [event]
        try:
            return self._retry(lambda: super(EtcdBreakerStore, self).reset(target))
        finally:
            self._saving.events = []

    @staticmethod
    def _retry(change: Callable[[], BreakerState]) -> BreakerState:
        for _ in range(SAVE_TRIES - 1):
            with contextlib.suppress(_Conflict):
                return change()
        return change()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def _read(self) -> dict[str, BreakerState]:
        try:
            answer = self._gateway.call("kv/txn", g.txn([], [g.get(KEY)]))
        except CoordinationUnavailable as e:
            raise BreakerStateError(f"cannot read the breakers in etcd: {e}") from None
        kv = g.ranged(answer, 0)
        self._read_revision = 0 if kv is None else kv["mod_revision"]
        self._last = {} if kv is None else parse_states(kv["value"], self.path)
        return self._last

    def _events(self, states: dict[str, BreakerState]) -> list[Event]:
        """The audit events the save being made records."""
        events: list[Event] = list(getattr(self._saving, "events", None) or [])
        opened: tuple[str, Callable[[BreakerState], Event]] | None = getattr(
            self._saving, "opened", None
        )
        if opened is not None:
            target, event = opened
            new, old = states.get(target, BreakerState()), self._last.get(target, BreakerState())
            if new.open and not old.open:
                events.append(event(new))
        return events

    def _save(self, states: dict[str, BreakerState]) -> None:
        data = {
            "version": FORMAT_VERSION,
            "targets": {name: s.as_json() for name, s in sorted(states.items())},
        }
        compares = [g.compare(KEY, "MOD", self._read_revision)]
        fence: tuple[str, int] | None = getattr(self._saving, "fence", None)
        if fence is not None:
            compares.append(g.compare(fence[0], "CREATE", fence[1]))
        events = self._events(states) if self.replica is not None else []
        entries = [entry(self.replica, e) for e in events if self.replica is not None]
        body = g.txn(compares, [g.put(KEY, json.dumps(data, indent=2) + "\n"), *entries])
        try:
            answer = self._gateway.call("kv/txn", body)
            if answer.get("succeeded"):
                if events:
                    self.committed(events)
                return
            if fence is not None:
                held = self._gateway.call("kv/txn", g.txn([compares[1]], []))
                if not held.get("succeeded"):
                    raise Fenced("this replica no longer holds the target: not counted")
        except CoordinationUnavailable as e:
            raise BreakerStateError(f"cannot save the breakers in etcd: {e}") from None
        raise _Conflict("the breakers changed in etcd meanwhile")
