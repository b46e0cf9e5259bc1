"""Sends alerts to Alertmanager's API v2 (POST /api/v2/alerts), as Prometheus does.

Every configured Alertmanager gets every alert; a push counts as delivered if one of them took
it. A firing alert carries `endsAt` (when Alertmanager may consider it over unless sent again),
a resolved one its end time. Pushes made while a POST is on its way go together in the next
one (up to BATCH alerts a POST), as Prometheus batches its own: a thousand units failing at
once make a few requests, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
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
        self.urls = [url.rstrip("/") + "/api/v2/alerts" for url in urls]
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._failing: set[str] = set()  # URLs whose last push failed (logged once)
        self._queued: list[tuple[list[Alert], asyncio.Future[bool]]] = []
        self._sender: asyncio.Task[None] | None = None

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
            for _, done in batch:
                if not done.done():
                    done.set_result(any(results))

    async def _post(self, url: str, alerts: list[Alert]) -> bool:
        assert self._session is not None
        problem = ""
        try:
            async with self._session.post(url, json=alerts) as response:
                if response.status // 100 != 2:
                    problem = f"HTTP {response.status}: {(await response.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            problem = str(e) or type(e).__name__
        if problem:
            if url not in self._failing:
                self._failing.add(url)
                log.warning(
                    "pushing alerts to %s failed: %s (Prometheus' rules still fire)",
                    url,
                    problem,
                )
            return False
        if url in self._failing:
            self._failing.discard(url)
            log.info("pushing alerts to %s works again", url)
        return True

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        for _, done in self._queued:
            if not done.done():
                done.set_result(False)
        self._queued.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
