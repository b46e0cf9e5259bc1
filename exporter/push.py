"""Sends alerts to Alertmanager's API v2 (POST /api/v2/alerts), as Prometheus does.

Every configured Alertmanager gets every alert; a push counts as delivered if one of them took
it. A firing alert carries `endsAt` (when Alertmanager may consider it over unless sent again),
a resolved one its end time. Pushes made while a POST is on its way go together in the next
one (up to BATCH alerts a POST), as Prometheus batches its own: a thousand units failing at
once make a few requests, not a thousand.

`ready()` says whether a push would be taken now, for a follower with nothing to push: the
outcome of the last contact with the Alertmanagers (a push, or a check) if recent enough, else
`GET /-/ready` of each, one check at a time for every follower.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp

from exporter import selfmetrics

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

Alert = dict[str, object]
BATCH = 256


def timestamp(unix: float) -> str:
    """RFC 3339 in UTC, as Alertmanager's API takes it."""
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def alert(
    labels: dict[str, str], annotations: dict[str, str], starts_at: float, ends_at: float
) -> Alert:
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": timestamp(starts_at),
        "endsAt": timestamp(ends_at),
    }


class AlertPusher:
    """One HTTP client for the exporter's pushes to the Alertmanagers at `urls`."""

    def __init__(self, urls: Sequence[str], timeout_seconds: float) -> None:
        self.bases = [url.rstrip("/") for url in urls]
        self.urls = [base + "/api/v2/alerts" for base in self.bases]
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._failing: set[str] = set()  # pushes and checks whose last try failed (logged once)
        self._queued: list[tuple[list[Alert], asyncio.Future[bool]]] = []
        self._sender: asyncio.Task[None] | None = None
        # The last contact with the Alertmanagers: when (monotonic), and whether one took it.
        self._contact: tuple[float, bool] | None = None
        self._checking: asyncio.Task[bool] | None = None

    async def push(self, alerts: list[Alert]) -> bool:
        """POST `alerts` to every Alertmanager; True if at least one accepted them."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((alerts, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_queued())
        delivered = await asyncio.shield(done)
        selfmetrics.ALERT_PUSHES.labels("success" if delivered else "error").inc()
        return delivered

    async def _send_queued(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        while self._queued:
            batch: list[tuple[list[Alert], asyncio.Future[bool]]] = []
            size = 0
            while self._queued and (not batch or size + len(self._queued[0][0]) <= BATCH):
                batch.append(self._queued.pop(0))
                size += len(batch[-1][0])
            alerts = [a for chunk, _ in batch for a in chunk]
            try:
                results = await asyncio.gather(*(self._post(url, alerts) for url in self.urls))
            except BaseException:
                for _, done in batch:
                    if not done.done():
                        done.set_result(False)
                raise
            self._contact = (time.monotonic(), any(results))
            for _, done in batch:
                if not done.done():
                    done.set_result(any(results))

    async def ready(self, max_age: float) -> bool:
        """True if an Alertmanager takes alerts now, as far as a contact within `max_age` s says.

        The last push or check counts if it is younger than `max_age`; else each Alertmanager's
        `GET /-/ready` is asked, and one answering 2xx is enough. Concurrent callers share one
        check.
        """
        contact = self._contact
        if contact is not None and time.monotonic() - contact[0] < max_age:
            return contact[1]
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._checking)

    async def _check(self) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        results = await asyncio.gather(*(self._get_ready(base) for base in self.bases))
        self._contact = (time.monotonic(), any(results))
        return any(results)

    async def _get_ready(self, base: str) -> bool:
        assert self._session is not None
        problem = ""
        try:
            async with self._session.get(base + "/-/ready") as response:
                if response.status // 100 != 2:
                    problem = f"HTTP {response.status}: {(await response.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            problem = str(e) or type(e).__name__
        return self._outcome(f"asking {base}/-/ready", problem)

    async def _post(self, url: str, alerts: list[Alert]) -> bool:
        assert self._session is not None
        problem = ""
        try:
            async with self._session.post(url, json=alerts) as response:
                if response.status // 100 != 2:
                    problem = f"HTTP {response.status}: {(await response.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            problem = str(e) or type(e).__name__
        return self._outcome(f"pushing alerts to {url}", problem)

    def _outcome(self, what: str, problem: str) -> bool:
        """True if `what` went well (no `problem`); a change either way is logged once."""
        if problem:
            if what not in self._failing:
                self._failing.add(what)
                log.warning("%s failed: %s (Prometheus' rules still fire)", what, problem)
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.info("%s works again", what)
        return True

    async def close(self) -> None:
        for task in (self._sender, self._checking):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for _, done in self._queued:
            if not done.done():
                done.set_result(False)
        self._queued.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
