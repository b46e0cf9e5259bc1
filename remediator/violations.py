"""Refused requests in the audit log, aggregated per source: a flood cannot push evidence out.

Every refusal is counted in `autoheal_security_violations_total{reason}` (remediator.security).
What the audit log gets of a caller without a valid token (no or wrong token, address not
allowed) is bounded per source address:
- the first violation from a source is audited at once, in full (`security_violation`);
- further ones from that source are only counted; every `SUMMARY_SECONDS` while they go on, one
  `security_violation_summary` event says how many there were, of which reasons, when the first
  and last of them came, and the last request's method and path:

      {"event_type": "security_violation_summary", "source_ip": "10.0.0.7", "count": 4999,
       "first_seen": "2025-10-10T14:30:00Z", "last_seen": "2025-10-10T14:30:59Z",
       "reasons": {"invalid_token": 4999}, "last_operation": "POST /webhook", ...}

- a source quiet for a whole interval is forgotten: its next violation is audited in full again;
- at shutdown, what is counted and not yet audited is written.

So the violations of a source are its `security_violation` events plus the `count` of its
summaries, nothing lost; a summary that cannot be written is kept and tried again. At most
`MAX_SOURCES` sources are followed at once; violations from further ones are counted together,
in a summary with `source_ip: null` and `other_sources: true`. Whatever arrives, refusals add
at most 2 x (MAX_SOURCES + 1) events an interval.

A refusal by role (`forbidden_role`) comes with a valid token: it is audited in full each time,
naming the person, as every other action of a token holder is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from remediator.audit import audit_event
from remediator.errors import AuditWriteError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from remediator.audit import AuditWriter

log = logging.getLogger(__name__)

SUMMARY_SECONDS = 60.0
MAX_SOURCES = 100  # a deployment has a few callers: Alertmanager replicas, a few operators


class _Others:
    """The key under which sources beyond MAX_SOURCES are counted together."""


OTHERS: Final = _Others()  # one object: a dict key
Source = str | None | _Others


@dataclass
class _Window:
    """A source's violations counted (not audited) since `opened`."""

    opened: float
    count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    last_operation: str | None = None

    def add(self, event: Mapping[str, Any]) -> None:
        self.count += 1
        self.first_seen = self.first_seen or event["timestamp"]
        self.last_seen = event["timestamp"]
        self.reasons[str(event.get("reason"))] += 1
        self.last_operation = event.get("operation")

    def merge(self, older: _Window) -> None:
        """Take back the counts of an earlier window whose summary could not be written."""
        self.count += older.count
        self.first_seen = older.first_seen or self.first_seen
        self.last_seen = self.last_seen or older.last_seen
        self.reasons.update(older.reasons)
        self.last_operation = self.last_operation or older.last_operation


def _summary(source: Source, window: _Window, interval: float) -> dict[str, Any]:
    event = audit_event(
        "security_violation_summary",
        service=None,
        operation="refused_requests",
        source_ip=None if isinstance(source, _Others) else source,
        success=False,
        command_validated=False,
        risk_level="high",
        count=window.count,
        first_seen=window.first_seen,
        last_seen=window.last_seen,
        reasons=dict(window.reasons.most_common()),
        last_operation=window.last_operation,
        interval_seconds=interval,
    )
    if isinstance(source, _Others):
        event["other_sources"] = True
    return event


class ViolationLog:
    """Audits refused requests, aggregated per source; see the module docstring."""

    def __init__(
        self,
        audit: AuditWriter,
        *,
        interval: float = SUMMARY_SECONDS,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self.interval = interval
        self._max_sources = max_sources
        self._clock = clock
        self._windows: dict[Source, _Window] = {}
        self._flushing = asyncio.Lock()
        self._closed = False

    @property
    def pending(self) -> int:
        """Violations counted and not yet in the audit log."""
        return sum(w.count for w in self._windows.values())

    @property
    def sources(self) -> int:
        """Sources followed now (each one had a violation within the last interval or two)."""
        return len(self._windows)

    async def record(self, event: Mapping[str, Any]) -> bool:
        """Audit a `security_violation` event, or count it; True if it was audited in full."""
        source: Source = event.get("source_ip")
        if source not in self._windows and len(self._windows) >= self._max_sources:
            source = OTHERS
        window = self._windows.get(source)
        if window is not None and not self._closed:
            window.add(event)
            return False
        if not self._closed:
            window = self._windows[source] = _Window(opened=self._clock())
        try:
            await self._audit.write(event)
        except AuditWriteError as e:
            log.warning("could not audit a security violation (counted for later): %s", e)
            if window is not None:
                window.add(event)
        return True

    async def run(self) -> None:
        """Write the summaries that are due, until cancelled."""
        while True:
            await asyncio.sleep(self.interval / 4)
            try:
                await self.flush()
            except Exception:  # the counts stay; the next round tries again
                log.exception("could not write the security violation summaries")

    async def flush(self, *, everything: bool = False) -> None:
        """Write a summary for each window that is due (every window, if `everything`)."""
        async with self._flushing:
            now = self._clock()
            due: list[tuple[Source, _Window]] = []
            for source, window in list(self._windows.items()):
                if not everything and now - window.opened < self.interval:
                    continue
                if window.count == 0:  # quiet for a whole interval: forgotten
                    del self._windows[source]
                    continue
                due.append((source, window))
                self._windows[source] = _Window(opened=now)
            if not due:
                return
            summaries = [_summary(source, window, self.interval) for source, window in due]
            try:
                await self._audit.write(*summaries)
            except AuditWriteError as e:
                log.warning("could not audit %d violation summaries (kept): %s", len(due), e)
                for source, window in due:
                    self._windows.setdefault(source, _Window(opened=now)).merge(window)
                return
            for source, window in due:
                log.warning(
                    "%d more request(s) refused from %s between %s and %s: %s",
                    window.count,
                    "other sources" if isinstance(source, _Others) else source,
                    window.first_seen,
                    window.last_seen,
                    ", ".join(f"{r} {n}" for r, n in window.reasons.most_common()),
                )

    async def close(self) -> None:
        """Write every count not audited yet; later violations are audited one by one."""
        self._closed = True
        await self.flush(everything=True)
        if self.pending:
            log.error("%d refused request(s) could not be audited at shutdown", self.pending)
        self._windows.clear()
