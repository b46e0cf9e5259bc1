"""Refused requests in the audit log, aggregated per source: a flood cannot push evidence out.

For a caller without a valid token (no or wrong token, address not allowed), the first
violation from a source address is audited in full (`security_violation`); later ones are
counted, and every `SUMMARY_SECONDS` while they go on one `security_violation_summary` event
says how many, of which reasons, first and last seen. A source quiet for a whole interval is
forgotten; at shutdown, what is counted and not yet audited is written; a summary that cannot be
written is kept and tried again. At most `MAX_SOURCES` sources are followed; the rest are
counted together (`source_ip: null`, `other_sources: true`), so refusals add at most
2 x (MAX_SOURCES + 1) events an interval.

A refusal by role (`forbidden_role`) comes with a valid token: it is audited in full each time,
naming the person.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from remediator.errors import AuditWriteError
from remediator.events import SecurityViolation, SecurityViolationSummary

if TYPE_CHECKING:
    from collections.abc import Callable

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

    def add(self, event: SecurityViolation) -> None:
        self.count += 1
        self.first_seen = self.first_seen or event.timestamp
        self.last_seen = event.timestamp
        self.reasons[str(event.reason)] += 1
        self.last_operation = event.operation

    def merge(self, older: _Window) -> None:
        """Take back the counts of an earlier window whose summary could not be written."""
        self.count += older.count
        self.first_seen = older.first_seen or self.first_seen
        self.last_seen = self.last_seen or older.last_seen
        self.reasons.update(older.reasons)
        self.last_operation = self.last_operation or older.last_operation


def _summary(source: Source, window: _Window, interval: float) -> SecurityViolationSummary:
    return SecurityViolationSummary(
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
        other_sources=isinstance(source, _Others),
    )


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

    async def record(self, event: SecurityViolation) -> bool:
        """Audit a `security_violation` event, or count it; True if it was audited in full."""
        source: Source = event.source_ip
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
