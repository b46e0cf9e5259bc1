"""The replicas' audit trail in etcd, and each replica's full copy of it on disk.

Each replica writes its own audit log as a single remediator does (fail closed, on local disk:
remediator.audit). An event that records a change of the shared state (a claim) is put into
etcd in the transaction that makes the change (`entry`), then written to the log
(`write_published`); `PublishingAuditWriter` queues every other line it wrote, and `AuditTrail`
puts them into etcd (`audit/<time>-<replica>-<n>`, retried until etcd takes them) and appends
every replica's lines, in etcd's revision order, to `cluster-<audit file name>` beside the log:
the same JSON objects plus `revision` and `replica`. That copy is identical on every replica,
and rebuilt from etcd when it is missing. etcd keeps `RETENTION_SECONDS` of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING

from remediator.audit import AuditWriter, encode
from remediator.errors import CoordinationUnavailable
from remediator.etcd import gateway as g
from remediator.etcd.keys import PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from redis_autoheal.config import Audit
    from remediator.errors import AuditWriteError
    from remediator.etcd.gateway import Gateway
    from remediator.events import Event

log = logging.getLogger(__name__)

AUDIT_PREFIX = f"{PREFIX}audit/"
AUDIT_END = f"{PREFIX}audit0"  # the first key past the prefix ('0' follows '/')
RETENTION_SECONDS = 7 * 86400
PAGE = 500  # keys read from etcd at a time


_numbers = itertools.count()


def entry_key(replica: str) -> str:
    """A new audit line's key: in time order, then unique to its replica."""
    return f"{AUDIT_PREFIX}{time.time_ns():020d}-{replica}-{next(_numbers)}"


def entry(replica: str, event: Event) -> g.Json:
    """The request that puts the event into etcd, in the transaction of the change it records
    (then `write_published` writes it to the log)."""
    return g.put(entry_key(replica), encode(event).decode().rstrip("\n"))


class PublishingAuditWriter(AuditWriter):
    """An AuditWriter that also queues each line it made durable, for `AuditTrail`, unless
    it is in etcd already."""

    def __init__(self, settings: Audit, on_error: Callable[[], None] | None = None) -> None:
        super().__init__(settings, on_error)
        self.outbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._published: collections.Counter[bytes] = collections.Counter()
        self._published_lock = threading.Lock()

    def mark_published(self, events: Sequence[Event]) -> None:
        """Their change's transaction put these events into etcd (`entry`): once written to
        the log, they are not queued."""
        with self._published_lock:
            self._published.update(encode(e).rstrip(b"\n") for e in events)

    async def write_published(self, *events: Event) -> None:
        """Write events that their change's transaction put into etcd: not queued."""
        self.mark_published(events)
        try:
            await self.write(*events)
        except BaseException:
            with self._published_lock:
                self._published.subtract(encode(e).rstrip(b"\n") for e in events)
                self._published = +self._published
            raise

    def _write_chunks(self, chunks: list[bytes]) -> tuple[int, AuditWriteError | None]:
        committed, error = super()._write_chunks(chunks)
        for chunk in chunks[:committed]:
            for line in chunk.splitlines():
                with self._published_lock:
                    if self._published[line] > 0:
                        self._published[line] -= 1
                        if not self._published[line]:
                            del self._published[line]
                        continue
                self.outbox.put(line)
        return committed, error


def copy_path(settings: Audit) -> Path:
    return settings.path.with_name(f"cluster-{settings.path.name}")


def _last_revision(path: Path) -> int:
    """The revision of the copy's last line; 0 for a missing or empty copy."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        with contextlib.suppress(ValueError, AttributeError):
            return int(json.loads(line).get("revision", 0))
    return 0


class AuditTrail:
    """Publishes this replica's lines and keeps the cluster copy; see the module docstring."""

    def __init__(self, writer: PublishingAuditWriter, gateway: Gateway, replica: str) -> None:
        self.writer = writer
        self.path = copy_path(writer.settings)
        self._gateway = gateway
        self._replica = replica
        self._unsent: list[bytes] = []

    async def sync(self) -> None:
        """Publish what is queued, then copy what etcd has past the copy's last revision."""
        while True:
            try:
                self._unsent.append(self.writer.outbox.get_nowait())
            except queue.Empty:
                break
        while self._unsent:
            key = entry_key(self._replica)
            value = g.b64(self._unsent[0].decode())
            await self._gateway.call("kv/put", {"key": g.b64(key), "value": value})
            del self._unsent[0]
        last = await asyncio.to_thread(_last_revision, self.path)
        while True:
            answer = await self._gateway.call(
                "kv/range",
                {
                    "key": g.b64(AUDIT_PREFIX),
                    "range_end": g.b64(AUDIT_END),
                    "sort_order": "ASCEND",
                    "sort_target": "MOD",
                    "min_mod_revision": str(last + 1),
                    "limit": str(PAGE),
                },
            )
            kvs = answer.get("kvs", [])
            if not kvs:
                return
            lines = []
            for kv in kvs:
                last = int(kv["mod_revision"])
                replica = g.unb64(kv["key"]).removeprefix(AUDIT_PREFIX).split("-", 1)[1]
                event = json.loads(g.unb64(kv.get("value", "")))
                event.update(revision=last, replica=replica.rsplit("-", 1)[0])
                lines.append(json.dumps(event, separators=(",", ":")) + "\n")
            await asyncio.to_thread(self._append, "".join(lines))

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    async def expire(self) -> None:
        """Delete what is older than the retention from etcd (every copy keeps it)."""
        cutoff = f"{AUDIT_PREFIX}{time.time_ns() - int(RETENTION_SECONDS * 1e9):020d}"
        await self._gateway.call(
            "kv/deleterange", {"key": g.b64(AUDIT_PREFIX), "range_end": g.b64(cutoff)}
        )

    async def run(self, every: float) -> None:
        for n in itertools.count():
            try:
                await self.sync()
                if n % 600 == 0:
                    await self.expire()
            except CoordinationUnavailable as e:
                log.warning("audit trail not synced with etcd yet: %s", e)
            await asyncio.sleep(every)
